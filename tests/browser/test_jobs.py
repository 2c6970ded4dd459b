"""A sealed production run from the merchant's own server, in Debian's chromium.

alice saves a script in her sandbox, opens the Submit job page of her server, picks the
script, sets parameters and outputs, submits; the platform freezes exactly what she
picked and the platform's Jobs page shows the run to its end.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import time

import pytest

from harness import Platform
from shuyu_platform.core import audit
from shuyu_platform.jobs import queue

pytestmark = [pytest.mark.hub, pytest.mark.browser, pytest.mark.timeout(600)]

SCRIPT = textwrap.dedent(
    """
    import shuyu.jobs
    from pathlib import Path
    from page_helper import label
    year = shuyu.jobs.parameters()["year"]
    df = shuyu.jobs.input("health_records")
    Path("out").mkdir(exist_ok=True)
    df.groupby("sex").size().rename("n").reset_index().to_csv("out/by_sex.csv", index=False)
    print(label, year, len(df))
    """
)


def _save_files(platform: Platform) -> None:
    run = platform.run_code(
        "alice",
        f"open('page_job.py', 'w').write({SCRIPT!r})\n"
        "open('page_helper.py', 'w').write('label = \"from the page\"\\n')\n",
    )
    assert run.ok, run.error


def _login(page, platform: Platform, name: str) -> None:
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", f"{name}-demo-2026")
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{name}/lab**", timeout=60_000)


def test_merchant_submits_a_job_from_her_server_and_follows_it_on_the_jobs_page(
    page, platform: Platform
) -> None:
    _save_files(platform)
    _login(page, platform, "alice")

    page.goto(f"{platform.url}/user/alice/shuyu/jobs")
    page.wait_for_selector("#entries", timeout=60_000)
    assert "page_helper.py" in page.inner_text("#entries")  # scripts can be entries
    page.click("#entries >> text=page_job.py")
    page.wait_for_selector("#job", timeout=30_000)
    page.fill("textarea[name=parameters]", '{"year": 2031}')
    page.fill("textarea[name=outputs]", "out/*.csv")
    page.check("input[name=file][value='page_helper.py']")
    page.fill("textarea[name=purpose]", "性别分布，用于产品定价（页面提交）")
    page.click("#submit")
    page.wait_for_selector("#job-id", timeout=60_000)
    job_id = page.inner_text("#job-id")
    assert page.inner_text("#status") == "queued"

    # Frozen exactly as shuyu.jobs.submit would have sent it (the same builder): the
    # kernel's submission of the same choice has the frozen code's SHA-256.
    built = platform.run_code(
        "alice",
        "import json, shuyu\n"
        "print(json.dumps(shuyu.jobs.submission('page_job.py', purpose='x', "
        "parameters={'year': 2031}, outputs=['out/*.csv'], files=['page_helper.py'])))",
    )
    assert built.ok, built.error
    frozen = queue.parse_submission(json.loads(built.stdout))
    expected = hashlib.sha256(audit.canonical_json(frozen).encode()).hexdigest()
    job = platform.service_get("alice", f"api/jobs/{job_id}").json()
    assert job["code_sha256"] == expected == page.inner_text("#code-sha256")
    assert job["entry"] == "page_job.py" and job["parameters"] == {"year": 2031}
    assert job["outputs"] == ["out/*.csv"] and job["username"] == "alice"

    # The platform's Jobs page: the run, then its end, exit code and request.
    page.click("#jobs-link")
    page.wait_for_url("**/services/shuyu/jobs", timeout=30_000)
    page.wait_for_selector("table#jobs", timeout=30_000)
    row = page.locator(f"tr[data-id='{job_id}']")
    assert "page_job.py" in row.inner_text()
    deadline = time.monotonic() + 240
    while "status-succeeded" not in (row.get_attribute("class") or ""):
        assert time.monotonic() < deadline, row.inner_text()
        assert "status-failed" not in (row.get_attribute("class") or ""), row.inner_text()
        time.sleep(1)
        page.reload()
        row = page.locator(f"tr[data-id='{job_id}']")
    cells = row.locator("td")
    assert cells.nth(3).inner_text() == "0"  # exit code
    assert " s · " in cells.nth(4).inner_text()  # duration, CPU, memory
    final = platform.service_get("alice", f"api/jobs/{job_id}").json()
    assert final["request_id"] and final["request_id"][:12] in cells.nth(5).inner_text()
    # Neither the log nor the outputs are on the page before release.
    assert "from the page" not in page.content()
