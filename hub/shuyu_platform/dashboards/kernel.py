"""Start a published dashboard's kernel inside a bubblewrap sandbox (the dashboard kernelspec).

Voila starts a dashboard's kernel in the dashboard's published folder with this
command (``python -m shuyu_platform.dashboards.kernel -f <connection file>``). It
refuses any folder outside the published zone, then replaces itself with bubblewrap
running ipykernel:

- no network (its own, empty, network namespace), its own PID, IPC and UTS namespaces;
- the software read-only (``/usr``, the Python install and the virtualenv); the
  dashboard's folder read-only at ``/dashboard`` (the working folder); a private
  ``/tmp``; the kernel's socket folder and a copy of its connection file; nothing else
  of the host: no ``raw/``, ``views/``, ``work/``, ``released/`` or other dashboards;
- uid and gid ``nobody``, no capabilities, ``no_new_privs``, a clean environment (not
  the service's hub token);
- the sandboxes' seccomp filter (:mod:`shuyu_platform.isolation.seccomp`: no new
  namespaces, mounts, keyring, bpf, perf or ptrace), and Python in isolated mode, so
  nothing in the dashboard's folder is imported in place of a module.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

from ..core.settings import MATPLOTLIBRC
from ..isolation import seccomp
from ..isolation.bwrap import mounts, system_dirs

#: Where the dashboard's folder appears inside the sandbox.
INSIDE = "/dashboard"
#: Where the platform's matplotlibrc appears inside the sandbox.
RCFILE = "/etc/matplotlibrc"
#: The uid and gid the kernel runs as.
NOBODY = 65534


def _published_root() -> Path:
    home = os.environ.get("SHUYU_HOME")
    if not home:
        sys.exit("shuyu dashboard kernel: SHUYU_HOME is not set")
    return (Path(home) / "published").resolve()


def command(
    connection_file: Path, folder: Path, ipc: Path, seccomp_fd: int | None = None
) -> list[str]:
    """The bubblewrap command line that runs ipykernel for one dashboard.

    ``seccomp_fd`` is an open descriptor of :func:`.seccomp.filter_fd`, which bubblewrap
    loads just before it runs the kernel.
    """
    bwrap = shutil.which("bwrap")
    setpriv = shutil.which("setpriv")
    if not bwrap or not setpriv:
        sys.exit("shuyu dashboard kernel: bubblewrap (bwrap) and setpriv are required")
    args = [
        bwrap, "--die-with-parent", "--new-session",
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--hostname", "shuyu-dashboard",
        "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--tmpfs", "/tmp",
        "--ro-bind", "/usr", "/usr",
        "--clearenv",
        "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin",
        "--setenv", "LANG", "C.UTF-8",
        "--setenv", "MPLCONFIGDIR", "/tmp",
    ]  # fmt: skip
    args += system_dirs()
    # Chinese labels in charts: the platform's matplotlib defaults (CJK font first).
    args += ["--setenv", "MATPLOTLIBRC", RCFILE]
    software = sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()})
    binds = [("--ro-bind", path, path) for path in software] + [
        ("--ro-bind", folder, Path(INSIDE)),
        ("--bind", ipc, ipc),
        ("--ro-bind", MATPLOTLIBRC, Path(RCFILE)),
    ]
    args += mounts(binds, {Path("/"), Path("/usr"), Path("/tmp")})
    args += ["--ro-bind", str(connection_file), "/tmp/kernel.json", "--chdir", INSIDE]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    python = str(Path(sys.prefix) / "bin" / "python")
    return [
        *args,
        setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        python, "-I", "-m", "ipykernel_launcher", "-f", "/tmp/kernel.json",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Check where the kernel would run, copy its connection file, exec bubblewrap."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", dest="connection_file", required=True)
    args = parser.parse_args(argv)
    folder = Path.cwd().resolve()
    root = _published_root()
    if folder.parent != root:
        sys.exit(f"shuyu dashboard kernel: {folder} is not a published dashboard's folder")
    info = json.loads(Path(args.connection_file).read_text())
    if info.get("transport") != "ipc":
        sys.exit("shuyu dashboard kernel: only the ipc transport reaches a sandbox")
    ipc = Path(info["ip"]).parent
    # The connection file holds the kernel's HMAC key; the kernel (uid nobody) reads a
    # copy made for it alone, beside its sockets.
    copy = ipc / f"kernel-{uuid.uuid4().hex}.json"
    copy.write_text(json.dumps(info))
    os.chown(copy, NOBODY, NOBODY)
    os.chmod(copy, 0o400)
    # Not close-on-exec: bubblewrap inherits it across execv and reads the filter.
    cmd = command(copy, folder, ipc, seccomp.filter_fd())
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
