"""The disclosure checks are no oracle for the raw data's names (issue 14, item 5).

The names check matches outputs against the names in the raw data. If the merchant saw
those matches, it could file outputs holding guessed names and learn which are real
people in the data. From inside its sandboxed kernel, the attacker files two requests
that differ only in one name: a real name from the raw data, and an invented one with
the same surname and length. Everything it can see - the answer to the filing, its
request's status, the list of its requests, the Exports page - must be the same for
both; the reviewer, on the same platform, does see the raw-data match.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest

from harness import Platform
from kernel import Kernel
from shuyu_platform.egress.disclosure.person_names import SURNAMES

pytestmark = pytest.mark.hub

SERVICE = "/services/shuyu"
#: Keys that differ between any two requests, whatever they hold.
VOLATILE = frozenset({"id", "created_at", "updated_at", "at", "snapshot_sha256", "title"})


@pytest.fixture(scope="module")
def attacker(platform: Platform) -> Iterator[Kernel]:
    session = platform.login("alice")
    platform.start_server(session, "alice")
    kernel = Kernel(platform.url, session, "alice")
    yield kernel
    kernel.close()


def _real_and_invented(platform: Platform) -> tuple[str, str]:
    """A name of the raw health records, and one of the same shape that is nobody there."""
    names = set(pq.read_table(platform.home / "raw" / "health_records.parquet",
                              columns=["name"]).column(0).to_pylist())  # fmt: skip
    real = next(n for n in sorted(names) if isinstance(n, str) and len(n) == 3 and n[0] in SURNAMES)
    invented = next(
        real[0] + a + b
        for a in "甲乙丙丁戊己庚辛壬癸"
        for b in "子丑寅卯辰巳午未申酉"
        if real[0] + a + b not in names
    )
    return real, invented


def _file(kernel: Kernel, name: str, notebook: str) -> dict[str, Any]:
    """File a request for one cell that prints ``name`` in a sentence and a table."""
    run = kernel.run(
        textwrap.dedent(
            f"""
            import json, shuyu
            text = "随访医生 {name} 负责以下汇总\\n区县  人数\\n涪城区  128\\n游仙区  131\\n"
            nb = {{"nbformat": 4, "nbformat_minor": 5, "metadata": {{}}, "cells": [
                {{"cell_type": "code", "id": "a", "metadata": {{}}, "execution_count": 1,
                 "source": "summary", "outputs": [
                     {{"output_type": "stream", "name": "stdout", "text": text}}]}}]}}
            json.dump(nb, open({notebook!r}, "w"))
            print(json.dumps(shuyu.egress.request({notebook!r}, [0], purpose="随访汇总")))
            """
        )
    )
    assert run.ok, run.error
    return json.loads(run.stdout)


def _seen(kernel: Kernel, request_id: str) -> dict[str, Any]:
    """What the merchant can read about one request from its kernel."""
    run = kernel.run(
        "import json, shuyu\n"
        f"status = shuyu.egress.status({request_id!r})\n"
        f"listed = shuyu.egress.list().set_index('id').loc[{request_id!r}].to_dict()\n"
        "print(json.dumps({'status': status, 'listed': listed}, default=str))"
    )
    assert run.ok, run.error
    return json.loads(run.stdout)


def _normal(value: Any, notebook: str) -> Any:
    """``value`` without what differs between any two requests (ids, times, file name)."""
    if isinstance(value, dict):
        return {k: _normal(v, notebook) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_normal(v, notebook) for v in value]
    if isinstance(value, str):
        return value.replace(notebook, "NOTEBOOK")
    return value


def _exports_row(html: str, request_id: str) -> str:
    row = re.search(rf'<tr [^>]*data-id="{request_id}">(.*?)</tr>', html, re.S)
    assert row, f"request {request_id} not on the Exports page"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    cells = [c.replace(request_id, "<id>") for c in cells]  # element ids name the request
    return "|".join(cells[1:])  # the first cell holds the title, id and time


def test_a_real_and_an_invented_name_look_the_same_to_the_merchant(
    attacker: Kernel, platform: Platform
) -> None:
    real, invented = _real_and_invented(platform)
    filed_real = _file(attacker, real, "guess_a.ipynb")
    filed_invented = _file(attacker, invented, "guess_b.ipynb")

    # The filing's answer, the status and the list: the same, once ids and times go.
    assert _normal(filed_real, "guess_a.ipynb") == _normal(filed_invented, "guess_b.ipynb")
    seen_real = _seen(attacker, filed_real["id"])
    seen_invented = _seen(attacker, filed_invented["id"])
    assert _normal(seen_real, "guess_a.ipynb") == _normal(seen_invented, "guess_b.ipynb")
    # The generic model does flag both as names; nothing names the raw data.
    checks = seen_real["status"]["checks"]
    assert "names" in {f["check"] for f in checks["findings"]}
    assert "known_names" not in {f["check"] for f in checks["findings"]}
    assert "source data" not in json.dumps(seen_real, ensure_ascii=False)
    assert seen_real["status"]["verdict"] == "warn" == seen_invented["status"]["verdict"]

    # The Exports page in the merchant's browser.
    session, _ = platform.service_session("alice")
    page = session.get(f"{platform.url}{SERVICE}/exports", timeout=30)
    assert page.status_code == 200
    assert _exports_row(page.text, filed_real["id"]) == _exports_row(
        page.text, filed_invented["id"]
    )

    # The reviewer sees the difference: the comparison above could have failed.
    reviewer, _ = platform.service_session("rita")
    full = {
        rid: reviewer.get(f"{platform.url}{SERVICE}/api/egress/requests/{rid}", timeout=30).json()
        for rid in (filed_real["id"], filed_invented["id"])
    }
    known = {
        rid: [f for f in body["checks"]["findings"] if f["check"] == "known_names"]
        for rid, body in full.items()
    }
    assert len(known[filed_real["id"]]) == 1 and known[filed_real["id"]][0]["reviewer_only"]
    assert known[filed_invented["id"]] == []
