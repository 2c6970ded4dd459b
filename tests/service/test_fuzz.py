"""Schemathesis against the live platform service: no 5xx, every 4xx a JSON message.

A platform of its own (real hub, proxy, service) is fuzzed from the OpenAPI document it
serves, over every operation, with bodies that fit the schema and bodies that do not,
as a user of each role and as nobody. Every answer must be below 500; a 4xx must be
``{"status", "message"}`` JSON and a 2xx strict JSON (no NaN). The run is bounded and
reproducible: ``SHUYU_FUZZ_EXAMPLES`` examples (default 3) per operation, mode and
role, derandomised, without shrinking. Deselect it with ``-m "not fuzz"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from harness import Platform, running_platform
from shuyu_platform.service import openapi

#: The hard bound: platform start-up plus about 1,100 requests on a busy 2-core machine.
pytestmark = [pytest.mark.hub, pytest.mark.fuzz, pytest.mark.timeout(1200)]

EXAMPLES = int(os.environ.get("SHUYU_FUZZ_EXAMPLES", "3"))
#: One user of each role, and nobody.
ROLES = ("alice", "rita", "sam", "ada", "audrey", "victor", None)
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform of its own: what the fuzzer files stays out of other tests' way."""
    with running_platform(tmp_path_factory.mktemp("fuzz-platform"), rows=500) as running:
        yield running


def _caller(platform: Platform, name: str | None) -> tuple[requests.Session, dict[str, str]]:
    """A browser session signed in as ``name`` with its xsrf header (nobody: no cookie).

    Sessions, not API tokens: only merchants may make tokens; the service treats both alike.
    """
    if name is None:
        return requests.Session(), {}
    return platform.service_session(name)


def judge(response: Any, path: str = "") -> str | None:
    """What is wrong with an answer, or None."""
    status = response.status_code
    if status >= 500:
        return f"answered {status}: {response.content[:300]!r}"
    kind = response.headers.get("content-type", [""])[0]
    if status < 400 and kind.startswith("text/csv") and path.endswith(".csv"):
        return None  # a CSV download (the fee statement), declared as such
    if not kind.startswith("application/json"):
        return f"answered {status} as {kind or 'no content type'}, not JSON"

    def constant(name: str) -> Any:
        raise ValueError(f"{name} in the answer")

    try:
        body = json.loads(response.content, parse_constant=constant)
    except ValueError as err:
        return f"answered {status} with a body that is not strict JSON: {err}"
    if status >= 400 and not (
        isinstance(body, dict)
        and body.get("status") == status
        and isinstance(body.get("message"), str)
        and body["message"]
    ):
        return f"answered {status} without a JSON status and message: {body!r}"[:500]
    return None


def fuzz(
    operation: Any,
    mode: GenerationMode,
    base: str,
    caller: tuple[requests.Session, dict[str, str]],
) -> tuple[int, str]:
    """Run one operation in one mode as one caller; (calls made, first problem or "")."""
    session, headers = caller
    calls = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal calls
        calls += 1
        response = case.call(base_url=base, session=session, headers=headers, timeout=120)
        problem = judge(response, case.path)
        if problem:
            raise AssertionError(problem)

    try:
        run()
    except AssertionError as err:
        return calls, str(err)
    except Unsatisfiable:
        # Nothing in the operation can be made invalid (no parameters, no body).
        assert mode == GenerationMode.NEGATIVE and not operation.body, operation.label
    return calls, ""


def test_no_operation_answers_5xx_or_a_non_json_refusal(fuzzed: Platform) -> None:
    base = f"{fuzzed.url}/services/shuyu"
    served = requests.get(f"{base}/api/openapi.json", timeout=60)
    assert served.status_code == 200
    # from_dict, not from_url: from_url leaves the document's own operation out.
    schema = schemathesis.openapi.from_dict(served.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    expected = {f"{op.method.upper()} {op.path}" for op in openapi.OPERATIONS}
    assert {op.label for op in operations} == expected
    callers = {name: _caller(fuzzed, name) for name in ROLES}
    failures: list[str] = []
    calls = 0
    for who in ROLES:
        for operation in operations:
            for mode in MODES:
                made, problem = fuzz(operation, mode, base, callers[who])
                calls += made
                if problem:
                    failures.append(
                        f"{operation.label} as {who or 'nobody'} ({mode.value}): {problem}"
                    )
    assert not failures, "\n".join(failures[:30])
    assert calls >= len(ROLES) * len(operations)
