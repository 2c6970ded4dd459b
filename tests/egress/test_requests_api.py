"""Export requests end to end: filed from a sandboxed kernel, decided by a reviewer over HTTP."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator

import pytest

from harness import Platform
from kernel import Kernel
from shuyu_platform.data.identifiers import id_card_check_char

pytestmark = pytest.mark.hub

SERVICE = "/services/shuyu"


@pytest.fixture(scope="module")
def alice(platform: Platform) -> Iterator[Kernel]:
    session = platform.login("alice")
    platform.start_server(session, "alice")
    kernel = Kernel(platform.url, session, "alice")
    yield kernel
    kernel.close()


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

    session, headers = platform.service_session("rita")
    queue = session.get(f"{platform.url}{SERVICE}/api/egress/requests?status=submitted", timeout=30)
    assert filed["id"] in [r["id"] for r in queue.json()["requests"]]
    detail = session.get(f"{platform.url}{SERVICE}/api/egress/requests/{filed['id']}", timeout=30)
    assert detail.json()["content"]["cells"][0]["outputs"][0]["text"] == "涪城区 128\n"

    refused = session.post(
        f"{platform.url}{SERVICE}/api/egress/requests/{filed['id']}/decision",
        json={"action": "reject", "comment": "", "snapshot_sha256": filed["snapshot_sha256"]},
        headers=headers,
        timeout=30,
    )
    assert refused.status_code == 400 and "needs a comment" in refused.json()["message"]
    changes = session.post(
        f"{platform.url}{SERVICE}/api/egress/requests/{filed['id']}/decision",
        json={
            "action": "request_changes",
            "comment": "请把小于10的单元格合并",
            "snapshot_sha256": filed["snapshot_sha256"],
        },
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
        f"{{'action': 'approve', 'snapshot_sha256': {filed['snapshot_sha256']!r}}})"
    )
    assert decided.error is not None and "reviewer role" in decided.error["evalue"]


def _decide(platform: Platform, request_id: str, action: str, comment: str = "") -> dict:
    seen = platform.service_get("rita", f"api/egress/requests/{request_id}").json()
    answer = platform.service_post(
        "rita",
        f"api/egress/requests/{request_id}/decision",
        {"action": action, "comment": comment, "snapshot_sha256": seen["snapshot_sha256"]},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_an_approved_request_is_released_and_only_its_requester_downloads_it(
    alice: Kernel, platform: Platform
) -> None:
    filed = file_request(alice)
    decided = _decide(platform, filed["id"], "approve", "可以发布")
    assert decided["status"] == "released"
    assert [d["action"] for d in decided["decisions"]][-2:] == ["approve", "release"]
    name = decided["release"]["files"][0]["name"]
    assert name == "export-release.ipynb"

    owner, _ = platform.service_session("alice")
    page = owner.get(f"{platform.url}{SERVICE}/exports", timeout=30)
    assert page.status_code == 200
    link = f"{SERVICE}/exports/{filed['id']}/{name}"
    assert link in page.text
    download = owner.get(f"{platform.url}{link}", timeout=30)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Disposition"] == f"attachment; filename*=UTF-8''{name}"
    notebook = json.loads(download.content)
    assert notebook["metadata"]["shuyu"]["request_id"] == filed["id"]
    assert f"Shuyu release {filed['id']}" in "".join(notebook["cells"][-1]["source"])
    assert "".join(notebook["cells"][1]["outputs"][0]["text"]) == "涪城区 128\n"
    record = owner.get(
        f"{platform.url}{SERVICE}/api/egress/requests/{filed['id']}/release", timeout=30
    ).json()
    assert record["provenance"]["reviewers"][0]["reviewer"] == "rita"
    assert record["provenance"]["request"]["requester"] == "alice"

    for other in ("bob", "rita", "carol"):  # another tenant, a reviewer, alice's colleague
        session, _ = platform.service_session(other)
        refused = session.get(f"{platform.url}{link}", timeout=30)
        assert refused.status_code in (403, 404), (other, refused.status_code)

    downloads = [
        e
        for e in platform.audit_events("egress.download")
        if e["target"] == f"egress:{filed['id']}/{name}"
    ]
    ok = [e for e in downloads if e["outcome"] == "ok"]
    assert len(ok) == 1 and ok[0]["actor"] == "alice"
    assert ok[0]["detail"]["sha256"] == decided["release"]["files"][0]["sha256"]
    assert {e["actor"] for e in downloads if e["outcome"] == "denied"} >= {"bob", "carol"}


def test_a_released_file_changed_on_disk_is_refused_at_download(
    alice: Kernel, platform: Platform
) -> None:
    filed = file_request(alice)
    decided = _decide(platform, filed["id"], "approve")
    name = decided["release"]["files"][0]["name"]
    path = platform.home / "released" / filed["id"] / name
    path.parent.chmod(0o755)
    path.chmod(0o644)
    path.write_text(path.read_text().replace("128", "129"))
    owner, _ = platform.service_session("alice")
    refused = owner.get(f"{platform.url}{SERVICE}/exports/{filed['id']}/{name}", timeout=30)
    assert refused.status_code == 409 and "changed on disk" in refused.text
    denied = [
        e
        for e in platform.audit_events("egress.download")
        if e["target"] == f"egress:{filed['id']}/{name}"
    ]
    assert denied and denied[-1]["outcome"] == "denied"


def test_dominance_is_checked_from_the_contributor_statistics_the_kernel_attaches(
    alice: Kernel, platform: Platform
) -> None:
    shown = alice.run(
        textwrap.dedent(
            """
            import pandas as pd, shuyu
            claims = pd.DataFrame({
                "district": ["涪城区"] * 12 + ["游仙区"] * 12,
                "person": [f"P-{i}" for i in range(24)],
                "amount": [90000.0] + [100.0] * 11 + [1000.0] * 12,
            })
            display(shuyu.egress.table(claims, by="district", value="amount", contributor="person"))
            """
        )
    )
    assert shown.ok, shown.error
    output = {"output_type": "display_data", **shown.outputs[0]}
    assert output["metadata"]["shuyu"]["cell_stats"]["column"] == "amount_sum"
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {
                "cell_type": "code",
                "id": "t",
                "metadata": {},
                "execution_count": 1,
                "source": "table",
                "outputs": [output],
            }
        ],
    }
    run = alice.run(
        f"import json, shuyu; json.dump({notebook!r}, open('dominance.ipynb', 'w')); "
        "print(json.dumps(shuyu.egress.request('dominance.ipynb', [0], purpose='按区县理赔额')))"
    )
    assert run.ok, run.error
    findings = json.loads(run.stdout)["checks"]["findings"]
    dominated = [f for f in findings if f["check"] == "dominance" and f["severity"] == "fail"]
    assert [f["where"]["row"] for f in dominated] == ["涪城区"]
    assert not [f for f in findings if "no contributor statistics" in f["message"]]


def test_a_released_dp_table_names_its_dp_query_in_the_provenance(
    alice: Kernel, platform: Platform
) -> None:
    run = alice.run(
        textwrap.dedent(
            """
            import json, shuyu
            from shuyu import dp
            answer = dp.query("health_records", epsilon=0.2).group_by("sex").agg(
                mean_settlement=dp.mean("settlement_amount")).run()
            answer[["sex", "mean_settlement"]].to_csv("by_sex.csv", index=False)
            filed = shuyu.egress.request_file("by_sex.csv", purpose="性别分布，差分隐私结果")
            print(json.dumps({"filed": filed, "query": str(dp.releases().iloc[0]["id"])}))
            """
        )
    )
    assert run.ok, run.error
    result = json.loads(run.stdout)
    filed, query_id = result["filed"], result["query"]
    checks = [f for f in filed["checks"]["findings"] if f["check"] == "dp_provenance"]
    assert checks and checks[0]["severity"] == "safe", filed["checks"]

    decided = _decide(platform, filed["id"], "approve")
    assert decided["status"] == "released"
    owner, _ = platform.service_session("alice")
    record = owner.get(
        f"{platform.url}{SERVICE}/api/egress/requests/{filed['id']}/release", timeout=30
    ).json()["provenance"]
    assert [q["id"] for q in record["dp_queries"]] == [query_id]
    assert record["dp_queries"][0]["dataset"] == "health_records"
    assert "health_records" in record["datasets"]
    released = owner.get(
        f"{platform.url}{SERVICE}/exports/{filed['id']}/by_sex.csv", timeout=30
    ).text.splitlines()
    assert released[0] == "sex,mean_settlement,shuyu_release"
    assert all(line.endswith(filed["id"]) for line in released[1:])
