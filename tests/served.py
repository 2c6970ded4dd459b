"""Serve the platform service's tornado application on a free port in a thread of its
own, for tests that speak real HTTP to it without a hub (routes that need no hub login)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tornado.httpserver import HTTPServer

from harness import free_port
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.service.app import make_app

PREFIX = "/services/shuyu/"


@contextlib.contextmanager
def serving(settings: Shuyu, *, metrics: bool = True) -> Iterator[str]:
    """The service's base URL (with its prefix) while the block runs; without
    ``metrics``, requests are logged as tornado does by default and not counted."""
    app = make_app(settings, PREFIX)
    if not metrics:
        del app.settings["log_function"]
    port = free_port()
    ready = threading.Event()
    state: dict[str, asyncio.AbstractEventLoop | asyncio.Event] = {}

    async def run() -> None:
        server = HTTPServer(app)
        server.listen(port, "127.0.0.1")
        stop = asyncio.Event()
        state["loop"], state["stop"] = asyncio.get_running_loop(), stop
        ready.set()
        await stop.wait()
        server.stop()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield f"http://127.0.0.1:{port}{PREFIX}"
    finally:
        loop, stop = state["loop"], state["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
