"""Data in, on a running platform: a department's supply account delivers a version;
an import goes request → checks → approval → alice's sandbox, and never bob's."""

from __future__ import annotations

import base64
import http.client
import io
import json
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from harness import Platform
from shuyu_platform.core.roles import supply_account

pytestmark = pytest.mark.hub

DEPARTMENT = "市卫生健康委员会"  # health_records' source department


def _supplier_token(platform: Platform, department: str) -> str:
    return (platform.home / "hub" / "supply-tokens" / supply_account(department)).read_text()


def _put(platform: Platform, token: str, dataset: str, filename: str, data: bytes):
    return requests.put(
        f"{platform.url}/services/shuyu/api/supply/{dataset}",
        params={"filename": filename},
        data=data,
        headers={"Authorization": f"token {token}"},
        timeout=300,
    )


def test_a_departments_account_supplies_a_version(platform: Platform) -> None:
    raw = platform.home / "raw" / "health_records.parquet"
    table = pq.read_table(raw)
    token = _supplier_token(platform, DEPARTMENT)

    other = _supplier_token(platform, "市市场监督管理局")
    refused = _put(platform, other, "health_records", "today.parquet", raw.read_bytes())
    assert refused.status_code == 403, refused.text

    bad = table.set_column(
        table.schema.get_field_index("settlement_amount"),
        pa.field("settlement_amount", pa.string()),
        pa.array(["12.5"] * 41 + ["n/a"] + ["1"] * (table.num_rows - 42)),
    )
    sink = io.BytesIO()
    pq.write_table(bad, sink)
    wrong = _put(platform, token, "health_records", "today.parquet", sink.getvalue())
    assert wrong.status_code == 422, wrong.text
    assert "row 42, column 'settlement_amount'" in wrong.json()["message"]

    good = _put(platform, token, "health_records", "today.parquet", raw.read_bytes())
    assert good.status_code == 201, good.text
    supplied = good.json()
    assert supplied["rows"] == table.num_rows and supplied["previous_version"] == 1
    entry = platform.service_get("victor", "api/catalogue/health_records").json()
    assert entry["raw_version"]["version"] == supplied["version"]
    deadline = time.monotonic() + 300
    while True:
        state = platform.service_get("ada", "api/supply/health_records").json()
        rebuild = next(r for r in state["rebuilds"] if r["id"] == supplied["rebuild"])
        if rebuild["status"] != "running":
            break
        assert time.monotonic() < deadline, rebuild
        time.sleep(2)
    assert rebuild["status"] == "done", rebuild
    assert rebuild["done"] == rebuild["total"] >= 2
    # The catalogue shows the version and when it was supplied, as JSON and on its page.
    [stored] = [v for v in state["versions"] if v["version"] == supplied["version"]]
    assert stored["status"] == "current" and stored["sha256"] == supplied["sha256"]
    assert entry["raw_version"]["supplied_at"] == stored["supplied_at"]
    assert f"· v{supplied['version']} " in platform.service_get("victor", "catalogue").text
    [current] = platform.audit_events("supply.current", actor=supply_account(DEPARTMENT))
    assert (
        current["detail"]["previous_sha256"] and current["detail"]["sha256"] == supplied["sha256"]
    )


def _run(platform: Platform, user: str, code: str) -> str:
    result = platform.run_code(user, textwrap.dedent(code))
    assert result.ok, result.error
    return result.stdout


def test_a_refused_upload_closes_its_connection_and_says_so(platform: Platform) -> None:
    """An upload refused before its body is read (here: no token) is answered with
    ``Connection: close``: the service closes the connection rather than read the rest,
    and a proxy that reused it for another client's request would answer that one 503."""
    port = int(platform.env["SHUYU_SERVICE_PORT"])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        path = "/services/shuyu/api/supply/health_records?filename=x.csv"
        conn.request("PUT", path, body=b"a,b\n" * 50_000)
        answer = conn.getresponse()
        answer.read()
    finally:
        conn.close()
    assert answer.status == 401
    assert answer.getheader("Connection", "").lower() == "close"


def test_an_import_reaches_alices_sandbox_and_never_bobs(platform: Platform) -> None:
    person_ids = pq.read_table(
        platform.home / "raw" / "health_records.parquet", columns=["person_id"]
    ).column("person_id")[:300]
    table = pa.table({"person_id": person_ids, "premium": [float(n) for n in range(300)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    body = {
        "name": "policyholders",
        "filename": "policyholders.parquet",
        "content_base64": base64.b64encode(sink.getvalue()).decode(),
        "lawful_source": "本公司保单系统",
        "authorisation": "投保人授权书",
        "scenario": "理赔率分析",
        "fields": {"person_id": {"identifier": True}, "premium": {"sensitive": True}},
    }
    # Not from the sandbox: a kernel's token cannot file an import.
    attempt = platform.run_code(
        "alice",
        "import shuyu\nshuyu.client.post('api/imports', " + repr(body) + ")",
    )
    assert attempt.error["ename"] == "PlatformError", attempt.error
    assert "custom:shuyu:imports:request" in attempt.error["evalue"]

    created = platform.service_post("alice", "api/imports", body)
    assert created.status_code == 201, created.text
    row = created.json()
    assert row["status"] == "submitted" and row["checks"]["rows"] == 300
    own = platform.service_post("alice", f"api/imports/{row['id']}/decision", {"action": "approve"})
    assert own.status_code == 403
    decided = platform.service_post(
        "rita", f"api/imports/{row['id']}/decision", {"action": "approve", "reason": "授权齐全"}
    )
    assert decided.status_code == 200, decided.text

    seen = json.loads(
        _run(
            platform,
            "alice",
            """
            import json, os, shuyu
            # The kernel library reads it (shuyu.imports), as a job naming it would.
            imported = shuyu.imports.read('policyholders')
            listed = shuyu.imports.list().set_index('name').loc['policyholders']
            try:
                shuyu.imports.table('policyholders', columns=['nope'])
                column = 'read'
            except KeyError as err:
                column = str(err)
            view = shuyu.views.read('health_records')
            print(json.dumps({'ids': imported['person_id'].tolist(),
                              'fields': imported.attrs['fields'],
                              'listed': {'id': listed['id'], 'rows': int(listed['rows']),
                                         'identifiers': listed['identifiers'],
                                         'columns': listed['columns']},
                              'column': column,
                              'view': view['person_id'].tolist(),
                              'listing': sorted(os.listdir('/data/imports'))}))
            """,
        )
    )
    assert len(seen["ids"]) == 300 and all(t.startswith("I-") for t in seen["ids"])
    assert "policyholders" in seen["listing"]
    assert seen["listed"] == {
        "id": row["id"],
        "rows": 300,
        "identifiers": ["person_id"],
        "columns": ["person_id", "premium"],
    }
    assert seen["fields"]["premium"] == {"identifier": False, "sensitive": True}
    assert "no column 'nope'" in seen["column"]
    # Keyed to the import: no token matches the view's pseudonym of the same person.
    assert not {t[2:] for t in seen["ids"]} & {t[2:] for t in seen["view"]}
    bob = json.loads(
        _run(
            platform,
            "bob",
            """
            import json, os, shuyu
            path = '/data/imports/policyholders/policyholders.parquet'
            try:
                shuyu.imports.read('policyholders')
                refused = ''
            except shuyu.imports.ImportNotFound as err:
                refused = str(err)
            print(json.dumps({'listing': sorted(os.listdir('/data/imports')),
                              'exists': os.path.exists(path), 'refused': refused}))
            """,
        )
    )
    assert bob["listing"] == [] and bob["exists"] is False
    assert "No approved import named 'policyholders'; available: none." in bob["refused"]

    # Fusion: a DP count of the raw health records of the import's people; the answer's
    # error is the one its preview stated, and the release names the raw version. The
    # session's platform is shared, so earlier tests may have spent most of kangning's
    # health_records budget, and later ones need some: the query takes a quarter of what
    # is left, at most 0.1 ε.
    fused = json.loads(
        _run(
            platform,
            "alice",
            f"""
            import json, math, shuyu
            from shuyu import dp
            left = float(dp.budget().set_index('dataset').loc['health_records',
                                                              'remaining_epsilon'])
            epsilon = min(0.1, math.floor(left / 4 * 1000) / 1000)
            assert epsilon >= 0.005, f'kangning has {{left}} ε of health_records left'
            ask = {{'dataset': 'health_records', 'epsilon': epsilon, 'alpha': 0.001,
                   'statistics': {{'n': {{'fn': 'count'}}}},
                   'join': {{'import': '{row["id"]}', 'on': 'person_id',
                            'import_column': 'person_id'}}}}
            preview = shuyu.client.post('api/dp/query', {{**ask, 'dry_run': True}})
            answer = shuyu.client.post('api/dp/query', ask)
            print(json.dumps({{'preview': preview, 'answer': answer}}))
            """,
        )
    )
    half_width = fused["preview"]["estimate"]["statistics"]["n"]["ci_half_width"]
    assert fused["answer"]["estimate"] == fused["preview"]["estimate"]
    assert abs(fused["answer"]["rows"][0]["n"] - 300) <= half_width
    assert fused["answer"]["raw_version"] == fused["preview"]["raw_version"]

    session, headers = platform.service_session("alice")
    gone = session.delete(
        f"{platform.url}/services/shuyu/api/imports/{row['id']}", headers=headers, timeout=60
    )
    assert gone.status_code == 200 and gone.json()["status"] == "deleted"
    after = _run(platform, "alice", "import os; print(os.listdir('/data/imports'))")
    assert "policyholders" not in after
    steps = [e["action"] for e in platform.audit_events(tenant="kangning")]
    steps = [s for s in steps if s.startswith("import.")]
    assert steps[-3:] == ["import.submit", "import.approve", "import.delete"]


def test_an_import_bomb_is_refused_and_the_service_keeps_serving(
    platform: Platform, parquet_bomb: bytes
) -> None:
    body = {
        "name": "bomb",
        "filename": "bomb.parquet",
        "content_base64": base64.b64encode(parquet_bomb).decode(),
        "lawful_source": "x",
        "authorisation": "x",
        "scenario": "x",
        "fields": {"x": {"identifier": True}},
    }
    refused = platform.service_post("alice", "api/imports", body)
    assert refused.status_code == 422, refused.text
    assert "refused" in refused.json()["message"]
    assert platform.service_get("alice", "api/imports").status_code == 200
    assert not [r for r in platform.service_get("rita", "api/imports").json()["imports"]
                if r["name"] == "bomb"]  # fmt: skip


def test_the_imports_pages_file_and_review_a_request(platform: Platform) -> None:
    """The form a merchant fills in (a file upload) and the page the reviewer decides on."""
    session, headers = platform.service_session("carol")
    pages = f"{platform.url}/services/shuyu/imports"
    form = session.get(pages, timeout=60)
    assert form.status_code == 200 and 'id="import-form"' in form.text
    sent = session.post(
        pages,
        data={
            "_xsrf": headers.get("X-XSRFToken", ""),
            "name": "branches",
            "lawful_source": "公开年报",
            "authorisation": "无需授权（公开信息）",
            "scenario": "网点分布",
            "identifiers": "",
            "sensitive": "revenue",
        },
        files={"file": ("branches.csv", b"branch,revenue\nA,10\nB,20\n")},
        headers=headers,
        timeout=120,
    )
    assert sent.status_code == 200, sent.text
    assert "branches" in sent.text and "已提交 Submitted" in sent.text  # the status, labelled
    import_id = sent.url.rstrip("/").rsplit("/", 1)[-1]
    reviewer, review_headers = platform.service_session("rita")
    page = reviewer.get(f"{pages}/{import_id}", timeout=60)
    assert 'id="decision-form"' in page.text and "revenue" in page.text
    rejected = reviewer.post(
        f"{pages}/{import_id}",
        data={
            "_xsrf": review_headers.get("X-XSRFToken", ""),
            "action": "reject",
            "reason": "用途不明",
        },
        headers=review_headers,
        timeout=60,
    )
    assert rejected.status_code == 200 and "已拒绝 Rejected: 用途不明" in rejected.text
