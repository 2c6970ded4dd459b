"""The sandbox's seccomp filter: a small classic-BPF program, generated here.

bubblewrap loads a compiled filter from a file descriptor (``--seccomp FD``) just before
it runs the sandboxed command, so everything in the sandbox, the server and every
kernel it starts, runs under it, and nothing in there can remove it (filters only ever
add up, and the sandbox has no-new-privileges).

What it refuses, with Docker's default profile as the reference (that profile allows a
list of system calls and refuses the rest; this one allows everything a Python data
stack needs and refuses the calls that widen what a process can reach):

- new namespaces and joining others: ``unshare``, ``setns``, ``clone`` with any
  ``CLONE_NEW*`` flag, ``clone3`` (its flags sit in memory a filter cannot read, so it
  answers ENOSYS as in Docker's profile, and the C library falls back to ``clone``);
- mounting: ``mount``, ``umount2``, ``pivot_root``, ``chroot`` and the new mount API;
- the kernel keyring (``keyctl``, ``add_key``, ``request_key``), ``bpf``,
  ``perf_event_open``, ``userfaultfd`` and ``io_uring`` (whose operations bypass
  seccomp altogether);
- reaching into another process: ``ptrace``, ``process_vm_readv``/``writev``,
  ``pidfd_getfd``, ``kcmp``;
- what needs a capability the sandbox never has anyway (modules, kexec, reboot, swap,
  quotas, raw I/O ports, file handles): refused here too, as a second wall.

A refused call fails with EPERM (ENOSYS for ``clone3``). A system call of another ABI
(32-bit or x32 calls on x86-64) kills the process: their numbers differ, and a filter
that only knows the native numbers must not let them through.

The program's layout (``ld`` loads a field of ``struct seccomp_data``)::

    ld arch;  jeq NATIVE ? next : kill
    ld nr;    [x86-64: jge X32_BIT ? kill : next]
    jeq clone3 ? ENOSYS : next
    jeq unshare ? EPERM : next            # one pair per refused call
    ...
    jeq clone ? next : allow
    ld args[0] (low word);  jset CLONE_NEW* ? EPERM : allow
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# Classic BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h).
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

# Offsets in struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6] (little-endian).
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16

#: Every ``CLONE_NEW*`` flag ``clone`` takes (linux/sched.h): mount, cgroup, UTS, IPC,
#: user, PID, network. (``CLONE_NEWTIME`` only exists for ``unshare``/``clone3``.)
CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
CLONE_NEW_FLAGS |= 0x20000000 | 0x40000000

#: x32 system calls on x86-64 carry this bit in their number.
X32_SYSCALL_BIT = 0x40000000

#: Refused system calls, by name.
REFUSED = (
    # namespaces
    "unshare", "setns",
    # mounting
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    # keyring, BPF, perf, userfaultfd, io_uring
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    # capability-only calls, refused twice
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "lookup_dcookie",
    "name_to_handle_at", "open_by_handle_at", "iopl", "ioperm",
)  # fmt: skip


class Arch:
    """One machine architecture: its audit number and its system call numbers."""

    def __init__(self, audit: int, numbers: dict[str, int], *, x32: bool = False) -> None:
        self.audit = audit
        self.numbers = numbers
        self.x32 = x32


#: System call numbers from the kernel's ``asm/unistd_64.h`` (x86-64) and
#: ``asm-generic/unistd.h`` (arm64); ``tests/isolation/test_seccomp.py`` checks them
#: against the headers when they are installed.
ARCHES: dict[str, Arch] = {
    "x86_64": Arch(
        0xC000003E,
        {
            "clone": 56,
            "clone3": 435,
            "unshare": 272,
            "setns": 308,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "chroot": 161,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "mount_setattr": 442,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "bpf": 321,
            "perf_event_open": 298,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "pidfd_getfd": 438,
            "kcmp": 312,
            "init_module": 175,
            "finit_module": 313,
            "delete_module": 176,
            "kexec_load": 246,
            "kexec_file_load": 320,
            "reboot": 169,
            "swapon": 167,
            "swapoff": 168,
            "acct": 163,
            "quotactl": 179,
            "lookup_dcookie": 212,
            "name_to_handle_at": 303,
            "open_by_handle_at": 304,
            "iopl": 172,
            "ioperm": 173,
        },
        x32=True,
    ),
    "aarch64": Arch(
        0xC00000B7,
        {
            "clone": 220,
            "clone3": 435,
            "unshare": 97,
            "setns": 268,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "chroot": 51,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "mount_setattr": 442,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "bpf": 280,
            "perf_event_open": 241,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "pidfd_getfd": 438,
            "kcmp": 272,
            "init_module": 105,
            "finit_module": 273,
            "delete_module": 106,
            "kexec_load": 104,
            "kexec_file_load": 294,
            "reboot": 142,
            "swapon": 224,
            "swapoff": 225,
            "acct": 89,
            "quotactl": 60,
            "lookup_dcookie": 18,
            "name_to_handle_at": 264,
            "open_by_handle_at": 265,
        },
    ),
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    """One ``struct sock_filter``: u16 code, u8 jt, u8 jf, u32 k."""
    return struct.pack("<HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The filter for ``machine`` (default: this one) as bubblewrap reads it.

    Raises ValueError for an architecture this module has no numbers for.
    """
    machine = machine or platform.machine()
    arch = ARCHES.get(machine)
    if arch is None:
        raise ValueError(f"no seccomp filter for {machine}; known: {', '.join(ARCHES)}")
    eperm = RET_ERRNO | errno.EPERM
    code = [
        _insn(BPF_LD_W_ABS, OFFSET_ARCH),
        _insn(BPF_JEQ_K, arch.audit, jt=1),
        _insn(BPF_RET_K, RET_KILL_PROCESS),
        _insn(BPF_LD_W_ABS, OFFSET_NR),
    ]
    if arch.x32:
        code += [_insn(BPF_JGE_K, X32_SYSCALL_BIT, jf=1), _insn(BPF_RET_K, RET_KILL_PROCESS)]
    code += [
        _insn(BPF_JEQ_K, arch.numbers["clone3"], jf=1),
        _insn(BPF_RET_K, RET_ERRNO | errno.ENOSYS),
    ]
    for name in REFUSED:
        if name in arch.numbers:
            code += [_insn(BPF_JEQ_K, arch.numbers[name], jf=1), _insn(BPF_RET_K, eperm)]
    code += [
        _insn(BPF_JEQ_K, arch.numbers["clone"], jf=3),
        _insn(BPF_LD_W_ABS, OFFSET_ARG0_LOW),
        _insn(BPF_JSET_K, CLONE_NEW_FLAGS, jf=1),
        _insn(BPF_RET_K, eperm),
        _insn(BPF_RET_K, RET_ALLOW),
    ]
    return b"".join(code)


def filter_fd(machine: str | None = None) -> int:
    """A file descriptor holding :func:`program`, at offset 0, for ``bwrap --seccomp``.

    The caller passes it to the child (``pass_fds``) and closes it afterwards.
    """
    fd = os.memfd_create("shuyu-seccomp", 0)
    os.write(fd, program(machine))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
