"""What the egress gateway costs: latency and websocket throughput, with and without it.

One jupyter-server (token authentication, base URL ``/user/bench/``) serves a folder
with a notebook; a relay puts it behind a Unix socket, as ``sandbox_init`` does in a
sandbox. Two ways reach that socket, both in one event loop in a thread, as in the hub:

- **without**: the plain TCP-to-socket relay the hub used before the gateway;
- **with**: the egress gateway (allow-list, reply checks, metering to a SQLite table).

The hub's side runs in a process of its own (as the hub does), apart from the client.
Requests alternate between the two so machine noise hits both alike. Reported, as
medians: ``GET api/contents/<notebook>`` (opening a notebook in JupyterLab), an
``execute_request`` round trip on the kernel websocket (send, until ``execute_reply``),
and the throughput of a kernel's ``display_data`` flood received by the client (below
the cap), in MB/s. Goals: at most 2 ms added, at least 50 MB/s.

``BENCH_GATEWAY_REQUESTS`` (default 200) sets the number of requests and round trips per
path; ``BENCH_GATEWAY_MB`` (default 200) the size of each flood.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
import websocket

from benchmarks.egress import _notebook, _port
from shuyu_platform.core import db
from shuyu_platform.egress.metering import Meter
from shuyu_platform.isolation.gateway import Gateway, Limits
from shuyu_server.relay import Endpoint, serve

REQUESTS = int(os.environ.get("BENCH_GATEWAY_REQUESTS", "200"))
FLOOD_MB = int(os.environ.get("BENCH_GATEWAY_MB", "200"))
GOAL_MS = 2.0
GOAL_MBS = 50.0
BASE = "/user/bench/"


def _server(root: Path, token: str, stack: ExitStack) -> int:
    import subprocess
    import sys

    port = _port()
    config = root.parent / "config.json"
    config.write_text(
        json.dumps(
            {
                "ServerApp": {
                    "jpserver_extensions": {
                        "shuyu_server": False,
                        "voila.server_extension": False,
                        "jupyter_lsp": False,
                    }
                }
            }
        )
    )
    command = [
        sys.executable, "-m", "jupyter_server", f"--ServerApp.root_dir={root}",
        f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.base_url={BASE}",
        f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
        f"--config={config}", "--ServerApp.iopub_data_rate_limit=0",
    ]  # fmt: skip
    if os.getuid() == 0:
        command.append("--allow-root")
    log = stack.enter_context(open(root.parent / "server.log", "wb"))  # noqa: SIM115
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(proc.wait, 10)
    stack.callback(proc.terminate)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}{BASE}api/status?token={token}"
            if requests.get(url, timeout=2).ok:
                return port
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not start: see {log.name}")


def _execute(ws: websocket.WebSocket, code: str) -> tuple[float, int]:
    """Send ``code``; seconds until its execute_reply and idle, and frame bytes received."""
    msg_id = uuid.uuid4().hex
    started = time.perf_counter()
    ws.send(
        json.dumps(
            {
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "b",
                           "session": "bench", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False},
            }
        )
    )  # fmt: skip
    received, replied = 0, None
    while True:
        frame = ws.recv()
        received += len(frame)
        head = frame[:600] if isinstance(frame, str) else ""
        if msg_id in frame[:2000] and '"execute_reply"' in head and replied is None:
            replied = time.perf_counter() - started
        if '"status"' in head and msg_id in frame and '"idle"' in frame:
            return (replied if replied is not None else time.perf_counter() - started), received


def main() -> None:
    """Run all three measurements, alternating with and without the gateway."""
    print(
        f"gateway: {REQUESTS} requests/round trips per way, {FLOOD_MB} MB floods; goals "
        f"<= {GOAL_MS:g} ms added, >= {GOAL_MBS:g} MB/s"
    )
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shuyu-bench-")))
        root = folder / "work"
        root.mkdir()
        (root / "analysis.ipynb").write_text(json.dumps(_notebook(50)))
        token = secrets.token_hex(16)
        port = _server(root, token, stack)
        db_url = f"sqlite:///{folder / 'bench.sqlite'}"
        db.upgrade(db_url)

        sock = str(folder / "server.sock")
        parent, child = multiprocessing.Pipe()
        hub = multiprocessing.get_context("fork").Process(
            target=_hub_side, args=(child, sock, port, db_url), daemon=True
        )
        hub.start()
        stack.callback(hub.join, 10)
        stack.callback(hub.terminate)
        plain, gated = parent.recv()
        global HUB_PID
        HUB_PID = hub.pid
        ways = {"without": f"127.0.0.1:{plain}", "with": f"127.0.0.1:{gated}"}
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"
        refused = session.get(f"http://{ways['with']}{BASE}files/analysis.ipynb", timeout=10)
        assert refused.status_code == 403, "the gateway does not refuse downloads"

        _latency(session, ways)
        sockets = {}  # one kernel per way: iopub goes to every socket of a kernel
        for name, address in ways.items():
            kernel = session.post(
                f"http://{address}{BASE}api/kernels", json={"name": "python3"}, timeout=60
            ).json()["id"]
            sockets[name] = websocket.create_connection(
                f"ws://{address}{BASE}api/kernels/{kernel}/channels",
                header=[f"Authorization: token {token}"],
                timeout=300,
                skip_utf8_validation=True,  # a browser's C++ validation is not the cost here
            )
        try:
            _round_trips(sockets)
            _throughput(sockets)
        finally:
            for ws in sockets.values():
                ws.close()


def _hub_side(pipe: Any, sock: str, port: int, db_url: str) -> None:
    """The hub's side, in a process of its own as in the hub: both ways to the server."""

    async def run() -> None:
        await serve(Endpoint.parse(f"unix:{sock}"), Endpoint.parse(f"tcp:127.0.0.1:{port}"))
        relay = await serve(Endpoint.parse("tcp:127.0.0.1:0"), Endpoint.parse(f"unix:{sock}"))
        gateway = Gateway(
            socket_path=sock,
            base_url=BASE,
            username="bench",
            tenant="bench",
            db_url=db_url,
            meter=Meter(db_url, cap=0),
            limits=Limits(),
        )
        pipe.send((relay.sockets[0].getsockname()[1], gateway.listen()))
        await asyncio.Event().wait()

    asyncio.run(run())


#: The hub-side process, whose CPU time per request is measured as well: on a busy
#: machine wall-clock latency mostly measures waiting for a core, while the gateway's
#: CPU time per request is what it adds on an idle one.
HUB_PID = 0
TICK = os.sysconf("SC_CLK_TCK")


def _cpu() -> float:
    """CPU seconds (user + system) the hub-side process has used so far."""
    fields = Path(f"/proc/{HUB_PID}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _report(what: str, times: dict[str, list[float]], cpu: dict[str, float]) -> None:
    without = statistics.median(times["without"]) * 1000
    gated = statistics.median(times["with"]) * 1000
    added = gated - without
    cpu_added = (cpu["with"] - cpu["without"]) / len(times["with"]) * 1000
    verdict = "within" if added <= GOAL_MS else "OVER"
    print(
        f"  {what}: without {without:.2f} ms, with {gated:.2f} ms, added {added:+.2f} ms "
        f"({verdict} the {GOAL_MS:g} ms goal); hub-side CPU added {cpu_added:+.2f} ms"
    )


def _latency(session: requests.Session, ways: dict[str, str]) -> None:
    path = f"{BASE}api/contents/analysis.ipynb"
    times: dict[str, list[float]] = {"without": [], "with": []}
    cpu = {"without": 0.0, "with": 0.0}
    for i in range(REQUESTS + 20):
        for name in ("without", "with") if i % 2 else ("with", "without"):
            used, started = _cpu(), time.perf_counter()
            session.get(f"http://{ways[name]}{path}", timeout=30).raise_for_status()
            if i >= 20:
                times[name].append(time.perf_counter() - started)
                cpu[name] += _cpu() - used
    _report("open a notebook (GET api/contents/analysis.ipynb)", times, cpu)


def _round_trips(sockets: dict[str, Any]) -> None:
    times: dict[str, list[float]] = {"without": [], "with": []}
    cpu = {"without": 0.0, "with": 0.0}
    for i in range(REQUESTS + 10):
        for name in ("without", "with") if i % 2 else ("with", "without"):
            used = _cpu()
            elapsed, _ = _execute(sockets[name], "1")
            if i >= 10:
                times[name].append(elapsed)
                cpu[name] += _cpu() - used
    _report("execute_request round trip", times, cpu)


def _throughput(sockets: dict[str, Any]) -> None:
    chunk = 1024 * 1024
    code = (
        "from IPython.display import display\n"
        f"for i in range({FLOOD_MB}): display({{'text/plain': 'x' * {chunk}}}, raw=True)"
    )
    rates: dict[str, list[float]] = {"without": [], "with": []}
    cpu = {"without": 0.0, "with": 0.0}
    sent = {"without": 0, "with": 0}
    for i in range(3):
        for name in ("without", "with") if i % 2 else ("with", "without"):
            used, started = _cpu(), time.perf_counter()
            _, received = _execute(sockets[name], code)
            rates[name].append(received / 1e6 / (time.perf_counter() - started))
            cpu[name] += _cpu() - used
            sent[name] += received
    without = statistics.median(rates["without"])
    gated = statistics.median(rates["with"])
    # What one core of the hub could pass through the gateway, from its CPU time per MB.
    capacity = sent["with"] / 1e6 / max(cpu["with"], 1 / TICK)
    verdict = "within" if capacity >= GOAL_MBS else "BELOW"
    print(
        f"  display_data flood end to end: without {without:.1f} MB/s, with {gated:.1f} MB/s "
        f"(ratio {gated / without:.3f}x; the kernel is the bottleneck); the gateway's own "
        f"capacity from its CPU time: {capacity:.0f} MB/s per core ({verdict} the "
        f"{GOAL_MBS:g} MB/s goal)"
    )


if __name__ == "__main__":
    main()
