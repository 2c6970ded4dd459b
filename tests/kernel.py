"""Run code in a real kernel of a user's single-user server, through the proxy.

Tests use this to act from inside a tenant's kernel (the attacker's side): it starts a
kernel with jupyter-server's REST API and speaks the Jupyter messaging protocol over
the kernel's websocket, authenticated by the browser session's cookies.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
import websocket


@dataclass
class Execution:
    """What one ``execute_request`` produced."""

    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the code ran without raising."""
        return self.error is None


def execute_request(msg_id: str, code: str) -> str:
    """The Jupyter ``execute_request`` message (protocol 5.3) that runs ``code``, as JSON."""
    return json.dumps(
        {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "test",
                "session": uuid.uuid4().hex,
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "channel": "shell",
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        }
    )


class Kernel:
    """A kernel started on ``/user/<name>/`` and driven over its websocket."""

    def __init__(self, base_url: str, session: requests.Session, username: str) -> None:
        self.api = f"{base_url}/user/{username}/api"
        self.session = session
        # Visiting a page of the server completes its OAuth and sets its _xsrf cookie.
        session.get(f"{base_url}/user/{username}/lab", timeout=30).raise_for_status()
        xsrf = session.cookies.get("_xsrf", path=f"/user/{username}/")
        self.headers = {"X-XSRFToken": xsrf} if xsrf else {}
        response = session.post(
            f"{self.api}/kernels", json={"name": "python3"}, headers=self.headers, timeout=60
        )
        response.raise_for_status()
        self.id = response.json()["id"]
        self.ws = self._connect()

    def _connect(self) -> websocket.WebSocket:
        """Open the kernel's channels websocket with the session's cookies."""
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        ws_url = self.api.replace("http://", "ws://") + f"/kernels/{self.id}/channels"
        return websocket.create_connection(
            ws_url,
            header=[f"Cookie: {cookie}", *(f"{k}: {v}" for k, v in self.headers.items())],
            timeout=120,
        )

    def reconnect(self) -> None:
        """Open a fresh websocket, e.g. after the kernel was restarted.

        Messages sent while jupyter-server reconnects its ZMQ channels to a restarted
        kernel can be dropped, so a test that saw the kernel die waits on a new socket.
        """
        self.ws.close()
        self.ws = self._connect()

    def run(self, code: str, timeout: float = 120) -> Execution:
        """Execute ``code`` and collect its output until the kernel is idle again."""
        msg_id = uuid.uuid4().hex
        self.ws.send(execute_request(msg_id, code))
        result = Execution()
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.ws.settimeout(remaining)
            try:
                message = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                break
            if message["msg_type"] == "status" and message["content"]["execution_state"] in (
                "restarting",
                "dead",
            ):
                result.error = {"ename": "KernelDied", "evalue": "the kernel process died"}
                return result
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    result.stdout += content["text"]
                else:
                    result.stderr += content["text"]
            elif kind in ("execute_result", "display_data"):
                result.outputs.append(content)
                if kind == "execute_result":
                    result.result = content["data"].get("text/plain")
            elif kind == "error":
                result.error = content
            elif kind == "status" and content["execution_state"] == "idle":
                return result
        raise TimeoutError(f"kernel did not finish within {timeout}s")

    def close(self) -> None:
        """Close the websocket and shut the kernel down."""
        self.ws.close()
        self.session.delete(f"{self.api}/kernels/{self.id}", headers=self.headers, timeout=30)
