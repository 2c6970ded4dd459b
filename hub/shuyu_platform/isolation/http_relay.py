"""The hub-side relay from a sandbox to the hub API or the platform: HTTP, headers cleaned.

The hub and the platform service run behind the proxy with ``xheaders=True``: they take
a client's address from ``X-Forwarded-For`` / ``X-Real-IP``, which the proxy sets. A
kernel that talks to them through its sandbox's relay (``hub.sock``, ``api.sock``)
bypasses the proxy, so a plain byte relay would let it name any address it likes, and
a login sent that way would be recorded with the forged one. This relay reads each
request's head, drops every forwarding header (:data:`FORWARDING`), and passes the rest
on: the hub and the platform then see the relay's own address, 127.0.0.1.

The parse is strict so that it can never disagree with the server about where a request
ends (a request hidden in another's body would keep its forged headers): every line
ends in CRLF, no folded or malformed header lines, one ``Content-Length`` of digits or
``Transfer-Encoding: chunked`` alone with bare hexadecimal chunk sizes and no trailers,
no protocol upgrades. Anything else is not passed on: once the answers to the requests
before it are through, it gets ``400 Bad Request`` with a sentence, and the connection
is closed. Answers are relayed as they come.

What a sandbox can hold of the hub is metered: each relayed connection costs the hub
three descriptors, so one relay carries at most :data:`MAX_CONNECTIONS` at once (a
connection beyond gets ``503`` and is closed), and a connection that sends no request
head for :data:`IDLE` seconds is closed. Without these a kernel could open idle
connections until the hub ran out of descriptors, every tenant's starts with it. The
503 waits up to a second for the request's head, so that the answer lands; at most
:data:`MAX_REFUSING` connections wait so at once, and one beyond is closed unanswered:
a kernel opening connections in a loop had held thousands of the hub's descriptors,
each waiting its second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("shuyu.http_relay")

#: Request headers a sandbox may not send on (lower-case); also any ``x-forwarded-*``.
FORWARDING = frozenset(
    {b"forwarded", b"x-real-ip", b"x-scheme", b"x-client-ip", b"true-client-ip", b"client-ip"}
)
#: Longest request head (request line and headers) and chunk-size line accepted.
MAX_HEAD = 64 * 1024
COPY = 256 * 1024
#: When the requests end (or one is refused), the answers are over once the server has
#: been silent this long (seconds), or closed; never waited for longer than the limit.
QUIET = 1.0
SETTLE_LIMIT = 30.0
#: Connections one relay carries at once, those still settling included (after a
#: client closes, its connection lingers about :data:`QUIET` seconds: a kernel posting
#: one request per connection keeps dozens settling); seconds a connection may wait
#: between requests.
MAX_CONNECTIONS = 128
IDLE = 300.0
#: Connections over the cap answered 503 at once (each waits up to a second for its
#: request head); one beyond is closed unanswered. Refusals are logged at most once a
#: :data:`LOG_EVERY` seconds per relay, with their count.
MAX_REFUSING = 16
LOG_EVERY = 10.0
#: Connections the kernel queues for the relay while the hub's event loop is busy. A
#: Unix socket does not queue past its backlog: a connect beyond it fails with EAGAIN,
#: which asyncio (and tornado) take for a connection made, so the sandbox side sees it
#: die on its first write. The cap and its 503s need every connection up to well past
#: :data:`MAX_CONNECTIONS` to arrive, however late the hub accepts them.
BACKLOG = 2 * MAX_CONNECTIONS

REQUEST_LINE = re.compile(rb"[A-Z]{1,16} [\x21-\x7e]+ HTTP/1\.[01]")
HEADER = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*")
HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class BadRequest(Exception):
    """A request this relay will not pass on; ``str()`` is the sentence sent back."""


def clean_head(head: bytes) -> tuple[bytes, int | None]:
    """The head without forwarding headers, and the body's length (None: chunked).

    ``head`` ends with the blank line. Raises :class:`BadRequest` when the request is
    not one this relay can frame exactly as the server would.
    """
    lines = head[:-4].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise BadRequest("every line of a request must end in CRLF")
    if not REQUEST_LINE.fullmatch(lines[0]):
        raise BadRequest("malformed request line")
    kept = [lines[0]]
    lengths: list[bytes] = []
    encodings: list[bytes] = []
    for line in lines[1:]:
        match = HEADER.fullmatch(line)
        if match is None:
            raise BadRequest("malformed or folded header line")
        name = match.group(1).lower()
        value = match.group(2)
        if name in FORWARDING or name.startswith(b"x-forwarded-"):
            continue
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            encodings.append(value.lower())
        elif name == b"upgrade" or (name == b"connection" and b"upgrade" in value.lower()):
            raise BadRequest("no protocol upgrades through the sandbox relay")
        kept.append(line)
    if encodings:
        if lengths or encodings != [b"chunked"]:
            raise BadRequest("send Transfer-Encoding: chunked alone, or one Content-Length")
        length = None
    elif len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
        raise BadRequest("send one Content-Length of digits")
    else:
        length = int(lengths[0]) if lengths else 0
    return b"\r\n".join(kept) + b"\r\n\r\n", length


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> None:
    while size > 0:
        data = await reader.readexactly(min(size, COPY))
        writer.write(data)
        await writer.drain()
        size -= len(data)


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        if not HEX.fullmatch(line[:-2]):
            raise BadRequest("malformed chunk size (bare hexadecimal digits only)")
        size = int(line[:-2], 16)
        writer.write(line)
        await _copy(reader, writer, size)
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("a chunk must end in CRLF (and trailers are not taken)")
        writer.write(b"\r\n")
        await writer.drain()
        if size == 0:
            return


class _Answers:
    """The upstream-to-client half of one connection, and when it last moved bytes."""

    def __init__(self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.last = asyncio.get_running_loop().time()
        self.expected = False  # whether any request went to the server
        self.task = asyncio.ensure_future(self._pipe(upstream, writer))

    async def _pipe(self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await upstream.read(COPY):
                self.last = asyncio.get_running_loop().time()
                writer.write(data)
                await writer.drain()

    async def settle(self) -> None:
        """Wait until the server has answered what it was sent: it closed, or it has
        been silent for :data:`QUIET` seconds (at most :data:`SETTLE_LIMIT` in all).

        Half-closing the connection to the server would not do: tornado takes it for a
        closed connection and drops answers still in progress.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_LIMIT
        while self.expected and not self.task.done() and loop.time() < deadline:
            if loop.time() - self.last >= QUIET:
                break
            await asyncio.wait({self.task}, timeout=QUIET / 4)
        self.task.cancel()


async def _requests(
    reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, answers: _Answers
) -> None:
    """Pass requests on, cleaned, until the client is done; raise BadRequest if bad."""
    while True:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE)
        except TimeoutError:
            return
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise BadRequest("the request head ended early") from None
            return
        except asyncio.LimitOverrunError:
            raise BadRequest(f"request head over {MAX_HEAD} bytes") from None
        cleaned, length = clean_head(head)
        answers.expected = True
        upstream.write(cleaned)
        if length is None:
            await _copy_chunked(reader, upstream)
        else:
            await _copy(reader, upstream, length)
        await upstream.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def serve_http(path: Path, host: str, port: int, *, owner: int) -> asyncio.Server:
    """Listen on the Unix socket ``path`` (mode 0600, ``owner``'s) and relay to host:port."""

    carried = refusing = refused = 0
    logged = -LOG_EVERY

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal carried, refusing, refused, logged
        if carried >= MAX_CONNECTIONS:
            refused += 1
            now = asyncio.get_running_loop().time()
            if now - logged >= LOG_EVERY:
                log.warning("relay to %s:%s: over %d connections, %d refused since the "
                            "last warning", host, port, MAX_CONNECTIONS, refused)  # fmt: skip
                logged, refused = now, 0
            if refusing >= MAX_REFUSING:
                writer.transport.abort()
                return
            refusing += 1
            try:
                with contextlib.suppress(Exception):  # its head first, so the answer lands
                    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 1.0)
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.drain()
                await _close(writer)
            finally:
                refusing -= 1
            return
        carried += 1
        try:
            await relay(reader, writer)
        finally:
            carried -= 1

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port, limit=COPY)
        except OSError as exc:
            log.debug("relay to %s:%s: cannot connect: %s", host, port, exc)
            await _close(writer)
            return
        answers = _Answers(up_reader, writer)
        refusal = None
        try:
            await _requests(reader, up_writer, answers)
        except BadRequest as exc:
            refusal = str(exc)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            refusal = "the request body ended early or a chunk-size line is too long"
        except (ConnectionError, OSError):
            pass
        await answers.settle()
        await _close(up_writer)
        if refusal is not None:
            body = f"Refused by the sandbox relay: {refusal}.\n".encode()
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
        await _close(writer)

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(handle, str(path), limit=MAX_HEAD, backlog=BACKLOG)
    os.chmod(path, 0o600)
    os.chown(path, owner, -1)
    return server
