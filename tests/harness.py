"""Start and drive a real Shuyu platform for tests: JupyterHub, its proxy, its services.

Nothing here is mocked. :func:`start_platform` runs ``jupyterhub -f jupyterhub_config.py``
from the repository in a subprocess with its own state root and free ports, exactly as
``make demo`` does, and :class:`Platform` logs in over HTTP like a browser would.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

from kernel import Execution, Kernel
from shuyu_platform.core import db
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.isolation.disk_quota import mount_points

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def local_settings(home: Path, **traits: Any) -> Shuyu:
    """Settings of a state root at ``home``: zones made, database migrated, no process.

    For tests of the platform's modules that need its zones and database but no hub.
    """
    settings = Shuyu(
        home=str(home),
        db_url=f"sqlite:///{home / 'db' / 'shuyu.sqlite'}",
        policies_dir=str(REPO / "policies"),
        **traits,
    )
    settings.ensure_zones()
    db.upgrade(settings.db_url)
    return settings


#: Seconds for the hub and its services to come up (imports alone take 30 s on a busy machine).
STARTUP_TIMEOUT = 240


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def platform_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a platform rooted at ``home`` on fresh ports."""
    port = free_port()
    env = {
        **os.environ,
        "SHUYU_HOME": str(home),
        "SHUYU_PORT": str(port),
        "SHUYU_PROXY_API_PORT": str(free_port()),
        "SHUYU_HUB_PORT": str(free_port()),
        "SHUYU_SERVICE_PORT": str(free_port()),
        "SHUYU_DASHBOARDS_PORT": str(free_port()),
        # bcrypt's cheapest cost: the suite signs in a few hundred times, 0.3 s each at
        # the default 12 (tests/core/test_accounts.py checks the default).
        "SHUYU_PASSWORD_HASH_COST": "4",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.update(extra)
    return env


def cli_env(settings: Shuyu) -> dict[str, str]:
    """Environment that points the ``shuyu`` command at ``settings``' state root."""
    return {
        **os.environ,
        "SHUYU_HOME": settings.home,
        "SHUYU_DB_URL": settings.db_url,
        "SHUYU_POLICIES_DIR": settings.policies_dir,
        "SHUYU_PRICING": settings.pricing_file,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def shuyu(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
    """Run the ``shuyu`` command; return its output, failing loudly if it fails."""
    result = subprocess.run(
        [str(BIN / "shuyu"), *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"shuyu {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class VisibleText(HTMLParser):
    """The text a person reads on a page, node by node, and the page's links.

    Not code samples (shown as code), scripts and styles, nor what the page hides until
    something happens (``hidden``, ``visually-hidden``, a modal dialog, ``display:
    none``, ``<noscript>``) or marks as a person's own words (``note-col``)."""

    SKIPPED = frozenset({"script", "style", "code", "pre", "textarea", "noscript", "title"})
    HIDING = ("hidden", "modal", "note-col")
    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                      "meta", "source", "track", "wbr"})  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[str] = []
        self._open: list[bool] = []  # per open element: does it hide its content?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))
        if tag in self.VOID:
            return
        classes = str(found.get("class") or "")
        self._open.append(
            tag in self.SKIPPED
            or any(word in classes for word in self.HIDING)
            or "display: none" in str(found.get("style") or "")
        )

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if not any(self._open) and data.strip():
            self.text.append(data.strip())


def render_hub_template(template: str, **context: Any) -> str:
    """``template`` as the hub renders it: the platform's templates first, the stock ones
    under ``templates/`` (how JupyterHub's loader is built), with the hub's variables.

    For pages a request cannot hold still (a sandbox starting, one that failed)."""
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
    from jupyterhub._data import DATA_FILES_PATH

    from shuyu_platform.core import hub_pages
    from shuyu_platform.hubconfig import TEMPLATES

    stock = Path(DATA_FILES_PATH) / "templates"
    loader = ChoiceLoader([
        PrefixLoader({"templates": FileSystemLoader([str(stock)])}, "/"),
        FileSystemLoader([str(TEMPLATES), str(stock)]),
    ])  # fmt: skip
    environment = Environment(loader=loader, autoescape=True)
    environment.globals["static_url"] = lambda path, **_: f"/hub/static/{path}"
    hub_vars = {k: v(None) if callable(v) else v for k, v in hub_pages.template_vars().items()}
    user = {"name": "alice", "json_escaped_name": "alice", "spawner": {"options_form": None}}
    return environment.get_template(template).render(
        base_url="/hub/", prefix="/", user=user, parsed_scopes=set(), services=[],
        logout_url="/hub/logout", progress_url="/hub/api/progress", **hub_vars,
        **context,
    )  # fmt: skip


@dataclass
class Platform:
    """A running platform and helpers to act on it as a person would."""

    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    sessions: list[requests.Session] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Public URL (the proxy)."""
        return f"http://127.0.0.1:{self.env['SHUYU_PORT']}"

    @property
    def dashboards_url(self) -> str:
        """Public origin of the dashboards service: its own host name and port."""
        return f"http://localhost:{self.env['SHUYU_DASHBOARDS_PORT']}"

    @property
    def db_url(self) -> str:
        """URL of the platform database."""
        return self.env.get("SHUYU_DB_URL") or f"sqlite:///{self.home / 'db' / 'shuyu.sqlite'}"

    def log(self) -> str:
        """Everything the hub and its children printed so far."""
        return self.log_path.read_text(errors="replace")

    def login(self, username: str, password: str | None = None) -> requests.Session:
        """A session logged in through the hub's login form (with its xsrf token)."""
        session = requests.Session()
        self.sessions.append(session)
        page = session.get(f"{self.url}/hub/login", timeout=30)
        page.raise_for_status()
        match = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert match, "login form has no _xsrf field"
        response = session.post(
            f"{self.url}/hub/login",
            data={
                "username": username,
                "password": password or f"{username}-demo-2026",
                "_xsrf": match.group(1),
            },
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 302, f"login of {username} failed: {response.status_code}"
        return session

    def run_code(self, username: str, code: str) -> Execution:
        """Run ``code`` in a fresh kernel of ``username``'s sandboxed server (started if
        needed) and return what it printed; the kernel is shut down afterwards."""
        session = self.login(username)
        self.start_server(session, username)
        kernel = Kernel(self.url, session, username)
        try:
            return kernel.run(code)
        finally:
            kernel.close()

    def service_session(self, username: str) -> tuple[requests.Session, dict[str, str]]:
        """A browser-like session signed in to the platform service, and its xsrf header.

        Visiting the service completes its hub OAuth and sets its ``_xsrf`` cookie; the
        header is what the service wants with cookie-authenticated writes.
        """
        session = self.login(username)
        session.get(f"{self.url}/services/shuyu/", timeout=30)
        xsrf = session.cookies.get("_xsrf", path="/services/shuyu/")
        return session, {"X-XSRFToken": xsrf} if xsrf else {}

    def service_post(
        self, username: str, path: str, body: Any, timeout: float = 120
    ) -> requests.Response:
        """POST ``body`` as JSON to the platform service's ``path`` as ``username``."""
        session, headers = self.service_session(username)
        return session.post(
            f"{self.url}/services/shuyu/{path.lstrip('/')}",
            json=body,
            headers=headers,
            timeout=timeout,
        )

    def file_dashboard(self, username: str, document: dict[str, Any], purpose: str) -> dict:
        """File ``document`` for review as a dashboard of ``username``'s; the request."""
        filed = self.service_post(
            username,
            "api/egress/requests",
            {
                "kind": "dashboard",
                "notebook": "dash.ipynb",
                "document": document,
                "purpose": purpose,
            },
        )
        assert filed.status_code == 201, filed.text
        return filed.json()

    def service_get(self, username: str, path: str, timeout: float = 60) -> requests.Response:
        """GET the platform service's ``path`` as ``username``."""
        session, _ = self.service_session(username)
        return session.get(f"{self.url}/services/shuyu/{path.lstrip('/')}", timeout=timeout)

    def hub_api(
        self, session: requests.Session, method: str, path: str, **kwargs: Any
    ) -> requests.Response:
        """Call the hub's REST API with a browser session (cookie + xsrf header)."""
        headers = kwargs.pop("headers", {})
        xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf")
        if xsrf:
            headers["X-XSRFToken"] = xsrf
        return session.request(
            method, f"{self.url}/hub/api/{path.lstrip('/')}", headers=headers, timeout=60, **kwargs
        )

    def start_server(self, session: requests.Session, username: str) -> dict[str, Any]:
        """Start ``username``'s server through the hub API and wait until it is ready.

        A server that already runs (another test started it) is simply waited for.
        """
        response = self.hub_api(session, "POST", f"users/{username}/server")
        already = response.status_code == 400 and "already running" in response.text
        assert already or response.status_code in (201, 202), response.text
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            model = self.hub_api(session, "GET", f"users/{username}").json()
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                return server
            time.sleep(0.3)
        raise AssertionError(f"server of {username} not ready:\n{self.log()[-4000:]}")

    def stop_server(self, session: requests.Session, username: str) -> None:
        """Stop ``username``'s server and wait until the hub says it is gone."""
        response = self.hub_api(session, "DELETE", f"users/{username}/server")
        assert response.status_code in (202, 204), response.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            model = self.hub_api(session, "GET", f"users/{username}").json()
            if not model.get("servers"):
                return
            time.sleep(0.3)
        raise AssertionError(f"server of {username} did not stop")

    def audit_events(self, action: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Audit records, read straight from the platform database."""
        from shuyu_platform.core import audit
        from shuyu_platform.core.db import session_scope

        with session_scope(self.db_url) as session:
            return audit.query(session, action=action, limit=100_000, **filters)

    def stop(self) -> None:
        """Stop the hub (which stops its proxy, services and servers)."""
        for session in self.sessions:
            session.close()
        stop_process_group(self.proc)
        # The hub unmounts the tenants' disks as their servers stop; one killed before
        # it could leaves them mounted, and a test run must not leave mounts behind.
        home = self.home.resolve()
        for point in sorted(mount_points(), reverse=True):
            if point.is_relative_to(home):
                subprocess.run(["umount", "--lazy", str(point)], check=False)


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM a process started in its own session, then SIGKILL what remains."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def launch_hub(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """Run ``jupyterhub -f jupyterhub_config.py`` as ``make demo`` does; log to a file.

    A second launch in the same ``home`` (a restart) appends to the same log.
    """
    (home / "hub").mkdir(parents=True, exist_ok=True)
    log_path = home / "platform.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(REPO / "jupyterhub_config.py")],
            cwd=home / "hub",
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log_path


def small_data_policies(folder: Path) -> Path:
    """The shipped policies, written into ``folder`` with risk limits that a few thousand
    demo rows can meet.

    The policies' limits on suppressed rows and average risk are tuned for the demo's
    100,000 rows; with 2,000 (100 enterprises) even the coarsest generalisation leaves
    small classes, and a build would rightly be refused. k and l are still enforced.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted((REPO / "policies").glob("*.yaml")):
        policy = yaml.safe_load(source.read_text("utf-8"))
        policy["privacy"]["risk_limits"] = {
            "max_average_risk": 1.0,
            "max_suppressed_share": 0.97,
            "level_suppressed_share": 0.05,
        }
        (folder / source.name).write_text(
            yaml.safe_dump(policy, allow_unicode=True, sort_keys=False), "utf-8"
        )
    return folder


@contextlib.contextmanager
def running_platform(home: Path, *, rows: int = 2000, **extra_env: str) -> Iterator[Platform]:
    """Demo data and accounts in ``home``, then a running platform until the block ends.

    Unless ``SHUYU_POLICIES_DIR`` is given, the platform uses :func:`small_data_policies`.
    """
    if "SHUYU_POLICIES_DIR" not in extra_env:
        extra_env["SHUYU_POLICIES_DIR"] = str(small_data_policies(home / "test-policies"))
    env = platform_env(home, **extra_env)
    demo_state(home, rows, env)
    proc, log_path = launch_hub(home, env)
    platform = Platform(home=home, env=env, proc=proc, log_path=log_path)
    try:
        wait_until_up(platform)
        yield platform
    finally:
        platform.stop()


#: Demo states made this session, by what they depend on (see :func:`demo_state`).
_DEMO_STATES: dict[tuple[int, str], Path] = {}


def demo_state(home: Path, rows: int, env: dict[str, str]) -> None:
    """Demo data, accounts and grants (masked views, synthetic twins) in ``home``.

    Made with the ``shuyu`` commands the first time the session needs a state of these
    ``rows`` and policies, then copied: the three commands took 8 to 15 s of each of the
    suite's platform starts. A copy is the same state restored into another folder
    (the same masking secret, the same accounts); only audit records of the first
    build name that build's folder. A platform on another database is made afresh.
    """
    if env.get("SHUYU_DB_URL"):
        _make_demo_state(rows, env)
        return
    policies = Path(env["SHUYU_POLICIES_DIR"])
    digest = hashlib.sha256()
    for path in sorted(p for p in policies.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(policies)}\0".encode() + path.read_bytes())
    key = (rows, digest.hexdigest())
    made = _DEMO_STATES.get(key)
    if made is None:
        _make_demo_state(rows, env)
        made = Path(tempfile.mkdtemp(prefix="shuyu-demo-state-")) / "home"
        shutil.copytree(home, made, symlinks=True)
        atexit.register(shutil.rmtree, made.parent, True)
        _DEMO_STATES[key] = made
        return
    shutil.copytree(made, home, symlinks=True, dirs_exist_ok=True)


def _make_demo_state(rows: int, env: dict[str, str]) -> None:
    shuyu("demo-data", "--rows", str(rows), env=env)
    shuyu("demo-accounts", env=env)
    shuyu("demo-grants", env=env)


def wait_until_up(platform: Platform) -> None:
    """Wait for the hub API and the platform service to answer through the proxy."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    checks = {
        f"{platform.url}/hub/api/": {200},
        f"{platform.url}/services/shuyu/api/catalogue": {401},
    }
    while checks and time.monotonic() < deadline:
        if platform.proc.poll() is not None:
            raise AssertionError(f"the hub exited early:\n{platform.log()[-6000:]}")
        for url, ok in list(checks.items()):
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, timeout=5).status_code in ok:
                    del checks[url]
        time.sleep(0.2)
    if checks:
        raise AssertionError(f"platform not up: {sorted(checks)}\n{platform.log()[-6000:]}")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a loop of its own, in a thread of its own.

    A thread, because other tests of the session (Playwright's sync API) may leave an
    event loop running in the main thread, where ``asyncio.run`` refuses to start.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def run_in_thread(function: Callable[[], T]) -> T:
    """Call ``function`` in a thread of its own: for Playwright's sync API in tests that
    run after a session-wide browser left its event loop running in the main thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()
