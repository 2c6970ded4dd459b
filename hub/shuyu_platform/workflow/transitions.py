"""What the platform's review workflows share: errors, text fields, the transition check.

Egress requests (:mod:`~shuyu_platform.egress.requests`), scenario applications
(:mod:`.applications`) and
merchant registrations (:mod:`.onboarding`) are each a state machine whose allowed
transitions live in one table (``TRANSITIONS``: status -> {action: next status}). Their
errors carry the HTTP status the service answers with, and their free-text fields are
checked the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class WorkflowError(ValueError):
    """A request or transition that cannot be made; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def text_field(
    body: Mapping[str, Any],
    key: str,
    *,
    limit: int,
    required: bool = True,
    error: type[WorkflowError] = WorkflowError,
) -> str:
    """``body[key]`` stripped: text of at most ``limit`` characters, non-empty if required."""
    value = body.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise error(f"{key} must be a non-empty text")
    if len(value) > limit:
        raise error(f"{key} is longer than {limit} characters")
    return value.strip()


def next_status(
    transitions: Mapping[str, Mapping[str, str]],
    status: str,
    action: str,
    subject: str,
    error: type[WorkflowError] = WorkflowError,
) -> str:
    """The status ``action`` leads to from ``status``, or a 409 naming what is allowed."""
    allowed = transitions.get(status, {})
    if action not in allowed:
        can = ", ".join(allowed) or "nothing (final)"
        raise error(f"{subject} is {status}: '{action}' is not allowed (allowed: {can})", 409)
    return allowed[action]
