"""No page of the running platform shows an internal name (``changes_requested``,
``top_code``, ``dp_provenance``, ...) or a UTC ISO timestamp: a walk over every page
each role reaches by following links, from the home page, with real content on them."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlparse

import pytest

from harness import Platform, VisibleText
from shuyu_platform import messages

pytestmark = [pytest.mark.hub]

SERVICE = "/services/shuyu/"
#: People of every role in the demo installation.
PEOPLE = ("alice", "rita", "sam", "ada", "audrey", "victor")
#: Most pages visited per person.
MAX_PAGES = 40
#: A UTC ISO 8601 moment as stored ("2026-12-07T15:59:59Z" or "+00:00").
ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def _seed(platform: Platform) -> None:
    """An export request with findings that was sent back for changes, so that the
    pages show a status, a verdict, check names and a decision."""
    filed = platform.service_post(
        "alice",
        "api/egress/requests",
        {
            "kind": "cells",
            "notebook": "walk.ipynb",
            "title": "页面巡检",
            "purpose": "检查页面上的用语",
            "cells": [
                {"index": 0, "source": "t", "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": "涪城区 3\n"}]}
            ],
        },
    )  # fmt: skip
    assert filed.status_code == 201, filed.text
    sent_back = platform.service_post(
        "rita",
        f"api/egress/requests/{filed.json()['id']}/decision",
        {
            "action": "request_changes",
            "comment": "计数太小，请合并区县",
            "snapshot_sha256": filed.json()["snapshot_sha256"],
        },
    )
    assert sent_back.status_code == 200, sent_back.text


def _walk(platform: Platform, name: str) -> dict[str, str]:
    """``{path: visible text}`` of every service page ``name`` reaches by links."""
    session, _ = platform.service_session(name)
    seen: dict[str, str] = {}
    queue = [f"{platform.url}{SERVICE}"]
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        path = urlparse(url).path
        if path in seen:
            continue
        answer = session.get(url, timeout=60)
        if "text/html" not in answer.headers.get("Content-Type", ""):
            continue
        parser = VisibleText()
        parser.feed(answer.text)
        seen[path] = " ".join(parser.text)
        for href in parser.links:
            target = urljoin(url, href)
            parts = urlparse(target)
            if (
                parts.netloc == urlparse(platform.url).netloc
                and parts.path.startswith(SERVICE)
                and not parts.path.startswith(f"{SERVICE}api/")
                and "/exports/" not in parts.path  # downloads
                and parts.path not in seen
            ):
                queue.append(target.split("#")[0])
    return seen


def test_no_page_shows_an_internal_name_or_a_utc_timestamp(platform: Platform) -> None:
    _seed(platform)
    # Names with "_" or "-" are never English words: none may appear as a whole word.
    internal = sorted(n for n in messages.identifiers() if "_" in n or "-" in n)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, internal)) + r")(?![\w-])")
    shown: list[str] = []
    visited = 0
    for name in PEOPLE:
        for path, text in _walk(platform, name).items():
            visited += 1
            shown += [f"{name} {path}: {m}" for m in pattern.findall(text)]
            shown += [f"{name} {path}: {m}" for m in ISO_MOMENT.findall(text)]
    assert visited > len(PEOPLE) * 3, visited  # the walk reached pages beyond the homes
    assert not shown, "\n".join(shown[:40])
