"""What the hub's own page templates (``templates/hub/``) get besides JupyterHub's
context: Shuyu's name, the message catalogue's ``_`` and ``china_time``, and words for
the services and OAuth clients the hub would otherwise show by their internal names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .. import messages
from . import roles

#: The hub's services as the navigation and the token page name them (catalogue ids).
SERVICE_TITLES: Final[dict[str, str]] = {
    roles.SERVICE_NAME: "Shuyu platform",
    roles.DASHBOARDS_SERVICE: "Dashboards",
}


def client_title(identifier: str) -> str:
    """An OAuth client of the hub (``service-shuyu``, ``jupyterhub-user-alice``) for a
    person: the service's title, or "your sandbox" for one's own server."""
    if identifier.startswith("service-"):
        return messages.text(SERVICE_TITLES.get(identifier.removeprefix("service-"), "Service"))
    if identifier.startswith("jupyterhub-user-"):
        return messages.text("Your sandbox")
    return messages.text("Application")


def template_vars() -> dict[str, Any]:
    """``c.JupyterHub.template_vars`` of the platform. JupyterHub calls a callable value
    with the signed-in user and passes on what it returns: each function is wrapped."""
    functions = {"client_title": client_title, **messages.template_globals()}
    return {
        "shuyu_name": "数域 Shuyu",
        "service_titles": SERVICE_TITLES,
        **{name: _given(function) for name, function in functions.items()},
    }


def _given(function: Callable[..., Any]) -> Callable[[Any], Callable[..., Any]]:
    """A template variable JupyterHub turns into ``function`` (see :func:`template_vars`)."""
    return lambda _user: function
