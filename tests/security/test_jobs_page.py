"""The Submit job page of a merchant's server, attacked from the merchant's own session.

Whatever the form says, the page sends only files of the work folder as saved (a symlink
out of it is refused and recorded), only a notebook or a script as entry, parameters
only as a JSON object; every refusal is a specific 4xx page and no job is queued.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

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
