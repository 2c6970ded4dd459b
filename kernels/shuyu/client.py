"""HTTP access from a kernel to the platform service."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import requests

TIMEOUT = 30


class PlatformError(RuntimeError):
    """The platform refused or failed a request; the message is the platform's own."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _base_url() -> str:
    url = os.environ.get("SHUYU_API_URL")
    if not url:
        raise PlatformError(0, "SHUYU_API_URL is not set: this kernel is not in a Shuyu sandbox")
    return url.rstrip("/") + "/"


def get(path: str, **params: Any) -> Any:
    """GET ``path`` (relative to the platform API) and return its JSON body."""
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    response = requests.get(
        _base_url() + path.lstrip("/"),
        params=params,
        headers={"Authorization": f"token {token}"},
        timeout=TIMEOUT,
    )
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise PlatformError(response.status_code, message)
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
