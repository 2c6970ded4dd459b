"""Latency the egress guard adds to allowed requests: opening a notebook, with and without it.

Two jupyter-server processes serve the same folder on loopback, one with the guard
(``shuyu_server`` extension) and one without, both with token authentication and the
same other extensions. Requests alternate between them (so machine noise hits both
alike): ``GET /api/contents/<notebook>`` (what JupyterLab does to open it) and a
directory listing. The report is the median latency of each and the difference; the
goal is at most 5 ms added.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import requests

from .memory import load_average, tree_mib

REQUESTS = int(os.environ.get("BENCH_EGRESS_REQUESTS", "300"))
GOAL_MS = 5.0
NOTEBOOK_CELLS = 50


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _notebook(cells: int) -> dict:
    code = "import pandas as pd\ndf = pd.DataFrame({'a': range(10)})\ndf.describe()"
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": i,
                "id": f"c{i}",
                "metadata": {},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "x" * 200}],
                "source": code,
            }
            for i in range(cells)
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _server(root: Path, token: str, guarded: bool, stack: ExitStack) -> tuple[str, int]:
    port = _port()
    extensions = {"shuyu_server": guarded, "voila.server_extension": False, "jupyter_lsp": False}
    config = root.parent / f"config-{guarded}.json"
    config.write_text(json.dumps({"ServerApp": {"jpserver_extensions": extensions}}))
    command = [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False",
        f"--config={config}",
    ]
    if os.getuid() == 0:
        command.append("--allow-root")
    log = stack.enter_context(open(root.parent / f"server-{guarded}.log", "wb"))  # noqa: SIM115
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(proc.wait, 10)
    stack.callback(proc.terminate)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/api/status?token={token}", timeout=2).ok:
                return url, proc.pid
        except requests.RequestException:
            pass
        time.sleep(0.2)
    sys.exit(f"server (guard={guarded}) did not start: see {log.name}")


def main() -> None:
    """Alternate requests between the two servers; print medians and the added latency."""
    print(f"egress: latency added by the guard, {REQUESTS} requests per server and path")
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shuyu-bench-")))
        root = folder / "work"
        root.mkdir()
        (root / "analysis.ipynb").write_text(json.dumps(_notebook(NOTEBOOK_CELLS)))
        token = secrets.token_hex(16)
        started = {
            "without": _server(root, token, False, stack),
            "with": _server(root, token, True, stack),
        }
        servers = {name: url for name, (url, _) in started.items()}
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"
        refused = session.get(f"{servers['with']}/files/analysis.ipynb", timeout=10)
        assert refused.status_code == 403, "the guarded server does not refuse downloads"
        for path in ("api/contents/analysis.ipynb", "api/contents"):
            times: dict[str, list[float]] = {"without": [], "with": []}
            for _ in range(20):  # warm both up
                for url in servers.values():
                    session.get(f"{url}/{path}", timeout=10).raise_for_status()
            for i in range(REQUESTS):
                order = ("without", "with") if i % 2 else ("with", "without")
                for name in order:
                    started = time.perf_counter()
                    session.get(f"{servers[name]}/{path}", timeout=10).raise_for_status()
                    times[name].append((time.perf_counter() - started) * 1000)
            without = statistics.median(times["without"])
            guarded = statistics.median(times["with"])
            added = guarded - without
            verdict = "within" if added <= GOAL_MS else "OVER"
            print(
                f"  GET /{path}: without {without:.2f} ms, with {guarded:.2f} ms, "
                f"added {added:+.2f} ms ({verdict} the {GOAL_MS:g} ms goal), "
                f"ratio {guarded / without:.3f}x"
            )
        for name, (_, pid) in started.items():
            memory = tree_mib(pid)
            print(
                f"  server {name} the guard: peak RSS {memory['peak']:.0f} MiB, "
                f"RSS {memory['rss']:.0f} MiB, PSS {memory['pss']:.0f} MiB"
            )
        print(f"  ({load_average()})")


if __name__ == "__main__":
    main()
