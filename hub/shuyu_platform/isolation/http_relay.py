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

What a sandbox can hold of the hub is metered, since its kernel can connect to the
relay's socket directly and do anything a client can:

* at most :data:`MAX_CONNECTIONS` relayed at once (each costs the hub three
  descriptors); a connection beyond gets ``503``. A 503 waits up to a second for the
  request's head, so that the answer lands; at most :data:`MAX_REFUSING` wait so at
  once, each holding its place for at least :data:`REFUSAL_PACE`, and while they are
  all taken the relay accepts nothing: a flood waits in the socket's queue, at no cost
  to the hub (it had held thousands of descriptors, then spent the loop accepting);
* every wait has a deadline: :data:`IDLE` seconds for a request head, a body's next
  bytes, a server or client taking bytes; a client that is gone (reset, or silent past
  the deadline) ends its connection at once, answers still unread or not. A kernel that
  pipelined requests and left without reading the answers had held its place, two
  descriptors and megabytes for good;
* buffers are small (:data:`COPY`), and a chunked body reaches the server in chunks
  of at least :data:`COPY` bytes (but the last), however small the kernel sent them;
* stopping the relay (:meth:`Relay.close`) ends every connection it carries.

Not bounded here: the server's own socket buffer towards the relay, which Linux sizes
up to 4 MiB on loopback. A kernel that pipelines requests for large answers and reads
none can hold that much of the hub's kernel memory per connection, for :data:`IDLE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import select
import socket
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("shuyu.http_relay")

#: Request headers a sandbox may not send on (lower-case); also any ``x-forwarded-*``.
FORWARDING = frozenset(
    {b"forwarded", b"x-real-ip", b"x-scheme", b"x-client-ip", b"true-client-ip", b"client-ip"}
)
#: Longest request head (request line and headers) and chunk-size line accepted.
MAX_HEAD = 64 * 1024
#: Bytes read or buffered at a time, in each direction.
COPY = 64 * 1024
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
#: request head, and holds its place at least REFUSAL_PACE seconds); while all are
#: taken nothing is accepted. Refusals are logged at most once a :data:`LOG_EVERY`
#: seconds per relay, with their count.
MAX_REFUSING = 16
REFUSAL_PACE = 0.1
LOG_EVERY = 10.0
#: Seconds a connection to the server may take; a closing client is given this long to
#: take what it was sent.
CONNECT_TIMEOUT = 10.0
LINGER = 5.0
#: Seconds between checks that a client has hung up while the relay waits on the server.
HANGUP_CHECK = 1.0
#: Connections the kernel queues for the relay while the hub's event loop is busy. A
#: Unix socket does not queue past its backlog: a connect beyond it fails with EAGAIN,
#: which asyncio (and tornado) take for a connection made, so the sandbox side sees it
#: die on its first write. The cap and its 503s need every connection up to well past
#: :data:`MAX_CONNECTIONS` to arrive, however late the hub accepts them.
BACKLOG = 2 * MAX_CONNECTIONS

REQUEST_LINE = re.compile(rb"[A-Z]{1,16} [\x21-\x7e]+ HTTP/1\.[01]")
#: A header line; its value is stripped of blanks apart (a lazy match before a run of
#: blanks backtracked quadratically: one 64 KiB head held the hub's loop 17 s).
HEADER = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):(.*)")
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
        value = match.group(2).strip(b" \t")
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
    elif len(lengths) > 1 or (lengths and not (lengths[0].isdigit() and len(lengths[0]) <= 18)):
        raise BadRequest("send one Content-Length of at most 18 digits")
    else:
        length = int(lengths[0]) if lengths else 0
    return b"\r\n".join(kept) + b"\r\n\r\n", length


class Stalled(Exception):
    """A client or server took no bytes, or sent none, for :data:`IDLE` seconds."""


async def _within(step: Awaitable[T], what: str) -> T:
    """``step``, or :class:`Stalled` once :data:`IDLE` seconds have passed."""
    try:
        async with asyncio.timeout(IDLE):
            return await step
    except TimeoutError:
        raise Stalled(what) from None


class _Input:
    """A client's bytes, read a block at a time: parsing many small pieces (header
    lines, chunks) costs no await, task or timer each, only the reads from the socket,
    and each of those has its :data:`IDLE` deadline."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buffer = bytearray()
        self.pos = 0  # bytes of the buffer already taken

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[self.pos : self.pos + size])
        self.pos += size
        if self.pos > COPY:  # drop what was taken, now and then (not per piece)
            del self.buffer[: self.pos]
            self.pos = 0
        return data

    async def _fill(self, what: str) -> bool:
        """Read a block more; False at the end of the client's bytes."""
        data = await _within(self.reader.read(COPY), what)
        self.buffer += data
        return bool(data)

    async def until(self, separator: bytes, limit: int, what: str) -> bytes:
        """Up to and with ``separator``; raises IncompleteReadError at the end, and
        LimitOverrunError past ``limit`` bytes."""
        start = self.pos
        while True:
            found = self.buffer.find(separator, start)
            if found >= 0:
                if found + len(separator) - self.pos > limit:
                    raise asyncio.LimitOverrunError("too long", limit)
                return self._take(found + len(separator) - self.pos)
            if len(self.buffer) - self.pos > limit:
                raise asyncio.LimitOverrunError("too long", limit)
            start = max(self.pos, len(self.buffer) - len(separator) + 1)
            if not await self._fill(what):
                raise asyncio.IncompleteReadError(bytes(self.buffer[self.pos :]), None)

    async def some(self, size: int, what: str) -> bytes:
        """Between one and ``size`` bytes; raises IncompleteReadError at the end."""
        if len(self.buffer) == self.pos and not await self._fill(what):
            raise asyncio.IncompleteReadError(b"", size)
        return self._take(min(size, len(self.buffer) - self.pos))

    async def exactly(self, size: int, what: str) -> bytes:
        while len(self.buffer) - self.pos < size:
            if not await self._fill(what):
                raise asyncio.IncompleteReadError(bytes(self.buffer[self.pos :]), size)
        return self._take(size)


async def _copy(source: _Input, writer: asyncio.StreamWriter, size: int) -> None:
    while size > 0:
        data = await source.some(min(size, COPY), "the request body")
        writer.write(data)
        size -= len(data)
        if writer.transport.get_write_buffer_size() >= COPY:
            await _within(writer.drain(), "the server")


async def _copy_chunked(source: _Input, writer: asyncio.StreamWriter) -> None:
    """Pass a chunked body on, gathered into chunks of COPY bytes (the last one less)."""
    gathered = bytearray()

    async def send() -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(gathered), gathered))
        gathered.clear()
        await _within(writer.drain(), "the server")

    while True:
        line = await source.until(b"\r\n", MAX_HEAD, "the request body")
        if not HEX.fullmatch(line[:-2]):
            raise BadRequest("malformed chunk size (bare hexadecimal digits only)")
        size = last = int(line[:-2], 16)
        while size > 0:
            data = await source.some(min(size, COPY - len(gathered)), "the request body")
            gathered += data
            size -= len(data)
            if len(gathered) >= COPY:
                await send()
        if await source.exactly(2, "the request body") != b"\r\n":
            raise BadRequest("a chunk must end in CRLF (and trailers are not taken)")
        if last == 0:
            if gathered:
                await send()
            writer.write(b"0\r\n\r\n")
            return


class _Answers:
    """The server-to-client half of one connection, and when it last moved bytes."""

    def __init__(self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.last = asyncio.get_running_loop().time()
        self.expected = False  # whether any request went to the server
        self.client_gone = False
        self.waiting_on_client = False
        self.task = asyncio.ensure_future(self._pipe(upstream, writer))

    def sent(self) -> None:
        """A request went to the server whole: its answer is awaited from now."""
        self.expected = True
        self.last = asyncio.get_running_loop().time()

    async def _pipe(self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                data = await upstream.read(COPY)
            except (ConnectionError, OSError):
                return
            if not data:
                return
            self.last = asyncio.get_running_loop().time()
            try:
                writer.write(data)
                self.waiting_on_client = True
                await _within(writer.drain(), "the client")
            except (ConnectionError, OSError, Stalled):
                self.client_gone = True
                return
            finally:
                self.waiting_on_client = False
            self.last = asyncio.get_running_loop().time()

    async def settle(self) -> None:
        """Wait until the server has answered what it was sent: it closed, or it has
        been silent for :data:`QUIET` seconds since the last request or answer byte (at
        most :data:`SETTLE_LIMIT` in all).

        Half-closing the connection to the server would not do: tornado takes it for a
        closed connection and drops answers still in progress.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_LIMIT
        while self.expected and not self.task.done() and loop.time() < deadline:
            if not self.waiting_on_client and loop.time() - self.last >= QUIET:
                break
            await asyncio.wait({self.task}, timeout=QUIET / 4)
        self.task.cancel()


async def _requests(
    reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, answers: _Answers
) -> str | None:
    """Pass requests on, cleaned, until the client is done; the refusal, if one is."""
    source = _Input(reader)
    try:
        while True:
            try:
                head = await source.until(b"\r\n\r\n", MAX_HEAD, "the next request")
            except Stalled:
                return None  # idle between requests: the connection ends
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    raise BadRequest("the request head ended early") from None
                return None
            except asyncio.LimitOverrunError:
                raise BadRequest(f"request head over {MAX_HEAD} bytes") from None
            while head.startswith(b"\r\n") and len(head) > 4:
                head = head[2:]  # RFC 9112 2.2, and tornado: empty lines before a request
            cleaned, length = clean_head(head)
            upstream.write(cleaned)
            if length is None:
                await _copy_chunked(source, upstream)
            else:
                await _copy(source, upstream, length)
            await _within(upstream.drain(), "the server")
            answers.sent()
    except BadRequest as exc:
        return str(exc)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return "the request body ended early or a chunk-size line is too long"
    except Stalled as exc:
        return f"{exc} stalled for {IDLE:.0f} s"
    except (ConnectionError, OSError):
        return None


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close, giving the peer :data:`LINGER` seconds to take what is buffered; then drop."""
    writer.close()
    try:
        async with asyncio.timeout(LINGER):
            await writer.wait_closed()
    except TimeoutError:  # (aborting a transport already lost raises on 3.11)
        writer.transport.abort()
    except (ConnectionError, OSError):
        pass


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the server whose kernel buffers stay at COPY: autotuned, a server
    not reading (or a client not reading its answers) had 10 MB pinned per connection."""
    loop = asyncio.get_running_loop()
    [(family, kind, proto, _, address), *_] = await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, COPY)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, COPY)
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        return await asyncio.open_connection(sock=sock, limit=COPY)
    except BaseException:
        sock.close()
        raise


async def _hung_up(writer: asyncio.StreamWriter) -> None:
    """Return once the client has closed its end (not a half-close): noticed even while
    nothing reads from it (the relay blocked on a server that reads nothing)."""
    poller = select.poll()
    poller.register(writer.get_extra_info("socket").fileno(), select.POLLRDHUP)
    while not any(event & select.POLLHUP for _, event in poller.poll(0)):
        await asyncio.sleep(HANGUP_CHECK)


async def _relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    """Carry one client's connection to the server until either side is done."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            up_reader, up_writer = await _connect(host, port)
    except (OSError, TimeoutError) as exc:
        log.debug("relay to %s:%s: cannot connect: %s", host, port, exc)
        writer.transport.abort()
        return
    answers = _Answers(up_reader, writer)
    sending = asyncio.ensure_future(_requests(reader, up_writer, answers))
    hangup = asyncio.ensure_future(_hung_up(writer))
    refusal = None
    try:
        # The requests end, or the answers do: the server closed, or the client is gone
        # (reset, or reading nothing), and then nothing more is sent either.
        await asyncio.wait({sending, answers.task, hangup}, return_when=asyncio.FIRST_COMPLETED)
        if hangup.done():
            answers.client_gone = True
        elif sending.done():
            refusal = sending.result()
            await answers.settle()
    finally:
        sending.cancel()
        hangup.cancel()
        answers.task.cancel()
        up_writer.transport.abort()
    if answers.client_gone:
        writer.transport.abort()
        return
    if refusal is not None:
        body = f"Refused by the sandbox relay: {refusal}.\n".encode()
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
    await _close(writer)


class Relay:
    """One relay: its listening socket and the connections it carries.

    It accepts connections itself rather than through ``asyncio.start_unix_server``, so
    that it can stop accepting while all its places for refusals are taken, and end
    every connection when it is closed.
    """

    def __init__(self, listener: socket.socket, host: str, port: int) -> None:
        self.listener = listener
        self.host, self.port = host, port
        self.carried = self.refusing = self.refused = 0
        self.logged = -LOG_EVERY
        self.room = asyncio.Event()
        self.room.set()
        self.connections: set[asyncio.Task[None]] = set()
        self.accepting = asyncio.ensure_future(self._accept())

    def close(self) -> None:
        """Stop listening and end every connection (the sandbox has stopped)."""
        self.accepting.cancel()
        self.listener.close()
        for task in list(self.connections):
            task.cancel()

    def _update(self) -> None:
        if self.carried < MAX_CONNECTIONS or self.refusing < MAX_REFUSING:
            self.room.set()
        else:
            self.room.clear()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.room.wait()
            try:
                conn, _ = await loop.sock_accept(self.listener)
            except OSError as exc:  # out of descriptors, say: try again shortly
                log.warning("relay to %s:%s: cannot accept: %s", self.host, self.port, exc)
                await asyncio.sleep(REFUSAL_PACE)
                continue
            # Counted here, before the next accept, so a flood cannot get ahead of it.
            refuse = self.carried >= MAX_CONNECTIONS
            if refuse:
                self.refusing += 1
            else:
                self.carried += 1
            self._update()
            task = asyncio.ensure_future(self._serve(conn, refuse))
            self.connections.add(task)
            task.add_done_callback(self.connections.discard)

    async def _serve(self, conn: socket.socket, refuse: bool) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_HEAD)
            if refuse:
                await self._refuse(reader, writer)
            else:
                await _relay(reader, writer, self.host, self.port)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not leave the connection or flood the log
            self._warn("failed", exc_info=True)
        finally:
            if refuse:
                self.refusing -= 1
            else:
                self.carried -= 1
            self._update()
            if writer is not None:
                with contextlib.suppress(AttributeError):  # already lost (3.11)
                    writer.transport.abort()
            else:
                conn.close()

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.refused += 1
        self._warn(f"over {MAX_CONNECTIONS} connections: refused")
        pace = asyncio.ensure_future(asyncio.sleep(REFUSAL_PACE))
        with contextlib.suppress(Exception):  # its head read first, so the answer lands
            async with asyncio.timeout(1.0):
                await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.drain()
        if writer.transport.get_write_buffer_size():
            writer.transport.abort()  # the client is not reading its answer
        else:
            writer.close()
        await pace

    def _warn(self, what: str, **kwargs: Any) -> None:
        """Log at most once per :data:`LOG_EVERY` seconds, with the refusals since."""
        now = asyncio.get_running_loop().time()
        if now - self.logged >= LOG_EVERY:
            log.warning("relay to %s:%s: %s (%d refused since the last warning)",
                        self.host, self.port, what, self.refused, **kwargs)  # fmt: skip
            self.logged, self.refused = now, 0


async def serve_http(path: Path, host: str, port: int, *, owner: int) -> Relay:
    """Listen on the Unix socket ``path`` (mode 0600, ``owner``'s) and relay to host:port."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        os.chmod(path, 0o600)
        os.chown(path, owner, -1)
        listener.listen(BACKLOG)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return Relay(listener, host, port)
