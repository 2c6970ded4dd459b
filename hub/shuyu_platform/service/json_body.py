"""Reading a request body as JSON within limits, and then as a declared model.

Every JSON endpoint of the platform service reads its body here, before anything is
written, debited or audited. The reader refuses, each with a clear 4xx:

* a body larger than the endpoint's model allows (413);
* bytes that are not UTF-8 or not JSON (400);
* nesting deeper than :data:`MAX_DEPTH` (400, never a ``RecursionError``);
* integers beyond ±2⁵³ (400, never Python's int-string limit or a database overflow);
* ``NaN``, ``Infinity`` and numbers too large for a float (400);
* text that is not valid Unicode: a lone surrogate such as ``"\\ud800"`` (400, never a
  ``UnicodeEncodeError`` while hashing the audit record).

What passes is checked against a pydantic model (:mod:`.request_models`): its types,
sizes and ranges; a :class:`pydantic.ValidationError` becomes a 400 naming each
offending field.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, TypeVar

from pydantic import TypeAdapter, ValidationError

#: Deepest nesting of arrays and objects accepted (a notebook needs far fewer).
MAX_DEPTH: Final[int] = 64
#: Largest integer magnitude accepted: what a double holds exactly, as JSON advises.
MAX_INT: Final[int] = 2**53
#: Most field problems listed in one refusal.
MAX_PROBLEMS: Final[int] = 5

T = TypeVar("T")


class BodyError(ValueError):
    """A body the service refuses: ``status`` for HTTP, ``message`` for a person."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _integer(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > 16 or abs(int(text)) > MAX_INT:
        raise BodyError(f"the number {text[:20]}… is too large; integers stay within ±2^53")
    return int(text)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise BodyError(f"the number {text[:20]} is too large for a float")
    return number


def _constant(text: str) -> Any:
    raise BodyError(f"{text} is not a JSON number; send finite numbers only")


def _valid_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError(
            f"{where} holds text that is not valid Unicode (a lone surrogate such as \\ud800)"
        ) from None


def check_tree(value: Any) -> None:
    """Depth and text of a parsed JSON value, walked without recursion."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "the body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            _valid_text(item, where)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise BodyError(f"the body nests deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _valid_text(key, f"a key in {where}")
                    stack.append((child, depth + 1, f"{where}.{key}"[:200]))
            else:
                stack.extend(
                    (child, depth + 1, f"{where}[{i}]"[:200]) for i, child in enumerate(item)
                )


def parse_json(raw: bytes, *, max_bytes: int) -> Any:
    """``raw`` as a JSON value within the limits above, or a :class:`BodyError`."""
    if len(raw) > max_bytes:
        raise BodyError(f"the request body is larger than {max_bytes:,} bytes", 413)
    try:
        value = json.loads(
            raw or b"null",
            parse_int=_integer,
            parse_float=_float,
            parse_constant=_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BodyError(f"the request body is not valid JSON: {err}") from None
    except RecursionError:
        raise BodyError(f"the body nests deeper than {MAX_DEPTH} levels") from None
    check_tree(value)
    return value


def describe(err: ValidationError) -> str:
    """A person's sentence for a model's refusal: each field and what is wrong with it."""
    problems = []
    for item in err.errors(include_url=False, include_input=False)[:MAX_PROBLEMS]:
        where = ".".join(str(part) for part in item["loc"]) or "the body"
        problems.append(f"{where}: {item['msg']}")
    more = err.error_count() - len(problems)
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems)


def validate(value: Any, model: TypeAdapter[T]) -> T:
    """``value`` (already JSON-checked) as ``model``, or a 400 naming the fields."""
    try:
        return model.validate_python(value)
    except ValidationError as err:
        raise BodyError(describe(err)) from None


def read(raw: bytes, model: TypeAdapter[T], *, max_bytes: int) -> T:
    """A request body as ``model``: JSON within limits, then the model's own checks."""
    return validate(parse_json(raw, max_bytes=max_bytes), model)
