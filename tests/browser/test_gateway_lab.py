"""JupyterLab works in a real browser through the egress gateway, and nothing it asks is refused.

bob signs in, JupyterLab loads (its assets from the image, its configuration from the
server), he opens a notebook, runs a cell over the v1 kernel websocket protocol and sees
the output. Every request JupyterLab makes on the way must be on the gateway's
allow-list: no ``egress.blocked`` record appears for bob, and the bytes he received are
metered.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from harness import Platform

pytestmark = [pytest.mark.hub, pytest.mark.browser]

NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    "cells": [
        {
            "cell_type": "code",
            "id": "a",
            "metadata": {},
            "execution_count": None,
            "source": "print('gateway', 6 * 7)",
            "outputs": [],
        }
    ],
}


def test_jupyterlab_opens_and_runs_a_notebook_through_the_gateway(page, platform: Platform) -> None:
    session = platform.login("bob")
    platform.start_server(session, "bob")
    base = f"{platform.url}/user/bob"
    session.get(f"{base}/lab", timeout=30).raise_for_status()
    xsrf = session.cookies.get("_xsrf", path="/user/bob/")
    saved = session.put(
        f"{base}/api/contents/gateway-lab.ipynb",
        json={"type": "notebook", "content": NOTEBOOK},
        headers={"X-XSRFToken": xsrf},
        timeout=30,
    )
    assert saved.status_code in (200, 201), saved.text
    blocked = len(platform.audit_events("egress.blocked", actor="bob"))

    failed: list[str] = []
    page.on(
        "response",
        lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    kernel_frames: list[bytes] = []

    def watch(ws) -> None:
        """Note closes of every websocket, and the frames of the kernel's."""
        ws.on("close", lambda _ws: failed.append(f"closed {ws.url}"))
        if "/channels" in ws.url:
            ws.on(
                "framereceived",
                lambda p: kernel_frames.append(p if isinstance(p, bytes) else p.encode()),
            )

    page.on("websocket", watch)
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "bob")
    page.fill("#password_input", "bob-demo-2026")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/user/bob/lab"), timeout=90_000)
    page.goto(f"{base}/lab/tree/gateway-lab.ipynb")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    # The kernel's websocket is open once its kernel_info_reply came back through the
    # gateway; a cell run before that is not sent at all.
    deadline = time.monotonic() + 120
    while not any(b'"kernel_info_reply"' in frame for frame in kernel_frames):
        assert time.monotonic() < deadline, f"no kernel_info_reply through the gateway: {failed}"
        page.wait_for_timeout(250)
    page.click(".jp-Notebook .jp-Cell .jp-InputArea-editor")
    page.keyboard.press("Shift+Enter")
    try:
        page.wait_for_selector("text=gateway 42", timeout=180_000)
    finally:
        print("\n".join(failed))
    assert not [f for f in failed if f.startswith(("403", "429", "502"))], failed
    records = platform.audit_events("egress.blocked", actor="bob")[blocked:]
    assert records == [], json.dumps([r["detail"] for r in records], ensure_ascii=False)
