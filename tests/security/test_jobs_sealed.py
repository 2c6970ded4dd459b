"""A merchant's job trying to get out of the sealed runner, or to take the machine down.

alice (tenant kangning) submits code that reaches for the network, for a hub and a
platform API listening on this machine, for another tenant's production input and the
state root, that writes outside its work folder, forks without end, and overruns memory,
CPU, wall-clock time and disk. Each attempt fails, the job ends cleanly (audited), and
nothing of it is released: whatever it left is at most an export request waiting for
review. The control beside each attempt shows the thing it reached for is really there.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import REPO
from sealed_jobs import limited, log_of, released, run, state_root, submit
from shuyu_platform.core import audit, db
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.egress import disclosure
from shuyu_platform.jobs import inputs, runner


@pytest.fixture(scope="module")
def policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory, policies: dict[str, DatasetPolicy]) -> Shuyu:
    settings = state_root(tmp_path_factory.mktemp("attack") / "home", policies)
    inputs.build(settings, "other-co", policies)  # another tenant's input exists on disk
    return settings


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A TCP server on the host's loopback, standing in for the hub and the platform API."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                conn.sendall(b"hello from the host\n")
                conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join()
    server.close()


def _attack(settings: Shuyu, policies: dict[str, DatasetPolicy], code: str, **kw: object) -> dict:
    job = run(settings, policies, submit(settings, {"attack.py": code}, **kw))  # type: ignore[arg-type]
    assert not released(settings, job)
    return job


def _audited(settings: Shuyu, job: dict, action: str) -> None:
    with db.session_scope(settings.db_url) as session:
        actions = [
            e["action"]
            for e in audit.query(session, action="job.", limit=1000)
            if e["target"] == f"job:{job['id']}"
        ]
    assert action in actions, actions


def test_a_job_has_no_network_no_hub_and_no_platform_api(
    sealed: Shuyu, policies: dict[str, DatasetPolicy], listener: int
) -> None:
    with socket.create_connection(("127.0.0.1", listener), timeout=5) as control:
        assert control.recv(100).startswith(b"hello")  # the host's service is there
    code = f"""
import socket, urllib.request
tried = []
for target in [("127.0.0.1", {listener}), ("127.0.0.1", {sealed.service_port}),
               ("127.0.0.1", {sealed.port}), ("10.0.0.1", 80), ("1.1.1.1", 53)]:
    try:
        socket.create_connection(target, timeout=3).close()
        tried.append(("CONNECTED", target))
    except OSError as err:
        tried.append((type(err).__name__, target))
try:
    socket.getaddrinfo("example.com", 443)
    tried.append(("RESOLVED", "example.com"))
except OSError as err:
    tried.append((type(err).__name__, "dns"))
print(tried)
print(sorted(socket.if_nameindex()))
raise SystemExit(3 if any(t[0] in ("CONNECTED", "RESOLVED") for t in tried) else 1)
"""
    job = _attack(sealed, policies, code)
    log = log_of(job)
    assert job["status"] == "failed" and job["exit_code"] == 1, log
    assert "CONNECTED" not in log and "RESOLVED" not in log
    assert "'lo'" in log and "eth" not in log  # only its own loopback
    _audited(sealed, job, "job.fail")


def test_a_job_reads_only_its_own_tenants_production_input(
    sealed: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    theirs = inputs.folder(sealed, "other-co") / "social_insurance.parquet"
    assert theirs.is_file()  # the control: the other tenant's input is on this machine
    code = f"""
import os, shuyu.jobs
print(sorted(os.listdir("/job/inputs")))
for path in ["{theirs}", "{sealed.zone("raw")}", "{sealed.zone("db")}", "/job/inputs/../../"]:
    print(path, os.listdir(path) if os.path.isdir(path) else os.path.exists(path))
shuyu.jobs.input("social_insurance")
"""
    job = _attack(sealed, policies, code)
    log = log_of(job)
    assert job["status"] == "failed", log
    assert "['health_records.parquet']" in log
    assert "no production input 'social_insurance'" in log
    assert f"{theirs} False" in log and f"{sealed.zone('raw')} False" in log


def test_a_job_writes_nowhere_but_its_work_folder(
    sealed: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    code = f"""
import os
wrote = []
for path in ["/job/code/x", "/job/inputs/x", "/job/inputs/health_records.parquet",
             "/usr/x", "/x", "{sealed.zone("outbox")}/x", "{REPO}/x", "/proc/sys/kernel/x"]:
    try:
        with open(path, "w") as f:
            f.write("x")
        wrote.append(path)
    except OSError as err:
        print("refused", path, type(err).__name__)
os.symlink("/job/inputs/health_records.parquet", "out.parquet")
os.mkfifo("pipe.csv")  # a declared output that would block a reader
print("WROTE", wrote)
raise SystemExit(3 if wrote else 0)
"""
    job = _attack(sealed, policies, code, outputs=["*"])
    log = log_of(job)
    assert "WROTE []" in log, log
    # The link to the input was not followed: it is discarded, not taken out.
    assert {"out.parquet", "pipe.csv"} <= set(job["content"]["discarded"])
    assert not (sealed.zone("outbox") / "x").exists() and not (REPO / "x").exists()


@pytest.mark.parametrize(
    ("code", "limits", "status", "reason"),
    [
        (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
            "        pass",
            {"job_wall_seconds": 8},
            ("failed", "timed_out"),
            "",
        ),
        ("x = bytearray(2 * 1024**3)", {}, ("failed",), "memory"),
        ("b = []\nwhile True:\n    b.append(bytearray(64 * 1024**2))", {}, ("failed",), "memory"),
        (
            "while True:\n    pass",
            {"job_cpu_seconds": 2, "job_wall_seconds": 120},
            ("timed_out",),
            "CPU",
        ),
        ("import time\ntime.sleep(600)", {"job_wall_seconds": 3}, ("timed_out",), "longer than"),
        ("with open('big', 'wb') as f:\n    f.write(b'x' * 64 * 1024**2)", {}, ("failed",), ""),
    ],
    ids=["fork-bomb", "memory-at-once", "memory-growing", "cpu", "wall-clock", "disk"],
)
def test_overruns_end_the_job_cleanly(
    sealed: Shuyu,
    policies: dict[str, DatasetPolicy],
    code: str,
    limits: dict[str, int],
    status: tuple[str, ...],
    reason: str,
) -> None:
    base = {"job_wall_seconds": 60, "job_cpu_seconds": 30, "job_memory_mb": 256}
    settings = limited(sealed, **{**base, "job_disk_mb": 16, "job_pids": 64, **limits})
    started = time.monotonic()
    job = _attack(settings, policies, code)
    assert job["status"] in status, (job["status"], job["reason"], log_of(job)[-2000:])
    assert reason in job["reason"]
    assert time.monotonic() - started < 180
    _audited(settings, job, {"failed": "job.fail", "timed_out": "job.time_out"}[job["status"]])
    # No process of the job is left behind.
    leftovers = [
        p for p in Path("/proc").iterdir()
        if p.name.isdigit() and "attack.py" in _cmdline(p)
    ]  # fmt: skip
    assert not leftovers


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_row_level_output_is_flagged_by_the_checks(
    sealed: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    code = "import shuyu.jobs\nshuyu.jobs.input('health_records').to_csv('rows.csv', index=False)"
    job_id = submit(sealed, {"dump.py": code}, outputs=["rows.csv"])
    from sealed_jobs import result
    from shuyu_platform.core.db import session_scope
    from shuyu_platform.jobs import queue

    with session_scope(sealed.db_url) as session:
        assert queue.claim(session, job_id, "test-runner")
    runner.run(
        sealed, policies, job_id,
        check_context=lambda tenant: disclosure.Context(rules=disclosure.Rules()),
    )  # fmt: skip
    job = result(sealed, job_id)
    assert job["status"] == "succeeded"
    assert job["request"]["verdict"] == "fail", job["request"]["checks"]
    assert not released(sealed, job)


def test_two_jobs_run_side_by_side_without_seeing_each_other(
    sealed: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    code = (
        "import os, time\nopen('mine', 'w').write(str(os.getpid()))\ntime.sleep(1)\n"
        "print(sorted(os.listdir('.')))"
    )
    ids = [submit(sealed, {"a.py": code}) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        jobs = list(pool.map(lambda j: run(sealed, policies, j), ids))
    for job in jobs:
        assert job["status"] == "succeeded"
        assert "['mine']" in log_of(job)
