"""The hub's pages say the words JupyterHub's own scripts write Chinese first, in chromium.

JupyterHub's script on the page of a sandbox starting writes the hub's progress messages
("Server requested", "Server ready at ...", "Spawn failed: ...") and its stop button's
words in English, and so does the home page's script after stopping a sandbox; the
platform's templates say them through the catalogue as they appear. Each page is the
hub's template rendered as the hub renders it, without the stock scripts' network (an
event stream a test cannot hold still); the test writes into the page exactly what
those scripts write, the way they write it, and reads what a person sees.
"""

from __future__ import annotations

import re

import pytest

from harness import render_hub_template

pytestmark = pytest.mark.browser

#: What JupyterHub's script does with a progress event (message, html_message, button).
WRITES = {
    "message": "document.getElementById('progress-message').textContent = {0!r}",
    "html": "document.getElementById('progress-message').innerHTML = {0!r}",
    "log": (
        "var d = document.createElement('div'); d.className = 'progress-log-event';"
        "d.innerHTML = {0!r}; document.getElementById('progress-log').appendChild(d)"
    ),
    "button": "document.getElementById('stop-server-btn').textContent = {0!r}",
    "status": "document.getElementById('stop-server-status').textContent = {0!r}",
}


def _page_without_network(html: str) -> str:
    """The rendered page minus the scripts it loads (RequireJS and the stock modules)."""
    return re.sub(r"<script[^>]*\bsrc=[^>]*>\s*</script>", "", html)


@pytest.mark.parametrize(
    ("write", "english", "chinese"),
    [
        ("message", "Server requested", "已请求启动沙箱"),
        ("message", "Spawning server...", "正在启动您的沙箱"),
        ("html", 'Server ready at <a href="/user/alice/">/user/alice/</a>', "您的沙箱已就绪"),
        ("log", 'Server ready at <a href="/user/alice/">/user/alice/</a>', "您的沙箱已就绪"),
        ("message", "Spawn failed: timeout", "您的沙箱未能启动："),
        ("message", "Spawn failed", "您的沙箱未能启动。"),
        ("button", "Stopping...", "正在停止"),
        ("button", "Stop Server", "停止我的沙箱"),
        ("status", "Server stopped successfully!", "您的沙箱已停止"),
        ("status", "Error stopping server: 403", "无法停止您的沙箱："),
    ],
)
def test_the_hubs_progress_words_read_chinese_first(
    page, write: str, english: str, chinese: str
) -> None:
    page.set_content(_page_without_network(render_hub_template("spawn_pending.html")))
    page.evaluate(WRITES[write].format(english))
    target = {
        "message": "#progress-message",
        "html": "#progress-message",
        "log": ".progress-log-event",
        "button": "#stop-server-btn",
        "status": "#stop-server-status",
    }[write]
    page.wait_for_function(
        "([sel, want]) => document.querySelector(sel).textContent.startsWith(want)",
        arg=[target, chinese],
        timeout=5000,
    )
    shown = page.locator(target).first.text_content() or ""
    assert shown.startswith(chinese), shown
    if ": " in english:  # what the hub said after its words is kept, last
        assert shown.endswith(" " + english.split(": ", 1)[1]), shown


def test_a_message_of_the_sandbox_itself_is_left_as_it_comes(page) -> None:
    page.set_content(_page_without_network(render_hub_template("spawn_pending.html")))
    page.evaluate(WRITES["message"].format("正在准备工作目录 Preparing the work folder"))
    page.wait_for_timeout(200)
    assert page.locator("#progress-message").text_content() == (
        "正在准备工作目录 Preparing the work folder"
    )


def test_the_home_pages_button_after_stopping_reads_chinese_first(page) -> None:
    home = render_hub_template(
        "home.html", default_server={"active": True}, url="/user/alice/", user_server_name=""
    )
    page.set_content(_page_without_network(home))
    # what JupyterHub's home script does once the stop succeeded
    page.evaluate(
        "var b = document.getElementById('start'); b.setAttribute('title', 'Your server is "
        "stopping'); b.textContent = 'Start My Server';"
        "b.setAttribute('title', 'Start your default server')"
    )
    page.wait_for_function(
        "document.getElementById('start').textContent.startsWith('启动我的沙箱')", timeout=5000
    )
    start = page.locator("#start")
    assert (start.get_attribute("title") or "").startswith("启动我的沙箱")
