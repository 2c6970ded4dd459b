"""The sealed runner for real: bubblewrap, papermill, production inputs, the egress request."""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness import REPO
from sealed_jobs import files_of, log_of, notebook, released, result, run, state_root, submit
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import Job
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.ingress import imports
from shuyu_platform.jobs import inputs, queue, runner


@pytest.fixture(scope="module")
def policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory, policies: dict[str, DatasetPolicy]) -> Shuyu:
    # Papermill starts a kernel: tens of CPU seconds on a busy machine.
    home = tmp_path_factory.mktemp("jobs") / "home"
    return state_root(home, policies, job_wall_seconds=240, job_cpu_seconds=120)


SUMMARY = """
import json, os
from pathlib import Path
import shuyu.jobs
df = shuyu.jobs.input("health_records")
Path("out").mkdir()
df.groupby("district").size().rename("n").to_csv("out/summary.csv")
Path("out/columns.json").write_text(json.dumps({
    "columns": list(df.columns),
    "full_dates": int((df["birth_date"].astype(str).str[5:] != "01-01").sum()),
    "rows": len(df),
    "parameters": shuyu.jobs.parameters(),
}))
Path("scratch.txt").write_text("not declared")
print("done", len(df))
"""


def test_a_script_reads_the_production_input_and_only_declared_outputs_go_to_review(
    sealed: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    job_id = submit(sealed, {"summary.py": SUMMARY}, outputs=["out/*"], parameters={"year": 2024})
    job = run(sealed, policies, job_id)
    assert job["status"] == "succeeded", job
    assert job["exit_code"] == 0 and job["usage"]["wall_seconds"] > 0
    files = files_of(job)
    assert set(files) == {"out/summary.csv", "out/columns.json", "job.log"}
    assert job["content"]["discarded"] == ["scratch.txt"]
    seen = json.loads(files["out/columns.json"])
    # Full fidelity: dates not generalised, no suppression; identifiers pseudonymised,
    # L4 fields (names, ID cards, phones) never there.
    assert seen["rows"] == 2000 and seen["full_dates"] > 1000
    assert "name" not in seen["columns"] and "id_card" not in seen["columns"]
    assert seen["parameters"] == {"year": 2024}
    production = pq.read_table(inputs.folder(sealed, "kangning") / "health_records.parquet")
    assert all(v.startswith("P-") for v in production.column("person_id").to_pylist()[:50])
    # Its results are an egress request of kind job, submitted for review, not released.
    request = job["request"]
    assert request["kind"] == "job" and request["status"] == "submitted"
    assert request["checks"]["verdict"] in ("pass", "warn", "fail")
    assert not released(sealed, job)
    provenance = job["content"]["provenance"]
    assert provenance["code_sha256"] == job["code_sha256"]
    assert provenance["inputs"]["health_records"] == job["inputs"]["health_records"]
    assert "health_records" in provenance["raw_versions"]  # the raw version it was built from
    assert len(provenance["environment"]["sha256"]) == 64
    assert "done 2000" in log_of(job)
    # Nothing of the run is left on disk; the frozen code stays for the audit.
    assert not (sealed.zone("jobs") / job_id / "run").exists()
    assert queue.code_path(sealed.zone("jobs"), job_id).is_file()
    with db.session_scope(sealed.db_url) as session:
        actions = [
            e["action"]
            for e in audit.query(session, action="job.", limit=1000)
            if e["target"] == f"job:{job_id}"
        ]
    assert actions == ["job.submit", "job.start", "job.succeed"]


def test_a_notebook_runs_with_papermill_and_its_parameters(
    sealed: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    document = notebook(
        "import shuyu.jobs\nfrom pathlib import Path\n"
        "n = len(shuyu.jobs.input('health_records'))\n"
        "Path('out').mkdir(exist_ok=True)\nPath('out/n.txt').write_text(f'{year}:{n}')\nn",
        parameters="year = 2000",
    )
    job_id = submit(
        sealed, {"analysis.ipynb": document}, outputs=["out/*.txt"], parameters={"year": 2025}
    )
    job = run(sealed, policies, job_id)
    assert job["status"] == "succeeded", log_of(job)
    files = files_of(job)
    assert files["out/n.txt"] == b"2025:2000"
    executed = json.loads(files["executed.ipynb"])
    outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
    assert any("2000" in "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)


def test_the_frozen_code_runs_and_code_changed_after_submission_is_refused(
    sealed: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    job_id = submit(sealed, {"a.py": "print('hello')"})
    frozen = queue.code_path(sealed.zone("jobs"), job_id)
    os.chmod(frozen, 0o600)
    code = json.loads(frozen.read_text())
    code["files"]["a.py"] = base64.b64encode(b"print('evil')").decode()
    frozen.write_text(json.dumps(code))
    job = run(sealed, policies, job_id)
    assert job["status"] == "failed"
    assert "SHA-256 mismatch" in job["reason"] and job["request"] is None


def test_a_submission_is_checked_before_anything_is_frozen(sealed: Shuyu) -> None:
    for body, why in (
        ({"entry": "../x.py", "files": {"../x.py": "eA=="}}, "relative path"),
        ({"entry": "x.sh", "files": {"x.sh": "eA=="}}, "notebook"),
        ({"entry": "x.py", "files": {"y.py": "eA=="}}, "not among"),
        ({"entry": "x.ipynb", "files": {"x.ipynb": "eA=="}}, "nbformat"),
        ({"entry": "x.py", "files": {"x.py": "eA=="}, "outputs": ["/etc/*"]}, "relative"),
        ({"entry": "x.py", "files": {"x.py": "eA=="}, "parameters": {"a b": 1}}, "identifiers"),
        ({"entry": "x.py", "files": {"x.py": "eA=="}, "imports": ["../raw"]}, "import names"),
    ):
        with pytest.raises(queue.JobError, match=why):
            queue.parse_submission(body)


def test_production_inputs_follow_the_policy(
    tmp_path: Path, policies: dict[str, DatasetPolicy]
) -> None:
    health = policies["health_records"]
    fields = health.production_fields(list(health.fields))
    assert "person_id" in fields and "birth_date" in fields
    assert not {"name", "id_card", "phone"} & set(fields)
    dropping = health.model_copy(
        update={"production": health.production.model_copy(update={"identifiers": "drop"})}
    )
    assert "person_id" not in dropping.production_fields(list(health.fields))
    assert not policies["bus_ridership"].production.allowed


def test_a_job_cancelled_while_running_is_stopped_and_keeps_nothing(
    sealed: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    job_id = submit(sealed, {"a.py": "import time\nopen('x', 'w').write('x')\ntime.sleep(300)"})
    with db.session_scope(sealed.db_url) as session:
        assert queue.claim(session, job_id, "test-runner")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            runner.run, sealed, policies, job_id, check_context=lambda tenant: None
        )
        work = runner.run_folder(sealed, job_id) / "work" / "x"
        deadline = time.monotonic() + 120
        while not work.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        with db.session_scope(sealed.db_url) as session:
            queue.transition(session, session.get(Job, job_id), "cancel", actor="alice")
        started = time.monotonic()
        assert running.result(timeout=60) == "cancelled"
    assert time.monotonic() - started < 10
    job = result(sealed, job_id)
    assert job["request"] is None and not runner.run_folder(sealed, job_id).exists()


IMPORT_FIELDS = {
    "customer_id": {"identifier": True, "sensitive": False},
    "premium": {"identifier": False, "sensitive": True},
}

READS_IMPORT = """
import json, os
from pathlib import Path
import shuyu
listed = shuyu.imports.list()
df = shuyu.imports.read("customers")
try:
    shuyu.imports.read("notes")
    other = "read"
except shuyu.imports.ImportNotFound as err:
    other = str(err)
Path("out").mkdir()
Path("out/seen.json").write_text(json.dumps({
    "names": sorted(os.listdir("/data/imports")),
    "listed": listed[["name", "rows", "identifiers"]].to_dict("records"),
    "rows": len(df), "premium": float(df["premium"].sum()),
    "tokens": bool(df["customer_id"].str.startswith("I-").all()),
    "fields": df.attrs["fields"], "other": other,
    "writable": os.access("/data/imports/customers/customers.parquet", os.W_OK),
}))
"""


def _approved_import(settings: Shuyu, name: str, tenant: str = "kangning") -> str:
    """An approved import of ``tenant`` (checked and pseudonymised in the real jail)."""
    import io

    import pyarrow as pa

    sink = io.BytesIO()
    table = pa.table({"customer_id": [f"C{n:05d}" for n in range(50)], "premium": [2.0] * 50})
    pq.write_table(table, sink)
    row = imports.submit(
        settings,
        tenant=tenant,
        username="alice",
        name=name,
        filename=f"{name}.parquet",
        content_base64=base64.b64encode(sink.getvalue()).decode(),
        lawful_source="本公司业务系统",
        authorisation="客户授权书",
        scenario="测试",
        fields=IMPORT_FIELDS,
    )
    imports.decide(settings, row["id"], reviewer="rita", action="approve", reason="")
    return str(row["id"])


def test_a_job_reads_only_the_imports_it_names_and_a_deleted_one_stops_it(
    sealed: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    customers = _approved_import(sealed, "customers")
    _approved_import(sealed, "notes")  # approved too, but the job does not name it
    job_id = submit(sealed, {"seen.py": READS_IMPORT}, outputs=["out/*"], imports=["customers"])
    queued = submit(sealed, {"again.py": "print('never runs')"}, imports=["customers"])
    job = run(sealed, policies, job_id)
    assert job["status"] == "succeeded", log_of(job)
    seen = json.loads(files_of(job)["out/seen.json"])
    # Bound read-only where the sandbox has it; only the named import, pseudonymised.
    assert seen["names"] == ["customers"] and seen["writable"] is False
    assert seen["listed"] == [{"name": "customers", "rows": 50, "identifiers": ["customer_id"]}]
    assert seen["rows"] == 50 and seen["premium"] == 100.0 and seen["tokens"]
    assert seen["fields"]["premium"] == {"identifier": False, "sensitive": True}
    assert "No approved import named 'notes'" in seen["other"] and "named" in seen["other"]
    stored = imports.get(sealed, customers)["stored_sha256"]
    provenance = job["content"]["provenance"]
    assert provenance["imports"] == {"customers": {"id": customers, "sha256": stored}}

    # Another tenant cannot name it (and is not told it exists).
    with pytest.raises(queue.JobError) as foreign:
        submit(sealed, {"x.py": "pass"}, tenant="other-co", imports=["customers"])
    assert foreign.value.status == 404 and "other-co has no import named" in foreign.value.message

    imports.delete(sealed, customers, username="alice", tenant="kangning")
    with pytest.raises(queue.JobError) as deleted:
        submit(sealed, {"x.py": "pass"}, imports=["customers"])
    assert deleted.value.status == 410 and "was deleted" in deleted.value.message
    stopped = run(sealed, policies, queued)
    assert stopped["status"] == "failed" and stopped["request"] is None
    assert f"'customers' ({customers}) was deleted" in stopped["reason"]
