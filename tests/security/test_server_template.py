"""The server template, attacked: what a forked server holds, and where it runs.

Every server on the test platform is a fork of one server template, a root process
beside the hub that has imported a server (``shuyu_server.template``). A fork that
entered its sandbox badly, or memory that one start leaves behind for the next, would
hand one tenant what belongs to another. From the host (root, reading ``/proc``), the
tests check that:

- a server runs as its tenant's uid with no capability, no-new-privileges and the
  seccomp filter, inside every namespace of its own sandbox and none of the host's;
- no server's memory, nor the template's, holds another user's API token: the token
  travels from the hub to its own fork only. The control: the token *is* found in its
  owner's server, so the search would see it;
- every value a module worked out from the template's identity when imported (its
  environment, uid, home, host name) is, in the fork, what a fresh import inside the
  sandbox makes of it: compared over the state of every loaded module;
- a server killed from its own kernel takes its whole sandbox along (a process the
  kernel detached included), and the start is still cleaned up and metered; the same
  holds with the template off;
- a template that has died is replaced at the next start, and servers it forked keep
  running;
- with the template off (``SHUYU_SERVER_TEMPLATE=0``), servers start on their own, as
  before, equally confined.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from harness import Platform, running_platform
from kernel import Kernel
from shuyu_platform.isolation.sandbox import template_env
from shuyu_platform.isolation.template import pid_exited

pytestmark = pytest.mark.hub

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid_for_children", "uts")


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


#: Prints every module-level value (and class-level trait default) of plain data after
#: the template's preload; with SHUYU_TEST_REBASE, first does what a fork does: drop to
#: a uid, take a start's environment, rebase. Sets print sorted (their order follows the
#: per-process hash seed).
MODULE_STATE = """
import json, os, sys
from traitlets import TraitType
from shuyu_server import template
template.preload()
if os.environ.get("SHUYU_TEST_REBASE"):
    start = json.loads(os.environ["SHUYU_TEST_REBASE"])
    uid, rebase = start.pop("__uid"), start.pop("__rebase")
    os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)
    os.environ.clear(); os.environ.update(start)
    if rebase:
        template.rebase_on_this_start()
PLAIN = (str, bytes, int, float, bool, type(None))
def shown(value):
    if isinstance(value, PLAIN):
        return repr(value)
    if isinstance(value, (set, frozenset)) and all(isinstance(v, PLAIN) for v in value):
        return repr(sorted(map(repr, value)))
    if isinstance(value, (tuple, list)) and all(isinstance(v, PLAIN) for v in value):
        return repr(value)
    return None
state = {}
for name, module in sorted(sys.modules.items()):
    for key, value in list(getattr(module, "__dict__", {}).items()):
        if key.startswith("__"):
            continue
        if shown(value) is not None:
            state[f"{name}.{key}"] = shown(value)
        elif isinstance(value, type) and value.__module__ == name:
            for trait_name, trait in list(vars(value).items()):
                if isinstance(trait, TraitType) and shown(trait.default_value) is not None:
                    state[f"{name}.{key}.{trait_name}"] = shown(trait.default_value)
print(json.dumps(state))
"""

#: What differs between any two processes and says nothing of whose they are: the
#: interpreter's own command line, the script's globals, the address of ctypes' helpers
#: (ASLR), logging's start time, and values built by iterating over a set (tokenize's
#: patterns, nbformat's list of hash algorithms).
PER_PROCESS = (
    "sys.", "__main__.", "__mp_main__.", "ctypes._", "_ctypes._", "logging._startTime",
    "tokenize.", "nbformat.sign.algorithms",
)  # fmt: skip


def template_pid(platform: Platform) -> int:
    """The platform's server template (root, started by the hub)."""
    found = [
        pid
        for pid in descendants(platform.proc.pid)
        if "shuyu_server.template" in cmdline(pid) and status(pid)["Uid"].split()[0] == "0"
    ]
    assert len(found) == 1, found
    return found[0]


def server_pid(platform: Platform, kernel: Kernel) -> int:
    """The host pid of the server that runs ``kernel`` (its kernel's parent)."""
    inner = kernel.run("import os; print(os.getppid(), os.readlink('/proc/self/ns/mnt'))")
    assert inner.ok, inner.error
    ppid, mnt = inner.stdout.split()
    for pid in descendants(platform.proc.pid):
        with_ns = status(pid).get("NSpid", "").split()
        if len(with_ns) == 2 and with_ns[1] == ppid and os.readlink(f"/proc/{pid}/ns/mnt") == mnt:
            return pid
    raise AssertionError("the kernel's server is not among the hub's processes")


def memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any writable page of ``pid`` holds ``needle`` (read as root)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("rw"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except OSError:
                continue
    return False


MARKER = "shuyu-left-behind"


def living_with(marker: str) -> list[int]:
    """Host pids of live (not zombie) processes whose command line holds ``marker``."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in command and state != "Z":
            found.append(int(entry))
    return found


def cgroups_of(platform: Platform, name: str) -> list[Path]:
    """The cgroup folder(s) of ``name``'s server on this platform (v2 or v1)."""
    installation = hashlib.sha256(str(platform.home.resolve()).encode()).hexdigest()[:8]
    return [
        group
        for root in (
            "/sys/fs/cgroup/shuyu",
            "/sys/fs/cgroup/memory/shuyu",
            "/sys/fs/cgroup/pids/shuyu",
        )
        if (group := Path("/sys/fs/cgroup") / root / f"{installation}-{name}").exists()
    ]


def assert_killing_the_server_ends_the_sandbox(platform: Platform, name: str) -> None:
    """``name``'s kernel detaches a process and kills its server: nothing may stay."""
    session = platform.login(name)
    if platform.hub_api(session, "GET", f"users/{name}").json().get("servers"):
        platform.stop_server(session, name)
    platform.start_server(session, name)
    metered = len(platform.audit_events("sandbox.usage", actor=name))
    kernel = Kernel(platform.url, session, name)
    try:
        done = kernel.run(
            "import os, signal, subprocess, sys, threading\n"
            "subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(1)',"
            f" '{MARKER}'], start_new_session=True, stdin=subprocess.DEVNULL,"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "threading.Timer(1.0, os.kill, (os.getppid(), signal.SIGKILL)).start()\n"
            "print('ok')"
        )
        assert done.ok, done.error
        assert living_with(MARKER)  # the control: it was running
    finally:
        with contextlib.suppress(Exception):
            kernel.close()
    deadline = time.monotonic() + 20
    while living_with(MARKER) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not living_with(MARKER), "a process of the tenant outlived its server"
    # The hub learns of it from many pages at once (each polls the server) and from a
    # stop asked for: one cleanup, metered once.
    with ThreadPoolExecutor(12) as pool:
        pages = list(pool.map(lambda _: session.get(f"{platform.url}/hub/home"), range(12)))
    assert all(page.status_code == 200 for page in pages)
    response = platform.hub_api(session, "DELETE", f"users/{name}/server")
    assert response.status_code in (202, 204, 400), response.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        cgroups_of(platform, name)
        or len(platform.audit_events("sandbox.usage", actor=name)) == metered
    ):
        time.sleep(0.3)
    assert not cgroups_of(platform, name), "the server's cgroup was left behind"
    time.sleep(1)  # a second cleanup, were there one, would have recorded by now
    assert len(platform.audit_events("sandbox.usage", actor=name)) == metered + 1


def api_token(kernel: Kernel) -> bytes:
    token = kernel.run("import os; print(os.environ['JUPYTERHUB_API_TOKEN'])")
    assert token.ok, token.error
    value = token.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32,}", value), value
    return value.encode()


@pytest.fixture(scope="module")
def kernels(platform: Platform) -> Iterator[dict[str, tuple[requests.Session, Kernel]]]:
    """alice (tenant kangning) and bob (tenant huaxin), each with a running kernel."""
    opened = {}
    for name in ("alice", "bob"):
        session = platform.login(name)
        platform.start_server(session, name)
        opened[name] = (session, Kernel(platform.url, session, name))
    yield opened
    for _, kernel in opened.values():
        kernel.close()


def assert_confined(server: int) -> None:
    """``server`` runs as a tenant uid with no capability, no-new-privs and seccomp."""
    fields = status(server)
    uid = fields["Uid"].split()[0]
    assert uid != "0" and fields["Uid"].split() == [uid] * 4 == fields["Gid"].split()
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[caps], 16) == 0, caps
    assert (fields["NoNewPrivs"], fields["Seccomp"], fields["Groups"]) == ("1", "2", "")
    # As a new interpreter has it: a write to a closed socket is an error, not its death.
    ignored = int(fields["SigIgn"], 16)
    assert all(ignored & 1 << (sig - 1) for sig in (signal.SIGPIPE, signal.SIGXFSZ))


def test_a_forked_server_is_confined_in_its_own_sandbox(
    platform: Platform, kernels: dict[str, tuple[requests.Session, Kernel]]
) -> None:
    template = template_pid(platform)
    server = server_pid(platform, kernels["alice"][1])
    assert status(server)["PPid"] == str(template)  # a fork of the template, reaped by it
    assert_confined(server)
    # The sandbox's first process (bubblewrap's, pid 1 inside) sets the namespaces.
    first = next(
        pid
        for pid in descendants(platform.proc.pid)
        if status(pid).get("NSpid", "").split()[1:] == ["1"]
        and os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink(f"/proc/{server}/ns/mnt")
    )
    for name in NAMESPACES:
        ours = os.readlink(f"/proc/{server}/ns/{name}")
        assert ours == os.readlink(f"/proc/{first}/ns/{name}"), name
        assert ours != os.readlink(f"/proc/{template}/ns/{name}"), name
    # and the other tenant's server is in none of them
    other = server_pid(platform, kernels["bob"][1])
    for name in NAMESPACES:
        assert os.readlink(f"/proc/{other}/ns/{name}") != os.readlink(f"/proc/{server}/ns/{name}")


def test_no_server_and_not_the_template_holds_another_users_token(
    platform: Platform, kernels: dict[str, tuple[requests.Session, Kernel]]
) -> None:
    alice, bob = (api_token(kernels[name][1]) for name in ("alice", "bob"))
    alice_server = server_pid(platform, kernels["alice"][1])
    bob_server = server_pid(platform, kernels["bob"][1])
    assert memory_holds(alice_server, alice)  # the control: the search finds a token
    assert memory_holds(bob_server, bob)
    assert not memory_holds(bob_server, alice)
    assert not memory_holds(alice_server, bob)
    template = template_pid(platform)
    assert not memory_holds(template, alice)
    assert not memory_holds(template, bob)


def test_a_fork_works_out_what_a_fresh_start_in_the_sandbox_would(
    kernels: dict[str, tuple[requests.Session, Kernel]],
) -> None:
    fresh = kernels["alice"][1].run(
        "import json, os, subprocess, sys\n"
        f"done = subprocess.run([sys.executable, '-I', '-c', {MODULE_STATE!r}], cwd='/',"
        " capture_output=True, text=True, timeout=240)\n"
        "print(json.dumps([done.stdout, done.stderr[-3000:], dict(os.environ), os.getuid()]))",
        timeout=300,
    )
    assert fresh.ok, fresh.error
    inside, errors, start, uid = json.loads(fresh.stdout)
    assert inside, errors
    inside_state = json.loads(inside)
    assert len(inside_state) > 5000  # the whole server's modules, not an import error

    def forked(rebase: bool) -> dict[str, tuple[str | None, str | None]]:
        """What differs from the fresh import in a fork, with or without the rebase."""
        done = subprocess.run(
            [sys.executable, "-I", "-c", MODULE_STATE],
            env={
                **template_env(),
                "SHUYU_TEST_REBASE": json.dumps({**start, "__uid": uid, "__rebase": rebase}),
            },
            cwd="/",
            capture_output=True,
            text=True,
            timeout=240,
            check=True,
        )
        state = json.loads(done.stdout)
        return {
            key: (inside_state.get(key), state.get(key))
            for key in set(inside_state) | set(state)
            if not key.startswith(PER_PROCESS) and inside_state.get(key) != state.get(key)
        }

    differ = forked(rebase=True)
    # The host's name, forgotten: the fork works it out again, in the sandbox's own UTS
    # namespace (which this process, on the host, is not in).
    assert differ.pop("platform._uname_cache", (None, "None"))[1] == "None"
    assert differ == {}
    # The control: without the rebase, the template's own values show.
    assert forked(rebase=False)["jupyter_client.session.Session.username"] == (
        repr("alice"),
        repr("username"),
    )


def test_a_server_killed_from_its_kernel_takes_its_sandbox_along(platform: Platform) -> None:
    assert_killing_the_server_ends_the_sandbox(platform, "carol")


def test_a_dead_template_is_replaced_and_its_servers_keep_running(
    platform: Platform, kernels: dict[str, tuple[requests.Session, Kernel]]
) -> None:
    old = template_pid(platform)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{old}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    # bob's server, a fork of the dead template, still answers
    still = kernels["bob"][1].run("print(6 * 7)")
    assert still.ok and still.stdout.strip() == "42", still
    # a new start forks from a new template (carol's server may run from another test)
    session = platform.login("carol")
    if platform.hub_api(session, "GET", "users/carol").json().get("servers"):
        platform.stop_server(session, "carol")
    platform.start_server(session, "carol")
    kernel = Kernel(platform.url, session, "carol")
    try:
        new = template_pid(platform)
        assert new != old
        assert status(server_pid(platform, kernel))["PPid"] == str(new)
    finally:
        kernel.close()


def test_with_the_template_off_servers_start_on_their_own(tmp_path: Path) -> None:
    with running_platform(tmp_path, rows=500, SHUYU_SERVER_TEMPLATE="0") as platform:
        session = platform.login("alice")
        platform.start_server(session, "alice")
        kernel = Kernel(platform.url, session, "alice")
        try:
            server = server_pid(platform, kernel)
            assert "-m shuyu_server.singleuser" in cmdline(server)
            assert_confined(server)
            assert not any(
                "shuyu_server.template" in cmdline(pid) for pid in descendants(platform.proc.pid)
            )
        finally:
            kernel.close()
        assert_killing_the_server_ends_the_sandbox(platform, "alice")


def test_a_server_is_watched_whatever_its_descriptors_number() -> None:
    """A hub holds thousands of descriptors (a tenant can open many through its relays);
    a server's pidfd numbered past 1024 is still watched, and no poll raises."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2100, hard), hard))
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    pidfd = os.pidfd_open(child.pid)
    high = os.dup2(pidfd, 2000)
    try:
        assert not pid_exited(high)
        child.stdin.close()
        child.wait(30)
        assert pid_exited(high)
    finally:
        os.close(high)
        os.close(pidfd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_fork_gets_its_own_multiprocessing_key_and_its_starts_hub_ssl_files() -> None:
    """Values no module-level comparison sees: multiprocessing's secret key (made once per
    interpreter, so every fork had the template's) and the hub's SSL files, which
    ``HubAuth`` reads from the environment when the class is defined."""
    script = (
        "import json, multiprocessing, os\n"
        "from shuyu_server import template\n"
        "template.preload()\n"
        "from jupyterhub.services.auth import HubAuth\n"
        "before = multiprocessing.current_process().authkey\n"
        "os.environ['JUPYTERHUB_SSL_KEYFILE'] = '/etc/shuyu/ssl/server.key'\n"
        "os.environ['JUPYTERHUB_API_URL'] = 'http://127.0.0.1:9/hub/api'\n"
        "template.rebase_on_this_start()\n"
        "auth = HubAuth()\n"
        "print(json.dumps([before != multiprocessing.current_process().authkey,"
        " auth.keyfile, auth.api_url]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script],
        env=template_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    new_key, keyfile, api_url = json.loads(done.stdout.strip().splitlines()[-1])
    assert new_key
    assert keyfile == "/etc/shuyu/ssl/server.key"
    assert api_url == "http://127.0.0.1:9/hub/api"
