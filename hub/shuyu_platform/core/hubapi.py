"""The ``shuyu`` command's client of the hub's REST API (as the shuyu-operator service)."""

from __future__ import annotations

from urllib.parse import quote

import requests

from .roles import OPERATOR_SERVICE, tenant_group
from .settings import Shuyu

TIMEOUT = 30


class HubUnavailable(RuntimeError):
    """The hub is not running or does not answer."""


class HubClient:
    """Calls to the hub API with the operator token written at hub start-up."""

    def __init__(self, settings: Shuyu) -> None:
        token_file = settings.zone("hub") / "operator-api-token"
        if not token_file.exists():
            raise HubUnavailable("the hub has never started here (no operator token yet)")
        self.base = f"http://127.0.0.1:{settings.hub_port}/hub/api"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token_file.read_text().strip()}"

    def _call(self, method: str, path: str) -> requests.Response:
        try:
            response = self.session.request(method, f"{self.base}/{path}", timeout=TIMEOUT)
        except requests.ConnectionError as exc:
            raise HubUnavailable(f"the hub does not answer at {self.base}") from exc
        if response.status_code >= 400 and response.status_code != 404:
            raise HubUnavailable(
                f"the hub refused {method} {path} for {OPERATOR_SERVICE}: "
                f"{response.status_code} {response.text[:200]}"
            )
        return response

    def stop_tenant_servers(self, tenant: str) -> list[str]:
        """Stop every running server of the tenant's users; return 'user/server' names."""
        group = self._call("GET", f"groups/{quote(tenant_group(tenant))}")
        if group.status_code == 404:
            return []
        stopped = []
        for name in group.json().get("users", []):
            user = self._call("GET", f"users/{quote(name)}").json()
            for server_name in user.get("servers", {}):
                path = f"users/{quote(name)}/servers/{quote(server_name)}"
                self._call("DELETE", path if server_name else f"users/{quote(name)}/server")
                stopped.append(f"{name}/{server_name}" if server_name else name)
        return stopped

    def servers(self) -> dict[str, list[str]]:
        """Each user's running servers (``""`` is the default one), users without any left out."""
        users = self._call("GET", "users?state=active").json()
        return {u["name"]: sorted(u.get("servers", {})) for u in users if u.get("servers")}

    def stop_server(self, name: str) -> None:
        """Stop ``name``'s default server."""
        self._call("DELETE", f"users/{quote(name)}/server")
