"""Attacks from inside a real tenant kernel, in a real bubblewrap sandbox.

alice (tenant kangning) runs code in her kernel while bob (tenant huaxin) has a server
too. Every attempt must fail with a clear error. Where the platform can observe the
attempt (its own APIs, the hub, the cgroup's OOM counter, spawning) it also leaves an
audit record; a read of a path that does not exist in the sandbox, or a connection
that no route leads to, never leaves the sandbox, so there is nothing for the host to
record, and these tests prove instead that nothing is there to reach.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness import REPO, Platform
from kernel import Execution, Kernel

pytestmark = pytest.mark.hub

OTHER_TENANT_SECRET = "huaxin-private-7f3a"


def run(kernel: Kernel, code: str) -> Execution:
    return kernel.run(textwrap.dedent(code))


@pytest.fixture(scope="module")
def alice(platform: Platform) -> Iterator[Kernel]:
    """alice's kernel, with bob's server running beside it; both tenants have views.

    The demo grants give kangning health_records and social_insurance, and huaxin
    enterprise_credit and part of health_records.
    """
    assert (platform.home / "views" / "huaxin" / "enterprise_credit.parquet").exists()
    bob = platform.login("bob")
    platform.start_server(bob, "bob")
    bob_kernel = Kernel(platform.url, bob, "bob")
    assert run(bob_kernel, f"open('secret.txt', 'w').write({OTHER_TENANT_SECRET!r})").ok
    bob_kernel.close()

    session = platform.login("alice")
    platform.start_server(session, "alice")
    kernel = Kernel(platform.url, session, "alice")
    yield kernel
    kernel.close()


def test_raw_data_does_not_exist_inside(alice: Kernel, platform: Platform) -> None:
    raw = platform.home / "raw" / "health_records.parquet"
    assert raw.exists()  # it is there on the host ...
    attempt = run(alice, f"open({str(raw)!r}, 'rb').read()")
    assert attempt.error["ename"] == "FileNotFoundError"  # ... and absent in the sandbox
    scan = run(
        alice,
        """
        import hashlib, json, os
        found = {}
        for root, dirs, files in os.walk('/'):
            if root == '/':
                dirs[:] = [d for d in dirs if d not in ('proc', 'dev')]
            for name in files:
                if name.endswith('.parquet'):
                    path = os.path.join(root, name)
                    found[path] = hashlib.sha256(open(path, 'rb').read()).hexdigest()
        print(json.dumps(found))
        """,
    )
    assert scan.ok, scan.error
    found = json.loads(scan.stdout)
    assert "/data/views/health_records.parquet" in found
    raw_hashes = {
        hashlib.sha256(path.read_bytes()).hexdigest()
        for path in (platform.home / "raw").glob("*.parquet")
    }
    assert len(raw_hashes) == 4
    assert not raw_hashes & set(found.values()), "a raw dataset is readable in the sandbox"


def test_other_tenant_is_invisible(alice: Kernel, platform: Platform) -> None:
    bob_work = platform.home / "work" / "huaxin" / "bob"
    assert (bob_work / "secret.txt").exists()
    attempt = run(alice, f"import os; os.listdir({str(bob_work)!r})")
    assert attempt.error["ename"] == "FileNotFoundError"
    listing = run(alice, "import os; print(sorted(os.listdir('/data/views')), os.listdir('/home'))")
    own = "['health_records.parquet', 'social_insurance.parquet'] ['alice']"
    assert listing.stdout.strip() == own
    grep = run(
        alice,
        f"""
        import os
        hits = []
        for top in ('/home', '/data', '/tmp', '/run', '/var', '/etc'):
            for root, _, files in os.walk(top):
                for name in files:
                    path = os.path.join(root, name)
                    try:
                        if {OTHER_TENANT_SECRET!r}.encode() in open(path, 'rb').read():
                            hits.append(path)
                    except OSError:
                        pass
        print(hits)
        """,
    )
    assert grep.stdout.strip() == "[]", grep


def test_hub_state_and_secrets_are_invisible(alice: Kernel, platform: Platform) -> None:
    secrets = [
        platform.home / "hub" / "jupyterhub.sqlite",
        platform.home / "hub" / "jupyterhub_cookie_secret",
        platform.home / "hub" / "accounts.json",
        platform.home / "hub" / "operator-api-token",
        platform.home / "db" / "shuyu.sqlite",
        REPO / "jupyterhub_config.py",
        REPO / "hub" / "shuyu_platform" / "hubconfig.py",
    ]
    assert all(path.exists() for path in secrets)
    probe = run(
        alice,
        f"""
        import os
        for path in {[str(p) for p in secrets]!r}:
            try:
                open(path, 'rb')
                print('READABLE', path)
            except FileNotFoundError:
                pass
        print(sorted(k for k in os.environ if 'PROXY' in k or 'CRYPT' in k or 'COOKIE_SECRET' in k))
        """,
    )
    assert probe.ok and probe.stdout.strip() == "[]", probe


def test_own_token_cannot_administer_the_hub(alice: Kernel) -> None:
    attempt = run(
        alice,
        """
        import os, requests
        r = requests.get(os.environ['JUPYTERHUB_API_URL'] + '/users',
                         headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})
        print(r.status_code)
        """,
    )
    assert attempt.stdout.strip() == "403", attempt


def test_platform_api_refuses_and_audits_what_the_role_lacks(
    alice: Kernel, platform: Platform
) -> None:
    attempt = run(alice, "import shuyu.client as c; c.get('api/audit/events')")
    assert attempt.error["ename"] == "PlatformError"
    assert "auditor role" in attempt.error["evalue"]
    denied = platform.audit_events("access.denied", actor="alice")
    assert any(e["target"] == "/services/shuyu/api/audit/events" for e in denied)


def test_loopback_ports_of_the_host_are_unreachable(alice: Kernel, platform: Platform) -> None:
    env = platform.env
    ports = [
        int(env["SHUYU_HUB_PORT"]),
        int(env["SHUYU_PORT"]),
        int(env["SHUYU_PROXY_API_PORT"]),
        int(env["SHUYU_SERVICE_PORT"]),
        47_913,
    ]
    attempt = run(
        alice,
        f"""
        import socket
        for port in {ports!r}:
            try:
                socket.create_connection(('127.0.0.1', port), timeout=5).close()
                print('OPEN', port)
            except OSError as exc:
                print(type(exc).__name__)
        """,
    )
    assert attempt.stdout.split() == ["ConnectionRefusedError"] * len(ports), attempt


def test_no_route_and_no_name_resolution_out_of_the_sandbox(alice: Kernel) -> None:
    # UDP connect() only looks up a route and sends nothing, so this probe emits no
    # traffic even on a broken sandbox; a TCP attempt would need the same route.
    attempt = run(
        alice,
        """
        import errno, socket
        print(socket.if_nameindex())
        print(len(open('/proc/net/route').read().splitlines()))
        try:
            socket.getaddrinfo('pypi.org', 443)
            print('RESOLVED')
        except socket.gaierror:
            print('no-dns')
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(('192.0.2.1', 53))
            print('ROUTE')
        except OSError as exc:
            print(errno.errorcode[exc.errno])
        """,
    )
    assert attempt.stdout.split("\n")[:4] == ["[(1, 'lo')]", "1", "no-dns", "ENETUNREACH"]


def test_host_processes_are_invisible(alice: Kernel, platform: Platform) -> None:
    attempt = run(
        alice,
        """
        import os
        pids = [p for p in os.listdir('/proc') if p.isdigit()]
        cmds = [open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()
                for p in pids]
        print(len(pids), any('configurable-http-proxy' in c or 'jupyterhub -f' in c
                             or 'shuyu_platform.service' in c for c in cmds))
        """,
    )
    count, host_seen = attempt.stdout.split()
    assert host_seen == "False" and int(count) < 20, attempt


def test_views_imports_and_synthetic_data_are_read_only(alice: Kernel) -> None:
    attempt = run(
        alice,
        """
        import errno, os
        for path in ('/data/views/health_records.parquet', '/data/views/new.parquet',
                     '/data/synthetic/x.parquet', '/data/imports/new.parquet'):
            try:
                open(path, 'ab')
                print('WRITABLE', path)
            except OSError as exc:
                print(errno.errorcode[exc.errno])
        for line in open('/proc/self/mountinfo'):
            fields = line.split()
            if fields[4] in ('/data/views', '/data/synthetic', '/data/imports'):
                print(fields[4], fields[5].split(',')[0])
        """,
    )
    lines = attempt.stdout.splitlines()
    # The file itself is root's (EACCES comes first); creating anything hits the ro mount.
    assert lines[0] in ("EACCES", "EROFS") and lines[1:4] == ["EROFS"] * 3, attempt
    assert sorted(lines[4:]) == ["/data/imports ro", "/data/synthetic ro", "/data/views ro"]


def test_runs_as_an_unprivileged_tenant_uid(alice: Kernel, platform: Platform) -> None:
    attempt = run(
        alice,
        """
        import os
        status = dict(line.split(':', 1) for line in open('/proc/self/status'))
        print(os.getuid(), os.getgid(), status['CapEff'].strip(), status['NoNewPrivs'].strip())
        """,
    )
    uid, gid, caps, no_new_privs = attempt.stdout.split()
    ids = json.loads((platform.home / "hub" / "tenant-ids.json").read_text())
    assert int(uid) == int(gid) == ids["kangning"] >= 40000
    assert ids["huaxin"] != ids["kangning"]
    assert (caps, no_new_privs) == ("0000000000000000", "1")


def test_reads_own_views_and_reaches_the_platform(alice: Kernel) -> None:
    attempt = run(
        alice,
        """
        import shuyu
        view = shuyu.views.read('health_records')
        print(len(view) > 0, 'id_card' in view.columns, view.attrs['fields']['sex']['grade'])
        print(len(shuyu.catalogue()))
        """,
    )
    assert attempt.stdout.split("\n")[:2] == ["True False L2", "4"], attempt


def test_memory_limit_kills_the_kernel_not_the_host(alice: Kernel, platform: Platform) -> None:
    attempt = run(alice, "hog = b'x' * (3 * 1024**3)")
    assert attempt.error["ename"] in ("KernelDied", "MemoryError"), attempt
    assert requests.get(f"{platform.url}/hub/api/", timeout=10).status_code == 200
    deadline = time.monotonic() + 30
    while not platform.audit_events("sandbox.oom_kill", actor="alice"):
        assert time.monotonic() < deadline, "no sandbox.oom_kill audit record"
        time.sleep(0.5)
    event = platform.audit_events("sandbox.oom_kill", actor="alice")[-1]
    assert event["tenant"] == "kangning" and event["detail"]["mem_limit_bytes"] == 1024**3
    # The server survived; the kernel restarts and works again. A request sent while
    # the server reconnects to the restarted kernel may be dropped, so each try gets a
    # short timeout and a fresh websocket.
    deadline = time.monotonic() + 90
    while True:
        try:
            again = alice.run("print(6 * 7)", timeout=10)
        except TimeoutError as timeout:
            again = timeout
        else:
            if again.ok and again.stdout.strip() == "42":
                break
        assert time.monotonic() < deadline, again
        time.sleep(1)
        alice.reconnect()


#: From alice's kernel: hold 128 idle connections to the hub's API through her
#: sandbox's relay, ask once more, keep holding a while, let one go, ask again; print
#: both answers' status.
HOLD_THE_RELAY = """
import json, os, socket, time, urllib.parse
url = urllib.parse.urlsplit(os.environ["JUPYTERHUB_API_URL"])
head = f"GET {url.path}/ HTTP/1.1\\r\\nHost: {url.netloc}\\r\\nConnection: close\\r\\n\\r\\n"
def ask():
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(head.encode())
        return s.recv(64).split()[1].decode()
def live(s):  # not answered (a refusal's 503) nor closed by the relay
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)
        return False
    except BlockingIOError:
        return True
    finally:
        s.settimeout(30)
held = [socket.create_connection((url.hostname, url.port), timeout=30) for _ in range(128)]
time.sleep(1)
# The server's own requests to the hub share the relay: one may have taken a place.
held = [s for s in held if live(s)]
kept = len(held)
over = ask()
time.sleep(4)  # bob is asked meanwhile
held.pop().close()
answers = []
for _ in range(20):
    time.sleep(0.5)
    answers.append(ask())
    if answers[-1] != "503":
        break
for s in held:
    s.close()
print(json.dumps([over, answers, kept]))
"""


def test_a_kernel_holding_its_relays_open_starves_only_itself(
    alice: Kernel, platform: Platform
) -> None:
    """Each relay out of a sandbox carries at most 128 connections (the hub's descriptors
    are every tenant's): past that alice's kernel gets 503 while bob's sandbox is
    served, and alice is served again as soon as one of hers closes."""
    bob = platform.login("bob")
    platform.start_server(bob, "bob")
    bob_kernel = Kernel(platform.url, bob, "bob")
    try:
        with ThreadPoolExecutor(1) as pool:
            holding = pool.submit(alice.run, HOLD_THE_RELAY, 180)
            time.sleep(2.5)
            served = run(
                bob_kernel,
                """
                import os, urllib.request
                print(urllib.request.urlopen(os.environ["JUPYTERHUB_API_URL"] + "/").status)
                """,
            )
            held = holding.result(200)
        assert served.ok and served.stdout.strip() == "200", served
        assert held.ok, held.error
        over, answers, kept = json.loads(held.stdout)
        assert over == "503" and answers[-1] == "200", (answers, kept)
        assert kept >= 120, kept  # the server's own requests take a place or two at most
    finally:
        bob_kernel.close()
