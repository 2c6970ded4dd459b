"""The parsing jail from the inside: who it runs as, what it sees, what stops it.

Every test runs the real jail (prlimit, bubblewrap, setpriv). Where a test needs code
of its own inside, it keeps the jail's command line and replaces only the program at
its end, so the wrapper under test is exactly the one the service uses.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

import bombs
from shuyu_platform.egress import disclosure, jailed
from shuyu_platform.egress import requests as egress
from shuyu_platform.isolation import jail


def probe(code: str, limits: jail.Limits) -> list[str]:
    """The jail's command line with ``python -c code`` in place of the jailed task."""
    argv = jail.command(limits, "egress.checks")
    return [*argv[: argv.index("-I")], "-I", "-c", code]


def run_probe(code: str, limits: jail.Limits | None = None) -> dict:
    return jail.execute(probe(code, limits or jail.Limits()), None, limits or jail.Limits())


LOOK_AROUND = """
import json, os, socket, sys
seen = {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd()}
seen["interfaces"] = sorted(name for _, name in socket.if_nameindex())
try:
    socket.create_connection(("127.0.0.1", 22), timeout=2)
    seen["tcp"] = "connected"
except OSError as err:
    seen["tcp"] = type(err).__name__
seen["env"] = sorted(os.environ)
seen["paths"] = {p: os.path.exists(p) for p in sys.argv[1:] or []}
seen["pid1"] = open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode()
try:
    open(os.path.join(os.path.dirname(json.__file__), "shuyu-was-here"), "w")
    seen["write_software"] = "written"
except OSError as err:
    seen["write_software"] = type(err).__name__
print(json.dumps({"result": seen}))
"""


def test_the_jail_runs_as_nobody_without_network_or_the_state_root(tmp_path: Path) -> None:
    secret = tmp_path / "db" / "shuyu.sqlite"
    secret.parent.mkdir()
    secret.write_text("platform database")
    paths = [str(secret), "/etc/shadow", "/etc/passwd"]
    code = f"import sys; sys.argv[1:] = {paths!r}\n" + LOOK_AROUND
    seen = run_probe(code)
    assert (seen["uid"], seen["gid"]) == (jail.NOBODY, jail.NOBODY)
    assert seen["interfaces"] == ["lo"]  # a network namespace of its own, empty
    assert seen["tcp"] in ("ConnectionRefusedError", "OSError")  # lo is down or empty
    assert not any(seen["paths"].values()), seen["paths"]  # no state root, no host files
    assert "SHUYU_HOME" not in seen["env"] and "JUPYTERHUB_API_TOKEN" not in seen["env"]
    assert seen["write_software"] in ("OSError", "PermissionError")  # software read-only
    assert seen["pid1"].endswith("bwrap")  # its own PID namespace


def test_a_task_over_the_cpu_limit_is_stopped() -> None:
    with pytest.raises(jail.JailRefusal, match="more than 2 s of CPU") as refused:
        run_probe("while True: pass", jail.Limits(cpu_seconds=2, wall_seconds=60))
    assert refused.value.reason == "cpu"


def test_a_task_over_the_wall_clock_is_killed_with_everything_it_started() -> None:
    start = time.monotonic()
    code = "import os, time\nos.fork()\ntime.sleep(60)"
    with pytest.raises(jail.JailRefusal, match="longer than 2 s") as refused:
        run_probe(code, jail.Limits(wall_seconds=2))
    assert refused.value.reason == "time" and time.monotonic() - start < 30


def test_an_answer_over_the_output_limit_is_refused() -> None:
    code = "import sys\nsys.stdout.write('x' * (3 << 20))"
    with pytest.raises(jail.JailRefusal, match="larger than 1 MiB") as refused:
        run_probe(code, jail.Limits(output_mb=1))
    assert refused.value.reason == "output"


def test_only_the_listed_tasks_run() -> None:
    with pytest.raises(KeyError, match="no jailed task"):
        jail.run("os:system", "id")


def _file(name: str, data: bytes) -> dict:
    body = {"kind": "file", "path": name, "data_b64": base64.b64encode(data).decode()}
    return egress.parse_content(body)


def test_a_compressed_text_bomb_in_a_png_is_refused_for_memory() -> None:
    content = _file("chart.png", bombs.png_text_bomb())
    with pytest.raises(jail.JailRefusal, match="more than 1024 MiB of memory") as refused:
        jailed.check_content(content, disclosure.Context(), jail.Limits())
    assert refused.value.reason == "memory"


def test_a_deeply_nested_json_file_is_refused_with_the_reason() -> None:
    content = _file("result.json", bombs.deep_json())
    with pytest.raises(jail.JailRefusal, match="recursion") as refused:
        jailed.check_content(content, disclosure.Context(), jail.Limits())
    assert refused.value.reason == "content"


def test_checks_in_the_jail_report_what_they_report_in_process() -> None:
    content = _file("rates.csv", "区县,人数\n涪城区,3\n游仙区,873\n".encode())
    jailed_report = jailed.check_content(content, disclosure.Context(), jail.Limits())
    in_process = egress.run_checks(content, disclosure.Context())
    assert json.dumps(jailed_report.as_dict()) == json.dumps(in_process.as_dict())
    assert jailed_report.verdict == "fail"  # the 3 is below the minimum cell count
