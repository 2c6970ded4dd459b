"""JupyterHub's own pages read Chinese first and name nothing internal: the login page,
the home page, the API token page, the error pages (a 404 and a refusal), over HTTP from
the session's running hub; the pages of a sandbox starting or not running, which a
request cannot hold still, rendered by the hub's template loader as the hub renders them."""

from __future__ import annotations

import re

import pytest

from harness import Platform, VisibleText, render_hub_template

#: A run of Chinese characters.
CHINESE = re.compile(r"[\u4e00-\u9fff]")
#: Latin words (two letters or more).
LATIN = re.compile(r"[A-Za-z]{2,}")
#: What a person should never read on a hub page: the software's and its parts' names,
#: services' and OAuth clients' identifiers, scopes.
INTERNAL = re.compile(
    r"Jupyter|jupyterhub-user-|service-shuyu|spawner|named server|admin-ui|access:|:\w+!",
    re.IGNORECASE,
)


def _problems(html: str, allowed: set[str]) -> list[str]:
    """Why ``html``'s visible text does not read Chinese first: the first text that is
    not, any text with Latin words and no Chinese (other than ``allowed``, such as the
    person's own name), and any internal name."""
    parser = VisibleText()
    parser.feed(html)
    assert parser.text, "no visible text"
    problems = []
    if not CHINESE.match(parser.text[0]):
        problems.append(f"starts with {parser.text[0]!r}")
    for text in parser.text:
        if LATIN.search(text) and not CHINESE.search(text) and text not in allowed:
            problems.append(f"English only: {text!r}")
        if INTERNAL.search(text):
            problems.append(f"internal name: {text!r}")
    return problems


@pytest.mark.hub
def test_the_hubs_pages_read_chinese_first(platform: Platform) -> None:
    signed_out = platform.login("alice").__class__()  # a fresh session, not signed in
    login = signed_out.get(f"{platform.url}/hub/login", timeout=30)
    assert login.status_code == 200
    pages: dict[str, tuple[int, str]] = {"login": (200, login.content.decode())}
    failed = signed_out.post(  # a wrong password: the refusal is in the catalogue too
        f"{platform.url}/hub/login",
        data={
            "username": "alice",
            "password": "wrong",
            "_xsrf": signed_out.cookies.get("_xsrf", ""),
        },
        timeout=30,
    )
    pages["wrong password"] = (failed.status_code, failed.content.decode())

    alice = platform.login("alice")
    for name, path in [("home", "home"), ("token", "token"), ("404", "no-such-page"),
                       ("refusal", "admin")]:  # fmt: skip
        answer = alice.get(f"{platform.url}/hub/{path}", timeout=30)
        pages[name] = (answer.status_code, answer.content.decode())
    assert {name: status for name, (status, _) in pages.items()} == {
        "login": 200, "wrong password": 403, "home": 200, "token": 200, "404": 404,
        "refusal": 403,
    }  # fmt: skip
    assert "用户名或密码错误" in pages["wrong password"][1]
    assert "未找到 Not Found" in pages["404"][1] and "无权操作" in pages["refusal"][1]
    assert "API 令牌 API tokens" in pages["token"][1]
    problems = {name: _problems(html, {"alice"}) for name, (_, html) in pages.items()}
    assert not any(problems.values()), problems


@pytest.mark.parametrize(
    ("template", "context"),
    [
        ("spawn_pending.html", {}),
        ("not_running.html", {"spawn_url": "/hub/spawn/alice"}),
        ("not_running.html", {"failed": True, "failed_message": "Spawn failed: timeout"}),
    ],
)
def test_a_sandbox_starting_or_stopped_reads_chinese_first(template: str, context: dict) -> None:
    html = render_hub_template(template, **context)
    problems = _problems(html, {"alice", "Spawn failed: timeout"})
    assert not problems, problems
