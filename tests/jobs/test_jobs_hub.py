"""Sealed production runs end to end on a real hub, from a real kernel.

alice writes code against the synthetic twin in her sandbox, submits it unchanged, the
platform service's worker runs it sealed on the production input, the checks run, rita
approves, alice downloads the released output and reads the log; other tenants see
nothing of it.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator

import pytest

from harness import Platform
from kernel import Kernel

pytestmark = [pytest.mark.hub, pytest.mark.timeout(900)]

SERVICE = "/services/shuyu"

CODE = """
import shuyu.jobs
from pathlib import Path
year = shuyu.jobs.parameters().get("year", 0)
df = shuyu.jobs.input("health_records")
Path("out").mkdir(exist_ok=True)
table = df.groupby("sex").size().rename("n").reset_index()
table.to_csv("out/by_sex.csv", index=False)
print("rows", len(df), "year", year)
"""


@pytest.fixture(scope="module")
def alice(platform: Platform) -> Iterator[Kernel]:
    session = platform.login("alice")
    platform.start_server(session, "alice")
    kernel = Kernel(platform.url, session, "alice")
    yield kernel
    kernel.close()


def _job(platform: Platform, user: str, job_id: str) -> dict:
    answer = platform.service_get(user, f"api/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_alice_develops_on_the_twin_submits_and_downloads_the_reviewed_result(
    alice: Kernel, platform: Platform
) -> None:
    develop = alice.run(
        "import shuyu\nopen('by_sex.py', 'w').write(" + repr(CODE) + ")\n"
        "exec(open('by_sex.py').read())\n"
        "print(open('out/by_sex.csv').read())"
    )
    assert develop.ok, develop.error  # the same code runs on the synthetic twin here
    assert "rows" in develop.stdout
    submitted = alice.run(
        textwrap.dedent(
            """
            import json, time, shuyu
            job = shuyu.jobs.submit("by_sex.py", parameters={"year": 2025},
                                    outputs=["out/*.csv"], purpose="性别分布，用于产品定价")
            print(json.dumps(job))
            """
        )
    )
    assert submitted.ok, submitted.error
    job = json.loads(submitted.stdout)
    assert job["status"] == "queued" and job["username"] == "alice"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = _job(platform, "alice", job["id"])
    assert job["status"] == "succeeded", job
    assert job["exit_code"] == 0 and job["request_id"]
    # Before release alice sees the status, never the log.
    early = alice.run(f"import shuyu\nshuyu.jobs.logs({job['id']!r})")
    assert early.error is not None and "released" in early.error["evalue"]

    # rita sees the job beside its request, and approves.
    rita, _ = platform.service_session("rita")
    page = rita.get(f"{platform.url}{SERVICE}/review/{job['request_id']}", timeout=30)
    assert page.status_code == 200 and job["code_sha256"] in page.text
    seen = platform.service_get("rita", f"api/egress/requests/{job['request_id']}").json()
    assert seen["kind"] == "job" and seen["status"] == "submitted"
    decided = platform.service_post(
        "rita",
        f"api/egress/requests/{job['request_id']}/decision",
        {
            "action": "approve",
            "comment": "汇总表可以发布",
            "snapshot_sha256": seen["snapshot_sha256"],
        },
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "released"
    names = [f["name"] for f in decided.json()["release"]["files"]]
    assert "out__by_sex.csv" in names

    owner, _ = platform.service_session("alice")
    download = owner.get(
        f"{platform.url}{SERVICE}/exports/{job['request_id']}/out__by_sex.csv", timeout=30
    )
    assert download.status_code == 200 and b"sex" in download.content
    record = owner.get(
        f"{platform.url}{SERVICE}/api/egress/requests/{job['request_id']}/release", timeout=30
    ).json()["provenance"]
    assert record["job"]["code_sha256"] == job["code_sha256"]
    assert record["job"]["parameters"] == {"year": 2025}
    assert set(record["job"]["inputs"]) == {"health_records", "social_insurance"}  # its grants
    log = alice.run(f"import shuyu\nprint(shuyu.jobs.logs({job['id']!r}))")
    assert log.ok and "year 2025" in log.stdout
    listed = alice.run("import shuyu\nprint(shuyu.jobs.list().to_json())")
    assert job["id"] in listed.stdout
    jobs_page = owner.get(f"{platform.url}{SERVICE}/jobs", timeout=30)
    assert jobs_page.status_code == 200 and job["id"][:12] in jobs_page.text

    # Another tenant's merchant sees nothing of it.
    bob = platform.service_get("bob", f"api/jobs/{job['id']}")
    assert bob.status_code == 404
    assert job["id"] not in platform.service_get("bob", "api/jobs").text
    actions = [
        e["action"] for e in platform.audit_events("job.") if e["target"] == f"job:{job['id']}"
    ]
    assert actions[:3] == ["job.submit", "job.start", "job.succeed"]


def test_a_job_naming_an_import_the_tenant_lacks_is_refused_over_http(
    platform: Platform,
) -> None:
    body = {
        "entry": "a.py",
        "files": {"a.py": "cHJpbnQoMSk="},
        "purpose": "导入数据测试",
        "imports": ["no_such_import"],
    }
    before = len(platform.service_get("alice", "api/jobs").json()["jobs"])
    unknown = platform.service_post("alice", "api/jobs", body)
    assert unknown.status_code == 404, unknown.text
    assert "kangning has no import named 'no_such_import'" in unknown.json()["message"]
    malformed = platform.service_post("alice", "api/jobs", {**body, "imports": ["../raw"]})
    assert malformed.status_code == 400 and "imports" in malformed.json()["message"]
    assert len(platform.service_get("alice", "api/jobs").json()["jobs"]) == before  # none queued
