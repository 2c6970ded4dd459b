"""A tenant trying to loosen its own sandbox, from a real kernel on a real hub.

carol (tenant kangning) runs code in her kernel: she reaches for the hub's log through
``/proc``, creates namespaces, mounts, uses the keyring, attaches to her own server,
rewrites its configuration, shadows its modules and restarts it, forges her address
through the hub relay, floods the audit chain with reports, and fills her disk. Each
attempt is refused by something outside her reach (the seccomp filter, a root-owned
folder, the hub-side relay, the platform service, the filesystem image's size), and the
control beside each shows the thing she reached for is really there.
"""

from __future__ import annotations

import json
import os
import re
import stat
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from harness import Platform
from kernel import Execution, Kernel

pytestmark = pytest.mark.hub

NAME = "carol"


@dataclass
class Tenant:
    """carol's logged-in session and a kernel on her running server."""

    session: requests.Session
    kernel: Kernel

    def run(self, code: str, timeout: float = 120) -> Execution:
        """Run ``code``; fail the test with the kernel's error if it raised."""
        execution = self.kernel.run(textwrap.dedent(code), timeout=timeout)
        assert execution.ok, execution.error
        return execution


@pytest.fixture(scope="module")
def carol(platform: Platform) -> Iterator[Tenant]:
    session = platform.login(NAME)
    platform.start_server(session, NAME)
    tenant = Tenant(session, Kernel(platform.url, session, NAME))
    yield tenant
    tenant.kernel.close()


def restart(platform: Platform, tenant: Tenant) -> None:
    """Stop carol's server and start a fresh one, with a new kernel."""
    tenant.kernel.close()
    platform.stop_server(tenant.session, NAME)
    platform.start_server(tenant.session, NAME)
    tenant.kernel = Kernel(platform.url, tenant.session, NAME)


def test_the_hub_log_and_the_server_log_are_out_of_reach(carol: Tenant, platform: Platform) -> None:
    # A failed login puts a marker in the hub's own log (the control: it is there).
    marker = f"nosuchuser{int(time.time())}"
    with requests.Session() as browser:
        page = browser.get(f"{platform.url}/hub/login", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, "no login form"
        browser.post(
            f"{platform.url}/hub/login",
            data={"username": marker, "password": "x", "_xsrf": xsrf.group(1)},
            timeout=30,
        )
    deadline = time.monotonic() + 10
    while marker not in platform.log():
        assert time.monotonic() < deadline, "the hub did not log the failed login"
        time.sleep(0.2)
    probe = carol.run(
        f"""
        import errno, json, os, stat, sys
        result = {{'found': [], 'opened': {{}}}}
        for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
            for fd in ('0', '1', '2'):
                path = f'/proc/{{pid}}/fd/{{fd}}'
                try:
                    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                except OSError as exc:
                    result['opened'][path] = errno.errorcode[exc.errno]
                    continue
                result['opened'][path] = 'opened'
                try:
                    if {marker!r}.encode() in os.read(handle, 1 << 20):
                        result['found'].append(path)
                except OSError:
                    pass
                os.close(handle)
        # The sandbox's own stdout (ipykernel keeps a copy of the fd it captures).
        out = getattr(sys.stdout, '_original_stdstream_copy', None) or 1
        result['targets'] = []
        for fd in os.listdir('/proc/self/fd'):
            try:
                result['targets'].append(os.readlink(f'/proc/self/fd/{{fd}}'))
            except OSError:  # the listing's own descriptor, closed by now
                pass
        result['stdout_is_pipe'] = stat.S_ISFIFO(os.fstat(out).st_mode)
        try:
            os.ftruncate(out, 0)
            result['truncate'] = 'truncated'
        except OSError as exc:
            result['truncate'] = errno.errorcode[exc.errno]
        os.write(out, b'carol-stdout-{marker}\\n')
        print(json.dumps(result))
        """
    )
    result = json.loads(probe.stdout.splitlines()[-1])
    assert result["found"] == []
    assert result["opened"]["/proc/2/fd/1"] == "EACCES"  # the sandbox's first process
    assert result["stdout_is_pipe"] and result["truncate"] == "EINVAL"
    assert not [t for t in result["targets"] if "log" in t], result["targets"]
    # What the sandbox prints lands in its own log, root's, not in the hub's.
    log = platform.home / "logs" / f"{NAME}.log"
    deadline = time.monotonic() + 10
    while f"carol-stdout-{marker}" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the sandbox's output is not in its log"
        time.sleep(0.2)
    info = log.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
    assert "Jupyter Server" in log.read_text(errors="replace")  # the server's own lines
    assert f"carol-stdout-{marker}" not in platform.log()


def test_no_new_namespaces(carol: Tenant) -> None:
    attempt = carol.run(
        """
        import ctypes, errno, os, subprocess
        libc = ctypes.CDLL(None, use_errno=True)
        def call(f):
            ctypes.set_errno(0)
            return errno.errorcode.get(ctypes.get_errno(), 'ok') if f() == -1 else 'ok'
        def clone(flags):
            pid = libc.syscall(56, flags | 17, 0, 0, 0, 0)
            if pid == 0:
                os._exit(0)
            return pid
        print(call(lambda: libc.unshare(0x10000000)), call(lambda: clone(0x10000000)),
              call(lambda: libc.unshare(0x40000000)), call(lambda: clone(0x20000000)),
              call(lambda: libc.setns(os.open('/proc/self/ns/mnt', os.O_RDONLY), 0)))
        print(subprocess.run(['unshare', '-U', '-r', 'id'], capture_output=True,
                             text=True).stderr.strip())
        """
    )
    lines = attempt.stdout.splitlines()
    assert lines[0] == "EPERM EPERM EPERM EPERM EPERM", attempt
    assert "Operation not permitted" in lines[1], attempt


def test_no_mount_keyring_bpf_or_perf(carol: Tenant) -> None:
    attempt = carol.run(
        """
        import ctypes, errno
        libc = ctypes.CDLL(None, use_errno=True)
        def call(f):
            ctypes.set_errno(0)
            return errno.errorcode.get(ctypes.get_errno(), 'ok') if f() == -1 else 'ok'
        print(call(lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)),
              call(lambda: libc.syscall(250, 0, -3, 0, 0, 0)),      # keyctl
              call(lambda: libc.syscall(248, b'user', b'k', b'v', 1, -3)),  # add_key
              call(lambda: libc.syscall(321, 0, 0, 0)),             # bpf
              call(lambda: libc.syscall(298, 0, 0, -1, -1, 0)))     # perf_event_open
        """
    )
    assert attempt.stdout.split() == ["EPERM"] * 5, attempt


def test_the_kernel_cannot_reach_into_its_server(carol: Tenant) -> None:
    attempt = carol.run(
        """
        import ctypes, errno, os
        libc = ctypes.CDLL(None, use_errno=True)
        server = os.getppid()  # the kernel's parent: its server
        assert b'shuyu_server' in open(f'/proc/{server}/cmdline', 'rb').read()
        ctypes.set_errno(0)
        libc.ptrace(16, int(server), 0, 0)  # PTRACE_ATTACH
        print(errno.errorcode[ctypes.get_errno()])
        for name in ('mem', 'environ', 'fd'):
            try:
                if name == 'fd':
                    os.listdir(f'/proc/{server}/fd')
                else:
                    open(f'/proc/{server}/{name}', 'rb').read(1)
                print('OPEN')
            except OSError as exc:
                print(errno.errorcode[exc.errno])
        # Not dumpable: the per-process files are root's (the folder keeps the euid).
        print(os.stat(f'/proc/{server}/environ').st_uid == os.getuid())
        """
    )
    assert attempt.stdout.split() == ["EPERM", "EACCES", "EACCES", "EACCES", "False"], attempt


def test_the_socket_folder_is_not_the_tenants(carol: Tenant) -> None:
    attempt = carol.run(
        """
        import errno, os, socket
        print(sorted(os.listdir('/run/shuyu')))
        for step in ('rename', 'unlink', 'bind'):
            try:
                if step == 'rename':
                    os.rename('/run/shuyu/server.sock', '/run/shuyu/old.sock')
                elif step == 'unlink':
                    os.unlink('/run/shuyu/server.sock')
                else:
                    socket.socket(socket.AF_UNIX).bind('/run/shuyu/server2.sock')
                print('DONE')
            except OSError as exc:
                print(errno.errorcode[exc.errno])
        """
    )
    lines = attempt.stdout.splitlines()
    assert lines[0] == "['api.sock', 'hub.sock', 'server.sock']", attempt
    assert all(line in ("EROFS", "EACCES") for line in lines[1:]) and len(lines) == 4, attempt


def test_config_and_shadowed_modules_in_the_home_are_never_loaded(
    carol: Tenant, platform: Platform
) -> None:
    """Configuration files and modules the kernel plants survive a restart unread."""
    planted = carol.run(
        """
        import json, os, sys
        home = os.path.expanduser('~')
        payload = "open(os.path.expanduser('~/PWNED-' + __name__), 'w').write('x')\\n"
        def plant(path, text):
            path = os.path.join(home, path)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, 'w').write(text)
        off = {'ServerApp': {'jpserver_extensions': {'shuyu_server': False}}}
        for folder in ('.jupyter', '.local/etc/jupyter', '.config/jupyter'):
            plant(f'{folder}/jupyter_server_config.py',
                  'import os\\n' + payload +
                  "c.ServerApp.jpserver_extensions = {'shuyu_server': False}\\n")
            plant(f'{folder}/jupyter_server_config.json', json.dumps(off))
            plant(f'{folder}/jupyter_server_config.d/off.json', json.dumps(off))
        site = f'.local/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages'
        for module in ('shuyu_server/__init__.py', 'shuyu_server/singleuser.py',
                       'jupyterhub/__init__.py', 'jupyter_server/__init__.py',
                       f'{site}/sitecustomize.py', f'{site}/usercustomize.py',
                       'sitecustomize.py', 'usercustomize.py'):
            plant(module, 'import os\\n' + payload)
        plant('.local/share/jupyter/kernels/evil/kernel.json',
              json.dumps({'argv': ['python', '-c', 'pass'], 'display_name': 'evil'}))
        print(sorted(os.listdir(home)))
        """
    )
    assert planted.ok, planted.error
    restart(platform, carol)
    after = carol.run(
        """
        import glob, os
        print(sorted(glob.glob(os.path.expanduser('~/PWNED-*'))))
        """
    )
    assert after.stdout.strip() == "[]", after
    base = f"{platform.url}/user/{NAME}"
    specs = carol.session.get(f"{base}/api/kernelspecs", timeout=30).json()
    assert "evil" not in specs["kernelspecs"]
    xsrf = carol.session.cookies.get("_xsrf", path=f"/user/{NAME}/")
    carol.run("open('result.csv', 'w').write('a,b\\n1,2\\n')")
    refused = carol.session.get(
        f"{base}/files/result.csv",
        headers={"X-XSRFToken": xsrf or ""},
        allow_redirects=False,
        timeout=30,
    )
    assert refused.status_code == 403, refused.text[:300]  # the guard is still on


def test_a_forged_address_through_the_hub_relay_is_not_recorded(
    carol: Tenant, platform: Platform
) -> None:
    forged = "203.0.113.77"
    attempt = carol.run(
        f"""
        import os, re, requests
        hub = os.environ['JUPYTERHUB_API_URL'].rsplit('/api', 1)[0]
        spoof = {{'X-Forwarded-For': {forged!r}, 'X-Real-IP': {forged!r},
                  'Forwarded': 'for={forged}'}}
        s = requests.Session()
        page = s.get(hub + '/login', headers=spoof)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        for password in ('wrong-password', 'carol-demo-2026'):
            r = s.post(hub + '/login', headers=spoof, allow_redirects=False,
                       data={{'username': 'carol', 'password': password, '_xsrf': xsrf}})
            print(r.status_code)
        """
    )
    assert attempt.ok and attempt.stdout.split()[1] == "302", attempt
    logins = platform.audit_events("auth.login", actor=NAME)
    recent = logins[-2:]
    assert [e["outcome"] for e in recent] == ["denied", "ok"]
    assert {e["detail"]["remote_ip"] for e in recent} == {"127.0.0.1"}
    assert not any(forged in json.dumps(e["detail"]) for e in logins)


def test_a_flood_of_reported_events_is_capped_and_marked(carol: Tenant, platform: Platform) -> None:
    limit = int(platform.env["SHUYU_TENANT_REPORTS_PER_MINUTE"])
    before = len(platform.audit_events("egress.blocked", actor=NAME))
    flood = carol.run(
        f"""
        import collections, json, os, requests
        url = os.environ['SHUYU_API_URL'] + 'api/egress/blocked'
        token = {{'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}}
        codes = collections.Counter()
        last = None
        for i in range({limit} + 40):
            r = requests.post(url, headers=token, json={{'route': 'files', 'reason': 'forged',
                              'method': 'GET', 'path': f'/fake/{{i}}', 'query': ''}})
            codes[r.status_code] += 1
            last = r
        print(json.dumps(codes))
        print(last.json()['message'])
        """
    )
    assert flood.ok, flood.error
    codes, message = flood.stdout.splitlines()[:2]
    counted = json.loads(codes)
    # Reports of the minute before (the guard's own refusals in earlier tests) count too.
    assert set(counted) == {"201", "429"} and counted["429"] >= 40, counted
    assert limit - 5 <= counted["201"] <= limit and sum(counted.values()) == limit + 40
    assert f"at most {limit} a minute" in message
    recorded = platform.audit_events("egress.blocked", actor=NAME)[before:]
    assert len(recorded) == counted["201"]
    assert {e["detail"]["source"] for e in recorded} == {"tenant-reported"}
    limited = platform.audit_events("report.rate_limited", actor=NAME)
    assert len(limited) == 1 and limited[0]["outcome"] == "denied"


def test_a_full_disk_stops_at_the_tenants_quota(carol: Tenant, platform: Platform) -> None:
    quota = 256 * 1024**2
    assert platform.env["SHUYU_DISK_QUOTA"] == "256M"
    host_free = os.statvfs(platform.home).f_bavail * os.statvfs(platform.home).f_frsize
    fill = carol.run(
        """
        import errno, os
        size = os.statvfs(os.path.expanduser('~'))
        print(size.f_blocks * size.f_frsize)
        written, block = 0, os.urandom(1 << 20)
        fd = os.open('filler.bin', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            while written < (1 << 31):
                written += os.write(fd, block)
            print('NOT FULL', written)
        except OSError as exc:
            print(errno.errorcode[exc.errno], written)
        finally:
            os.close(fd)
        """,
        timeout=300,
    )
    total, outcome = fill.stdout.splitlines()[:2]
    error, written = outcome.split()
    assert error == "ENOSPC", fill
    assert int(total) <= quota and int(written) <= quota
    assert int(written) > quota // 2
    # The platform's filesystem lost at most the image's size, and the platform works.
    stat_after = os.statvfs(platform.home)
    assert host_free - stat_after.f_bavail * stat_after.f_frsize <= quota + 16 * 1024**2
    assert requests.get(f"{platform.url}/hub/api/", timeout=10).status_code == 200
    image = platform.home / "work" / ".disks" / "kangning.ext4"
    assert image.stat().st_size == quota and image.stat().st_blocks * 512 <= quota
    assert carol.run("import os; os.remove('filler.bin'); print('ok')").stdout.strip() == "ok"
