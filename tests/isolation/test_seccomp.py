"""The sandbox's seccomp filter, loaded by the real bubblewrap, from a process inside.

Each call is made by an unprivileged uid (as in a tenant's sandbox) and, where that uid
alone would not be refused, also by root inside bubblewrap: root's refusals can only
come from the filter, so they prove it is there.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from shuyu_platform.isolation import seccomp

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.getuid() != 0 or platform.machine() not in seccomp.ARCHES,
    reason="needs bubblewrap, root and a known architecture",
)

PROBE = textwrap.dedent(
    """
    import ctypes, errno, json, os, subprocess, threading
    libc = ctypes.CDLL(None, use_errno=True)
    nr = {nr}
    def call(f):
        ctypes.set_errno(0)
        result = f()
        return errno.errorcode.get(ctypes.get_errno(), 'ok') if result == -1 else 'ok'
    def clone_newuser():
        pid = libc.syscall(nr['clone'], 0x10000000 | 17, 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)
        if pid > 0:
            os.waitpid(pid, 0)
        return pid
    out = {{
        'unshare(CLONE_NEWUSER)': call(lambda: libc.unshare(0x10000000)),
        'unshare(CLONE_NEWNS)': call(lambda: libc.unshare(0x00020000)),
        'clone(CLONE_NEWUSER)': call(clone_newuser),
        'clone3': call(lambda: libc.syscall(nr['clone3'], 0, 0)),
        'setns': call(lambda: libc.setns(os.open('/proc/self/ns/net', os.O_RDONLY), 0)),
        'mount': call(lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)),
        'keyctl': call(lambda: libc.syscall(nr['keyctl'], 0, -3, 0, 0, 0)),
        'add_key': call(lambda: libc.syscall(nr['add_key'], b'user', b'k', b'v', 1, -3)),
        'bpf': call(lambda: libc.syscall(nr['bpf'], 0, 0, 0)),
        'perf_event_open': call(lambda: libc.syscall(nr['perf_event_open'], 0, 0, -1, -1, 0)),
        'ptrace(PTRACE_ATTACH, 1)': call(lambda: libc.ptrace(16, 1, 0, 0)),
        'process_vm_readv': call(lambda: libc.syscall(nr['process_vm_readv'], 1, 0, 0, 0, 0, 0)),
        'io_uring_setup': call(lambda: libc.syscall(nr['io_uring_setup'], 1, 0)),
    }}
    thread = threading.Thread(target=lambda: out.setdefault('thread', 'ok'))
    thread.start(); thread.join()
    def run(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True)
    out['fork+exec'] = run('/bin/echo', 'ok').stdout.strip()
    out['unshare -U'] = run('unshare', '-U', 'true').stderr.strip()
    print(json.dumps(out))
    """
)


def bwrap() -> list[str]:
    """A small bubblewrap sandbox with the host's system folders, read-only."""
    args = [
        "bwrap", "--die-with-parent", "--unshare-pid", "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
    ]  # fmt: skip
    for top in ("bin", "lib", "lib64", "sbin"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def probe(*, uid: int | None) -> dict[str, str]:
    """Run the probe in bubblewrap under the filter, as root or as ``uid``."""
    code = PROBE.format(nr=seccomp.ARCHES[platform.machine()].numbers)
    drop = [] if uid is None else [
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]  # fmt: skip
    fd = seccomp.filter_fd()
    try:
        result = subprocess.run(
            [*bwrap(), "--seccomp", str(fd), "--", *drop, "/usr/bin/python3", "-c", code],
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


REFUSED = {
    "unshare(CLONE_NEWUSER)": "EPERM",
    "unshare(CLONE_NEWNS)": "EPERM",
    "clone(CLONE_NEWUSER)": "EPERM",
    "clone3": "ENOSYS",
    "setns": "EPERM",
    "mount": "EPERM",
    "keyctl": "EPERM",
    "add_key": "EPERM",
    "bpf": "EPERM",
    "perf_event_open": "EPERM",
    "ptrace(PTRACE_ATTACH, 1)": "EPERM",
    "process_vm_readv": "EPERM",
    "io_uring_setup": "EPERM",
}


@pytest.mark.parametrize("uid", [None, 40999], ids=["root-inside", "tenant-uid"])
def test_filter_refuses_namespaces_mounts_keyring_bpf_perf_ptrace(uid: int | None) -> None:
    out = probe(uid=uid)
    assert {name: out[name] for name in REFUSED} == REFUSED
    assert out["thread"] == "ok" and out["fork+exec"] == "ok"
    assert "Operation not permitted" in out["unshare -U"]


def test_without_the_filter_root_could_do_what_it_refuses() -> None:
    """The control: the same probe as root in the same bubblewrap, no filter."""
    code = "import ctypes; print(ctypes.CDLL(None).unshare(0x10000000))"
    result = subprocess.run(
        [*bwrap(), "--", "/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "0", result.stderr


def test_other_abis_are_killed_not_let_through() -> None:
    code = seccomp.program("x86_64")

    # ld arch; jeq x86-64 else kill; ld nr; jge x32-bit then kill.
    def k(index: int) -> int:
        return int.from_bytes(code[8 * index + 4 : 8 * index + 8], "little")

    assert (k(1), k(2)) == (seccomp.ARCHES["x86_64"].audit, seccomp.RET_KILL_PROCESS)
    assert (k(4), k(5)) == (seccomp.X32_SYSCALL_BIT, seccomp.RET_KILL_PROCESS)
    with pytest.raises(ValueError, match="no seccomp filter for sparc"):
        seccomp.program("sparc")


@pytest.mark.parametrize(
    ("machine", "header"),
    [
        ("x86_64", Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")),
        ("aarch64", Path("/usr/include/asm-generic/unistd.h")),
    ],
)
def test_system_call_numbers_match_the_kernel_headers(machine: str, header: Path) -> None:
    if not header.exists():
        pytest.skip(f"{header} is not installed")
    defined = dict(re.findall(r"#define __NR_(\w+)\s+(\d+)\b", header.read_text()))
    numbers = seccomp.ARCHES[machine].numbers
    assert {name: int(defined[name]) for name in numbers} == numbers
