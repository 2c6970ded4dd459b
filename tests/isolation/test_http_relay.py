"""The hub-side relay out of a sandbox strips forwarding headers, and frames strictly.

A real tornado server with ``xheaders=True`` (as the hub and the platform service run)
answers with the address it believes the client has; raw bytes go in on the relay's
Unix socket exactly as a kernel could send them.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from harness import run_async
from shuyu_platform.isolation.http_relay import Relay, serve_http


class Whoami(web.RequestHandler):
    """Answers with the client address tornado settled on, and what the body was."""

    def get(self) -> None:
        self.write({"ip": self.request.remote_ip, "headers": dict(self.request.headers)})

    def post(self) -> None:
        self.write({"ip": self.request.remote_ip, "body": self.request.body.decode()})


def relay_rig(
    tmp_path: Path,
    test: Callable[[Path, Relay], Awaitable[None]],
    handlers: Sequence[tuple[str, type[web.RequestHandler]]] = (),
) -> None:
    """Run ``test(socket_path, relay)`` against a relay in front of a real tornado
    server answering ``handlers`` first, :class:`Whoami` for every other path."""

    async def main() -> None:
        app = web.Application([*handlers, (r"/.*", Whoami)])
        server = HTTPServer(app, xheaders=True)
        [sock] = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        server.add_socket(sock)
        port = sock.getsockname()[1]
        path = tmp_path / "hub.sock"
        relay = await serve_http(path, "127.0.0.1", port, owner=os.getuid())
        try:
            await test(path, relay)
        finally:
            relay.close()
            server.stop()

    run_async(main())


def with_relay(tmp_path: Path, test: Callable[[Path], Awaitable[None]]) -> None:
    """Run ``test(socket_path)`` against a relay in front of a real tornado server."""
    relay_rig(tmp_path, lambda path, _relay: test(path))


def assert_refused_with_400(tmp_path: Path, raw: bytes) -> None:
    """The relay answers ``raw`` with its own 400."""

    async def test(path: Path) -> None:
        answer = await exchange(path, raw)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:60]

    with_relay(tmp_path, test)


async def exchange(path: Path, raw: bytes, pause: float = 0.0) -> bytes:
    """Send ``raw`` on a fresh connection, half-close it, and after ``pause`` seconds
    read everything answered until the relay closes."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(raw)
    await writer.drain()
    writer.write_eof()
    await asyncio.sleep(pause)  # a client busy a moment before it reads
    answer = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    return answer


def bodies(answer: bytes) -> list[dict]:
    """The JSON bodies of the responses in ``answer`` (tornado's fixed-length replies)."""
    found = []
    rest = answer
    while rest.startswith(b"HTTP/1.1 200"):
        head, _, rest = rest.partition(b"\r\n\r\n")
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        found.append(json.loads(rest[:length]))
        rest = rest[length:]
    return found


def test_forwarding_headers_are_stripped(tmp_path: Path) -> None:
    async def test(path: Path) -> None:
        forged = (
            b"GET /hub/login HTTP/1.1\r\nHost: hub\r\nX-Forwarded-For: 203.0.113.9\r\n"
            b"X-Real-IP: 203.0.113.10\r\nForwarded: for=203.0.113.11\r\n"
            b"x-forwarded-proto: https\r\nX-Scheme: https\r\nAccept: */*\r\n\r\n"
        )
        answer = bodies(await exchange(path, forged * 2))
        assert [a["ip"] for a in answer] == ["127.0.0.1", "127.0.0.1"]
        headers = {k.lower() for k in answer[0]["headers"]}
        assert headers == {"host", "accept"}

    with_relay(tmp_path, test)


def test_bodies_pass_whole_and_the_next_request_is_cleaned_too(tmp_path: Path) -> None:
    async def test(path: Path) -> None:
        chunked = (
            b"POST /a HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        body = b"X-Forwarded-For: 203.0.113.9"
        sized = b"POST /b HTTP/1.1\r\nHost: hub\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        after = b"GET /c HTTP/1.1\r\nHost: hub\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"
        answer = bodies(await exchange(path, chunked + sized + after))
        assert [a.get("body") for a in answer] == ["hello world", body.decode(), None]
        assert {a["ip"] for a in answer} == {"127.0.0.1"}

    with_relay(tmp_path, test)


def test_ambiguous_framing_is_refused_with_400(tmp_path: Path) -> None:
    smuggles = {
        "both framings": (
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        "bare LF": b"GET / HTTP/1.1\nX-Forwarded-For: 203.0.113.9\n\nGET / HTTP/1.1\r\n\r\n",
        "folded header": b"GET / HTTP/1.1\r\nHost: a\r\n X-Forwarded-For: 203.0.113.9\r\n\r\n",
        "two lengths": b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "signed length": b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\na",
        "chunk extension": (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;x\r\na\r\n0\r\n\r\n"
        ),
        "upgrade": b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "gzip encoding": b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    }

    async def test(path: Path) -> None:
        for name, raw in smuggles.items():
            answer = await exchange(path, raw)
            assert answer.startswith(b"HTTP/1.1 400 Bad Request"), (name, answer)
            assert b"Refused by the sandbox relay" in answer, name
        # A good request before the bad one is answered first, then the refusal.
        good = b"GET / HTTP/1.1\r\nHost: hub\r\n\r\n"
        answer = await exchange(path, good + smuggles["upgrade"])
        assert answer.startswith(b"HTTP/1.1 200") and b"400 Bad Request" in answer

    with_relay(tmp_path, test)


async def fill_the_cap(path: Path) -> list[asyncio.StreamWriter]:
    """Hold every place of the relay's cap with idle connections, as a kernel could."""
    from shuyu_platform.isolation.http_relay import MAX_CONNECTIONS

    held = [(await asyncio.open_unix_connection(str(path)))[1] for _ in range(MAX_CONNECTIONS)]
    await asyncio.sleep(0.2)
    return held


async def assert_refused(path: Path) -> None:
    """A request on a fresh connection gets the cap's 503."""
    refused = await exchange(path, b"GET /over HTTP/1.1\r\nHost: hub\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 503"), refused[:100]


def test_a_sandbox_cannot_hold_more_than_its_share_of_connections(tmp_path: Path) -> None:
    """Idle connections beyond the cap are refused at once, and a place frees up as one
    closes: a kernel cannot run the hub out of descriptors through its relay."""

    async def test(path: Path) -> None:
        held = await fill_the_cap(path)
        await assert_refused(path)
        held.pop().close()
        await asyncio.sleep(0.2)
        served = await exchange(path, b"GET /again HTTP/1.1\r\nHost: hub\r\n\r\n")
        assert served.startswith(b"HTTP/1.1 200"), served[:100]
        for writer in held:
            writer.close()

    with_relay(tmp_path, test)


def test_connections_made_while_the_hub_is_busy_all_arrive(tmp_path: Path) -> None:
    """A Unix socket queues no connection past its backlog, and asyncio takes the EAGAIN
    for a connection made: with a short queue, a kernel's connections opened while the
    hub's loop was busy died unseen, the cap was never reached, and the one over it was
    served. Here the loop is blocked while more than the cap connect: every connect is
    queued, and the one over the cap gets its 503 once the loop runs."""
    from shuyu_platform.isolation.http_relay import MAX_CONNECTIONS

    async def test(path: Path) -> None:
        held = []
        for _ in range(MAX_CONNECTIONS + 1):  # the loop runs none of these meanwhile
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect(str(path))  # BlockingIOError: the queue is full
            held.append(sock)
        over = held.pop()
        over.setblocking(True)
        over.settimeout(20)
        over.sendall(b"GET /over HTTP/1.1\r\nHost: hub\r\n\r\n")
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, over.recv, 64)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        for sock in [over, *held]:
            sock.close()

    with_relay(tmp_path, test)


def test_connections_over_the_cap_in_a_loop_hold_few_of_the_hubs_descriptors(
    tmp_path: Path,
) -> None:
    """Each 503 waits up to a second for its request head; a kernel opening connections
    in a loop, sending nothing, had the hub hold every one of them for that second
    (thousands in two seconds). At most MAX_REFUSING wait at once, and meanwhile the
    relay accepts nothing: the rest wait in the socket's queue, not in the hub. One
    that sends its head still gets its 503."""
    from shuyu_platform.isolation.http_relay import MAX_REFUSING

    async def test(path: Path) -> None:
        held = await fill_the_cap(path)
        before = len(os.listdir("/proc/self/fd"))
        flood = []
        for _ in range(200):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect(str(path))
            flood.append(sock)
        await asyncio.sleep(0.5)  # less than the second a refusal waits for its head
        in_the_hub = len(os.listdir("/proc/self/fd")) - before - len(flood)
        assert in_the_hub <= MAX_REFUSING, in_the_hub
        for sock in flood:
            sock.close()
        await asyncio.sleep(1.2)
        await assert_refused(path)
        for writer in held:
            writer.close()

    with_relay(tmp_path, test)
