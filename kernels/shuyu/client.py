"""HTTP access from a kernel to the platform service."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import requests

TIMEOUT = 30


class PlatformError(RuntimeError):
    """The platform refused or failed a request; the message is the platform's own."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        """The error's JSON body, when the platform sent one."""


def _base_url() -> str:
    url = os.environ.get("SHUYU_API_URL")
    if not url:
        raise PlatformError(0, "SHUYU_API_URL is not set: this kernel is not in a Shuyu sandbox")
    return url.rstrip("/") + "/"


def get(path: str, **params: Any) -> Any:
    """GET ``path`` (relative to the platform API) and return its JSON body."""
    return _call("GET", path, params=params)


def post(path: str, body: Any, timeout: float = 300) -> Any:
    """POST ``body`` as JSON to ``path`` and return the JSON answer."""
    return _call("POST", path, json=body, timeout=timeout)


def _call(method: str, path: str, timeout: float = TIMEOUT, **kwargs: Any) -> Any:
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    response = requests.request(
        method,
        _base_url() + path.lstrip("/"),
        headers={"Authorization": f"token {token}"},
        timeout=timeout,
        **kwargs,
    )
    if response.status_code >= 400:
        try:
            body = response.json()
            message = body.get("message", response.text)
        except (ValueError, AttributeError):
            body, message = None, response.text
        raise PlatformError(response.status_code, message, body)
    return response.json()


def catalogue() -> pd.DataFrame:
    """One row per dataset of the public catalogue."""
    body = get("api/catalogue")
    rows = [
        {k: v for k, v in entry.items() if k != "fields"} | {"fields": len(entry["fields"])}
        for entry in body["datasets"]
    ]
    return pd.DataFrame(rows)


def dataset(name: str) -> pd.DataFrame:
    """The catalogue's field list of one dataset (names, grades, masking), no data."""
    entry = get(f"api/catalogue/{name}")
    return pd.DataFrame(entry["fields"])
