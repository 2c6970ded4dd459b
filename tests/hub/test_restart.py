"""The hub killed with SIGKILL under load comes back with the same command, for everyone.

Before the fix, the platform service outlived a killed hub: the restarted hub could not
bind the service port, the orphan kept the old OAuth client secret, and every sign-in to
the service failed with ``invalid_client``; and each service start drew a new cookie
secret, signing everyone out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest
import requests

from harness import Platform, launch_hub, running_platform, wait_until_up
from shuyu_platform.core import lifetime
from shuyu_platform.demo import DEMO_ACCOUNTS

pytestmark = [pytest.mark.hub, pytest.mark.timeout(1200)]

SERVICE = "/services/shuyu"


def _load(platform: Platform, stop: threading.Event, counts: dict[str, int]) -> None:
    """Signed-in users reading the catalogue and their budget until told to stop.

    A sign-in the loaded hub answers with an error (the proxy's 503 when the hub is slow
    to answer it) is tried again, so every thread adds its load."""
    sessions: list[requests.Session] = []
    for name in ("alice", "bob", "rita"):
        while not stop.is_set():
            try:
                sessions.append(platform.service_session(name)[0])
                break
            except (AssertionError, requests.RequestException):
                time.sleep(0.5)
    while not stop.is_set():
        for session in sessions:
            with contextlib.suppress(requests.RequestException):
                answer = session.get(f"{platform.url}{SERVICE}/api/catalogue", timeout=5)
                counts[str(answer.status_code)] = counts.get(str(answer.status_code), 0) + 1


def test_hub_killed_under_load_restarts_cleanly_for_every_role(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_platform(home) as platform:
        alice = platform.login("alice")
        platform.start_server(alice, "alice")
        before = platform.run_code("alice", "print(6 * 7)")
        assert before.ok and before.stdout.strip() == "42", before
        rita, _ = platform.service_session("rita")
        assert rita.get(f"{platform.url}{SERVICE}/api/catalogue", timeout=30).status_code == 200

        secret = home / "hub" / "service-cookie-secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        secret_before = secret.read_bytes()
        service_pid = int((home / "hub" / "shuyu_platform-service.pid").read_text())

        stop = threading.Event()
        counts: dict[str, int] = {}
        loaders = [threading.Thread(target=_load, args=(platform, stop, counts)) for _ in range(3)]
        for loader in loaders:
            loader.start()
        try:
            deadline = time.monotonic() + 90
            while counts.get("200", 0) < 10 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert counts.get("200", 0) >= 10, counts  # the load really runs
            os.kill(platform.proc.pid, signal.SIGKILL)  # the hub alone, not its group
            platform.proc.wait(30)

            # Its managed services die with it: nothing is left holding the port.
            deadline = time.monotonic() + 20
            while lifetime._alive(service_pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not lifetime._alive(service_pid), "the platform service outlived the hub"

            # The same command starts it again, while the load goes on.
            platform.proc, platform.log_path = launch_hub(home, platform.env)
            wait_until_up(platform)
        finally:
            stop.set()
            for loader in loaders:
                loader.join(30)

        assert secret.read_bytes() == secret_before
        assert int((home / "hub" / "shuyu_platform-service.pid").read_text()) != service_pid
        assert "invalid_client" not in platform.log()

        # Signed in before the crash, still signed in to the service after it.
        kept = rita.get(f"{platform.url}{SERVICE}/api/catalogue", timeout=30)
        assert kept.status_code == 200, kept.text

        # Every role signs in afresh: the hub, then the service through hub OAuth.
        for account in DEMO_ACCOUNTS:
            session, _ = platform.service_session(account.name)
            me = platform.hub_api(session, "GET", "user")
            assert me.status_code == 200 and me.json()["name"] == account.name, me.text
            answer = session.get(f"{platform.url}{SERVICE}/api/catalogue", timeout=30)
            assert answer.status_code == 200, (account.name, answer.status_code, answer.text)

        # Merchants reach a sandbox: alice's survived the crash, bob's starts fresh.
        for merchant in ("alice", "bob"):
            run = platform.run_code(merchant, "import shuyu\nprint(len(shuyu.catalogue()) > 0)")
            assert run.ok and run.stdout.strip() == "True", (merchant, run)
