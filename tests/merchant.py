"""A merchant's logged-in browser session on its running server, as the tests drive it."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from harness import Platform
from kernel import Kernel


@dataclass
class Merchant:
    """A merchant's logged-in session on its running server, with its kernel."""

    name: str
    session: requests.Session
    base: str
    headers: dict[str, str]
    kernel: Kernel

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return self.session.request(
            method,
            f"{self.base}/{path}",
            headers=self.headers,
            allow_redirects=False,
            timeout=30,
            **kwargs,  # type: ignore[arg-type]
        )


def start(platform: Platform, name: str) -> Merchant:
    session = platform.login(name)
    platform.start_server(session, name)
    kernel = Kernel(platform.url, session, name)  # completes the server's OAuth, sets _xsrf
    xsrf = session.cookies.get("_xsrf", path=f"/user/{name}/")
    return Merchant(name, session, f"{platform.url}/user/{name}", {"X-XSRFToken": xsrf}, kernel)
