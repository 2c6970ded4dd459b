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
- a template that has died is replaced at the next start, and servers it forked keep
  running;
- with the template off (``SHUYU_SERVER_TEMPLATE=0``), servers start on their own, as
  before, equally confined.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness import Platform, running_platform
from kernel import Kernel

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
    # a new start forks from a new template
    session = platform.login("carol")
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
