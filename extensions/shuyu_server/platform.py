"""The single-user server's calls to the platform service, with the server's own hub token.

The sandbox reaches the platform through the one relay the spawner gives it
(``SHUYU_API_URL``); the server's ``JUPYTERHUB_API_TOKEN`` identifies its user there.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tornado import httpclient


class PlatformError(RuntimeError):
    """The platform refused a call or could not be reached; ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


async def call(method: str, path: str, body: Any = None, *, timeout: float = 60) -> Any:
    """Send ``body`` as JSON to the platform API ``path``; return the JSON answer."""
    url = os.environ.get("SHUYU_API_URL", "").rstrip("/")
    if not url:
        raise PlatformError(0, "this server is not in a Shuyu sandbox (SHUYU_API_URL is unset)")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    try:
        response = await httpclient.AsyncHTTPClient().fetch(
            f"{url}/{path.lstrip('/')}",
            method=method,
            body=None if body is None else json.dumps(body),
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
            request_timeout=timeout,
            raise_error=False,
        )
    except OSError as err:
        raise PlatformError(0, f"the platform service cannot be reached: {err}") from None
    try:
        answer = json.loads(response.body or b"null")
    except ValueError:
        answer = None
    if response.code >= 400 or response.code == 599:
        message = answer.get("message") if isinstance(answer, dict) else None
        raise PlatformError(response.code, message or response.reason or "no answer")
    return answer
