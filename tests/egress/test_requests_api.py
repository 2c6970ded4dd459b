"""Export requests end to end: filed from a sandboxed kernel, decided by a reviewer over HTTP."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator

import pytest
import requests

from harness import Platform
from kernel import Kernel
from shuyu_platform.identifiers import id_card_check_char

pytestmark = pytest.mark.hub

SERVICE = "/services/shuyu"


@pytest.fixture(scope="module")
def alice(platform: Platform) -> Iterator[Kernel]:
    session = platform.login("alice")
    platform.start_server(session, "alice")
    kernel = Kernel(platform.url, session, "alice")
    yield kernel
    kernel.close()


def reviewer_session(
    platform: Platform, name: str = "rita"
) -> tuple[requests.Session, dict[str, str]]:
    session = platform.login(name)
    session.get(f"{platform.url}{SERVICE}/", timeout=30)  # the service's OAuth and _xsrf cookie
    xsrf = session.cookies.get("_xsrf", path=f"{SERVICE}/")
    return session, {"X-XSRFToken": xsrf} if xsrf else {}


def file_request(alice: Kernel) -> dict:
    run = alice.run(
        textwrap.dedent(
            """
            import json, shuyu
            notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
                {"cell_type": "code", "id": "a", "metadata": {}, "execution_count": 1,
                 "source": "summary", "outputs": [
                     {"output_type": "stream", "name": "stdout", "text": "涪城区 128\\n"}]}]}
            json.dump(notebook, open("export.ipynb", "w"))
            filed = shuyu.egress.request("export.ipynb", [0], purpose="汇总表，用于产品定价")
            print(json.dumps(filed))
            """
        )
    )
    assert run.ok, run.error
    return json.loads(run.stdout)


def test_a_request_is_frozen_submitted_and_decided(alice: Kernel, platform: Platform) -> None:
    filed = file_request(alice)
    assert filed["status"] == "submitted" and filed["kind"] == "cells"
    assert [d["action"] for d in filed["decisions"]] == ["submit"]
    snapshot = platform.home / "outbox" / f"{filed['id']}.json"
    assert snapshot.is_file() and oct(snapshot.stat().st_mode & 0o777) == "0o400"

    session, headers = reviewer_session(platform)
    queue = session.get(f"{platform.url}{SERVICE}/api/egress/requests?status=submitted", timeout=30)
    assert filed["id"] in [r["id"] for r in queue.json()["requests"]]
    detail = session.get(f"{platform.url}{SERVICE}/api/egress/requests/{filed['id']}", timeout=30)
    assert detail.json()["content"]["cells"][0]["outputs"][0]["text"] == "涪城区 128\n"

    refused = session.post(
        f"{platform.url}{SERVICE}/api/egress/requests/{filed['id']}/decision",
        json={"action": "reject", "comment": ""},
        headers=headers,
        timeout=30,
    )
    assert refused.status_code == 400 and "needs a comment" in refused.json()["message"]
    changes = session.post(
        f"{platform.url}{SERVICE}/api/egress/requests/{filed['id']}/decision",
        json={"action": "request_changes", "comment": "请把小于10的单元格合并"},
        headers=headers,
        timeout=30,
    )
    assert changes.status_code == 200, changes.text
    assert changes.json()["status"] == "changes_requested"

    seen = alice.run(
        f"import shuyu; r = shuyu.egress.status({filed['id']!r}); "
        "print(r['status'], r['decisions'][-1]['comment'])"
    )
    assert seen.stdout.strip() == "changes_requested 请把小于10的单元格合并"
    actions = [
        e["action"]
        for e in platform.audit_events("egress.")
        if e["target"] == f"egress:{filed['id']}"
    ]
    assert actions == [
        "egress.create",
        "egress.checked",
        "egress.submit",
        "egress.read",
        "egress.request_changes",
    ]


def test_automatic_checks_run_on_submission(alice: Kernel, platform: Platform) -> None:
    first17 = "11010119900307123"
    id_card = first17 + id_card_check_char(first17)
    run = alice.run(
        textwrap.dedent(
            f"""
            import json, shuyu
            notebook = {{"nbformat": 4, "nbformat_minor": 5, "metadata": {{}}, "cells": [
                {{"cell_type": "code", "id": "a", "metadata": {{}}, "execution_count": 1,
                 "source": "rows", "outputs": [
                     {{"output_type": "stream", "name": "stdout",
                      "text": "patient {id_card} district 涪城区 n 3\\n"}}]}}]}}
            json.dump(notebook, open("leak.ipynb", "w"))
            print(json.dumps(shuyu.egress.request("leak.ipynb", [0], purpose="test")))
            """
        )
    )
    assert run.ok, run.error
    filed = json.loads(run.stdout)
    assert filed["verdict"] == "fail"
    found = [f for f in filed["checks"]["findings"] if f["check"] == "identifiers"]
    assert found and found[0]["severity"] == "fail"
    assert id_card not in json.dumps(filed)  # findings mask what they found
    checked = [
        e for e in platform.audit_events("egress.checked") if e["target"] == f"egress:{filed['id']}"
    ]
    assert checked and checked[-1]["detail"]["verdict"] == "fail"


def test_other_tenants_and_merchants_cannot_see_or_decide(
    alice: Kernel, platform: Platform
) -> None:
    filed = file_request(alice)
    bob = platform.login("bob")
    bob.get(f"{platform.url}{SERVICE}/", timeout=30)
    hidden = bob.get(f"{platform.url}{SERVICE}/api/egress/requests/{filed['id']}", timeout=30)
    assert hidden.status_code == 404
    listed = bob.get(f"{platform.url}{SERVICE}/api/egress/requests", timeout=30).json()
    assert filed["id"] not in [r["id"] for r in listed["requests"]]
    decided = alice.run(
        f"import shuyu.client as c; c.post('api/egress/requests/{filed['id']}/decision', "
        "{'action': 'approve'})"
    )
    assert decided.error is not None and "reviewer role" in decided.error["evalue"]
