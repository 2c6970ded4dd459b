"""The Submit job page of a merchant's server, attacked from the merchant's own session.

Whatever the form says, the page sends only files of the work folder as saved (a symlink
out of it is refused and recorded), only a notebook or a script as entry, parameters
only as a JSON object; every refusal is a specific 4xx page and no job is queued.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import Platform
from merchant import Merchant, start

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def alice(platform: Platform) -> Iterator[Merchant]:
    merchant = start(platform, "alice")
    setup = merchant.kernel.run(
        textwrap.dedent(
            """
            import os
            open("page_ok.py", "w").write("print('ok')\\n")
            open("notes.csv", "w").write("a,b\\n1,2\\n")
            for link, target in [("escape.py", "/etc/passwd"),
                                 ("view.py", "/data/views/health_records.parquet")]:
                if not os.path.lexists(link):
                    os.symlink(target, link)
            """
        )
    )
    assert setup.ok, setup.error
    yield merchant
    merchant.kernel.close()


GOOD = {"entry": "page_ok.py", "parameters": "{}", "outputs": "", "purpose": "测试 a test"}


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        ({"parameters": "{year: 2025"}, 400, "not valid JSON"),
        ({"parameters": "[1, 2]"}, 400, "must be a JSON object"),
        ({"parameters": '{"not an identifier": 1}'}, 400, "Python identifiers"),
        ({"purpose": "  "}, 400, "needs a purpose"),
        ({"entry": "notes.csv"}, 400, "starts from a notebook"),
        ({"entry": "escape.py"}, 403, "leads outside the work folder"),
        ({"entry": "view.py"}, 403, "leads outside the work folder"),
        ({"entry": "../../etc/passwd.py"}, 403, "leads outside the work folder"),
        ({"entry": "missing.py"}, 404, "missing.py"),
        ({"entry": ".hidden.py"}, 404, ""),
        ({"file": "escape.py"}, 403, "leads outside the work folder"),
        ({"outputs": "../../escape/*.csv"}, 400, "plain relative path"),
        ({"outputs": "/etc/*"}, 400, "plain relative path"),
        ({"import": "no_such_import"}, 404, "has no import named"),
        ({"import": "../raw"}, 400, "imports"),
        ({"import": '"><script>alert(1)</script>'}, 400, "imports"),
    ],
)
def test_the_submit_job_page_refuses_bad_input_and_queues_nothing(
    alice: Merchant, platform: Platform, form: dict[str, str], status: int, says: str
) -> None:
    before = len(platform.audit_events("job.submit"))
    blocked = len(platform.audit_events("egress.blocked", actor="alice"))
    refused = alice.request("POST", "shuyu/jobs", data={**GOOD, **form})
    assert refused.status_code == status, refused.text[:400]
    assert says in refused.text
    assert "<script>" not in refused.text  # what the form sent is echoed escaped, if at all
    assert 'id="error"' in refused.text or "id=error" in refused.text  # a page, not a status
    assert len(platform.audit_events("job.submit")) == before  # nothing was queued
    if status == 403:
        records = platform.audit_events("egress.blocked", actor="alice")[blocked:]
        assert [r["detail"]["route"] for r in records] == ["shuyu/jobs"]


def test_a_post_without_the_xsrf_token_is_refused(alice: Merchant, platform: Platform) -> None:
    before = len(platform.audit_events("job.submit"))
    forged = alice.session.post(
        f"{alice.base}/shuyu/jobs", data=GOOD, allow_redirects=False, timeout=30
    )
    assert forged.status_code == 403
    assert len(platform.audit_events("job.submit")) == before


def test_the_listing_offers_notebooks_and_scripts_only(alice: Merchant) -> None:
    page = alice.request("GET", "shuyu/jobs")
    assert page.status_code == 200
    assert "page_ok.py" in page.text and "notes.csv" not in page.text
    form = alice.request("GET", "shuyu/jobs?entry=notes.csv")
    assert form.status_code == 400 and "starts from a notebook" in form.text


def _approved_import(platform: Platform, name: str) -> str:
    """File an import for alice's tenant and have rita approve it; its ID."""
    sink = io.BytesIO()
    pq.write_table(pa.table({"n": [1, 2, 3]}), sink)
    body = {
        "name": name,
        "filename": f"{name}.parquet",
        "content_base64": base64.b64encode(sink.getvalue()).decode(),
        "lawful_source": "本公司台账",
        "authorisation": "内部授权",
        "scenario": "作业页面测试",
        "fields": {"n": {}},
    }
    created = platform.service_post("alice", "api/imports", body)
    assert created.status_code == 201, created.text
    import_id = created.json()["id"]
    decided = platform.service_post(
        "rita", f"api/imports/{import_id}/decision", {"action": "approve", "reason": "齐全"}
    )
    assert decided.status_code == 200, decided.text
    return str(import_id)


def test_the_form_offers_the_approved_imports_and_the_job_names_them(
    alice: Merchant, platform: Platform
) -> None:
    box = '<input type=checkbox name=import value="page_ledger">'
    assert box not in alice.request("GET", "shuyu/jobs?entry=page_ok.py").text
    import_id = _approved_import(platform, "page_ledger")
    try:
        form = alice.request("GET", "shuyu/jobs?entry=page_ok.py")
        assert form.status_code == 200 and box in form.text
        sent = alice.request("POST", "shuyu/jobs", data={**GOOD, "import": "page_ledger"})
        assert sent.status_code == 201, sent.text[:400]
        [submitted] = [
            e
            for e in platform.audit_events("job.submit", actor="alice")
            if e["detail"].get("imports")
        ][-1:]
        assert submitted["detail"]["imports"] == {"page_ledger": import_id}
    finally:
        session, headers = platform.service_session("alice")
        gone = session.delete(
            f"{platform.url}/services/shuyu/api/imports/{import_id}", headers=headers, timeout=60
        )
        assert gone.status_code == 200, gone.text
    # Deleted: no longer offered, and the server refuses it even if the form still sends it.
    assert box not in alice.request("GET", "shuyu/jobs?entry=page_ok.py").text
    stale = alice.request("POST", "shuyu/jobs", data={**GOOD, "import": "page_ledger"})
    assert stale.status_code == 410 and "was deleted" in stale.text
