"""Hostile files filed for export against the real platform service: refused, service alive.

alice files each file straight to the service's API with her browser session (no kernel
needed: the API is where a file lands, whoever sends it). Every bomb gets a clear
answer (a 422 that says why, or a failing finding), nothing is written for a refused
one, and while the jail reads a bomb the service keeps answering others at once.
"""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest
import requests

import bombs
from harness import Platform

pytestmark = pytest.mark.hub

SERVICE = "/services/shuyu"


def _content(name: str, data: bytes) -> dict:
    """The content of a file request (what a resubmission sends)."""
    return {"kind": "file", "path": name, "data_b64": base64.b64encode(data).decode()}


def _body(name: str, data: bytes) -> dict:
    """A new file request: its content and a purpose."""
    return {**_content(name, data), "purpose": "汇总结果，用于产品定价"}


def _outbox(platform: Platform) -> set[str]:
    return {p.name for p in (platform.home / "outbox").iterdir()}


def _file(platform: Platform, name: str, data: bytes) -> requests.Response:
    return platform.service_post("alice", "api/egress/requests", _body(name, data), timeout=300)


def test_a_png_text_bomb_is_refused_while_the_service_keeps_serving(platform: Platform) -> None:
    bomb = bombs.png_text_bomb()  # 1.5 GiB of text behind a few MB
    before = _outbox(platform)
    catalogue, _ = platform.service_session("bob")
    answers: dict[str, requests.Response] = {}
    filing = threading.Thread(target=lambda: answers.update(bomb=_file(platform, "c.png", bomb)))
    filing.start()
    waits = []
    while filing.is_alive():
        start = time.monotonic()
        seen = catalogue.get(f"{platform.url}{SERVICE}/api/catalogue", timeout=30)
        waits.append(time.monotonic() - start)
        assert seen.status_code == 200
        time.sleep(0.5)
    filing.join()
    refused = answers["bomb"]
    assert refused.status_code == 422, refused.text
    message = refused.json()["message"]
    assert "more than 1024 MiB of memory" in message and "decompression bomb" in message
    assert _outbox(platform) == before  # nothing frozen, no request
    assert len(waits) >= 2 and max(waits) < 5, waits  # answered while the jail worked
    events = platform.audit_events("egress.unreadable", actor="alice")
    assert events and events[-1]["detail"]["reason"] == "memory"


def test_a_parquet_bomb_fails_its_checks_unread(platform: Platform) -> None:
    answer = _file(platform, "rates.parquet", bombs.parquet_bomb())
    if answer.status_code == 422:  # the jail ran out of memory outside pyarrow's reader
        assert "memory" in answer.json()["message"]
        return
    assert answer.status_code == 201, answer.text
    filed = answer.json()
    assert filed["verdict"] == "fail"
    messages = " ".join(f["message"] for f in filed["checks"]["findings"])
    assert "could not be read as parquet" in messages


def test_a_zip_bomb_is_never_inflated(platform: Platform) -> None:
    start = time.monotonic()
    answer = _file(platform, "all.zip", bombs.zip_bomb())
    assert answer.status_code == 201, answer.text
    filed = answer.json()
    assert filed["verdict"] == "fail"  # opaque files fail: a reviewer cannot see inside
    assert time.monotonic() - start < 120


def test_a_deeply_nested_json_file_is_refused_with_the_reason(platform: Platform) -> None:
    answer = _file(platform, "result.json", bombs.deep_json())
    assert answer.status_code == 422, answer.text
    assert "recursion" in answer.json()["message"]


def test_a_huge_notebook_gets_an_answer_and_the_service_survives(platform: Platform) -> None:
    start = time.monotonic()
    answer = _file(platform, "big.ipynb", bombs.huge_notebook())
    assert answer.status_code in (201, 413, 422), answer.text
    if answer.status_code == 201:  # read and checked in full, within the jail's limits
        assert answer.json()["checks"]["findings"] is not None
    else:
        assert answer.json()["message"]
    assert time.monotonic() - start < 200  # the jail's wall clock (120 s) bounds it
    alive = platform.service_session("bob")[0].get(f"{platform.url}{SERVICE}/api/catalogue")
    assert alive.status_code == 200


def test_an_approved_pixel_bomb_is_released_packed_not_watermarked(platform: Platform) -> None:
    """The checks never decode pixels; watermarking does, in the jail: a 12 000 × 12 000
    PNG needs more than the jail's memory to redraw, so it is released as filed, packed
    with the release note, and the service stays up."""
    answer = _file(platform, "map.png", bombs.png_pixel_bomb(12_000))
    assert answer.status_code == 201, answer.text
    request_id = answer.json()["id"]
    decided = platform.service_post(
        "rita",
        f"api/egress/requests/{request_id}/decision",
        {
            "action": "approve",
            "comment": "仅用于测试",
            "snapshot_sha256": answer.json()["snapshot_sha256"],
        },
        timeout=300,
    )
    assert decided.status_code == 200, decided.text
    release = decided.json()
    assert release["status"] == "released", release
    (item,) = release["release"]["files"]
    assert item["name"] == "map.png.zip"
    assert "not watermarked" in item["watermark"] and "memory" in item["watermark"]
    assert Path(platform.home / "released" / request_id / "map.png.zip").is_file()


def test_a_bomb_resubmitted_leaves_the_request_as_it_was(platform: Platform) -> None:
    filed = _file(platform, "rates.csv", "区县,人数\n涪城区,128\n".encode())
    assert filed.status_code == 201, filed.text
    request_id, digest = filed.json()["id"], filed.json()["snapshot_sha256"]
    sent_back = platform.service_post(
        "rita",
        f"api/egress/requests/{request_id}/decision",
        {"action": "request_changes", "comment": "请补充", "snapshot_sha256": digest},
    )
    assert sent_back.status_code == 200, sent_back.text
    resubmit = f"api/egress/requests/{request_id}/resubmit"
    refused = platform.service_post("alice", resubmit, _content("c.png", bombs.png_text_bomb()))
    assert refused.status_code == 422 and "memory" in refused.json()["message"], refused.text
    kept = platform.service_session("alice")[0].get(
        f"{platform.url}{SERVICE}/api/egress/requests/{request_id}", timeout=30
    )
    assert kept.json()["status"] == "changes_requested"
    assert kept.json()["snapshot_sha256"] == digest  # the frozen snapshot is untouched
    fixed = platform.service_post(
        "alice", resubmit, _content("rates.csv", "区县,人数\n涪城区,128\n游仙区,873\n".encode())
    )
    assert fixed.status_code == 200 and fixed.json()["status"] == "resubmitted", fixed.text
    assert fixed.json()["snapshot_sha256"] != digest and fixed.json()["verdict"]
