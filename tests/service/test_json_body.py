"""The body reader and the declared models: the malformed bodies that once gave 500s.

Each case here is one of those found by fuzzing the service (deep nesting, huge
integers, a list where text is expected, lone surrogates, NaN, malformed cell outputs);
``tests/service/test_api_corpus.py`` sends the same bodies to a live service.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shuyu_platform.service import json_body
from shuyu_platform.service import request_models as models

QUERY: dict[str, Any] = {
    "dataset": "health_records",
    "epsilon": 0.5,
    "statistics": {"n": {"fn": "count"}},
}
CELLS: dict[str, Any] = {
    "kind": "cells",
    "notebook": "a.ipynb",
    "purpose": "定价",
    "cells": [
        {
            "index": 0,
            "source": "table",
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "涪城区 128\n"},
                {
                    "output_type": "execute_result",
                    "execution_count": 3,
                    "data": {"text/plain": ["a", "b"], "application/json": {"n": [1, 2]}},
                    "metadata": {},
                },
                {
                    "output_type": "display_data",
                    "data": {"text/html": "<table></table>"},
                    "metadata": {},
                    "transient": {"display_id": "d1"},
                },
                {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t"]},
            ],
        }
    ],
}


def read(declared: models.Declared[Any], raw: bytes | dict[str, Any]) -> Any:
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    return json_body.read(data, declared.adapter, max_bytes=declared.max_bytes)


def refused(declared: models.Declared[Any], raw: bytes | dict[str, Any]) -> json_body.BodyError:
    with pytest.raises(json_body.BodyError) as caught:
        read(declared, raw)
    return caught.value


def test_well_formed_bodies_pass_unchanged() -> None:
    assert read(models.DP_QUERY, QUERY).model_dump(exclude_unset=True) == QUERY
    body = read(models.NEW_EGRESS_REQUEST, CELLS).model_dump(exclude_unset=True)
    assert body == CELLS


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"[" * 30_000 + b"]" * 30_000, 400, "nests deeper than 64"),
        (b'{"a":' * 70 + b"1" + b"}" * 70, 400, "nests deeper than 64"),
        (b'{"dataset": "h", "epsilon": 1' + b"0" * 5000 + b"}", 400, "too large"),
        (b'{"dataset": "h", "epsilon": 9007199254740993}', 400, "too large"),
        (b'{"dataset": "h", "epsilon": NaN}', 400, "NaN is not a JSON number"),
        (b'{"dataset": "h", "epsilon": -Infinity}', 400, "-Infinity is not a JSON number"),
        (b'{"dataset": "h", "epsilon": 1e999}', 400, "too large for a float"),
        (b'{"dataset": "\\ud800"}', 400, "not valid Unicode"),
        (b'{"\\udfff": 1}', 400, "not valid Unicode"),
        (b'{"dataset": "\xff"}', 400, "not valid JSON"),
        (b"{", 400, "not valid JSON"),
        (b"x" * (70 * 1024), 413, "larger than 65,536 bytes"),
    ],
)
def test_the_reader_refuses_what_once_crashed(raw: bytes, status: int, message: str) -> None:
    err = refused(models.DP_QUERY, raw)
    assert err.status == status and message in err.message


@pytest.mark.parametrize(
    ("declared", "body", "message"),
    [
        (models.DP_QUERY, {**QUERY, "dataset": ["h"]}, "dataset: Input should be a valid string"),
        (models.DP_QUERY, {**QUERY, "dataset": {"a": 1}}, "dataset: Input should be a valid"),
        (models.DP_QUERY, {**QUERY, "epsilon": True}, "epsilon"),
        (models.DP_QUERY, {**QUERY, "epsilon": "0.5"}, "epsilon"),
        (models.DP_QUERY, {**QUERY, "epsilon": 0}, "greater than 0"),
        (models.DP_QUERY, {**QUERY, "extra": 1}, "extra: Extra inputs are not permitted"),
        (
            models.DP_QUERY,
            {**QUERY, "filters": [{"column": ["a"], "op": "==", "value": 1}]},
            "filters.0.column",
        ),
        (models.DP_QUERY, {**QUERY, "statistics": {}}, "statistics"),
        (
            models.APPLICATION_DECISION,
            {"action": "approve", "comment": ["x"]},
            "action: Input should be",
        ),
        (models.EGRESS_DECISION, {"action": "approve"}, "snapshot_sha256: Field required"),
        (
            models.EGRESS_DECISION,
            {"action": "approve", "snapshot_sha256": "ab"},
            "snapshot_sha256: String should match",
        ),
        (models.BLOCKED, {"route": {"x": 1}}, "route: Input should be a valid string"),
        (
            models.NEW_EGRESS_REQUEST,
            {**CELLS, "cells": [{"index": 0, "outputs": [[1]]}]},
            "cells.0.outputs.0",
        ),
        (
            models.NEW_EGRESS_REQUEST,
            {**CELLS, "cells": [{"index": 0, "outputs": [{"output_type": "bogus"}]}]},
            "cells.0.outputs.0",
        ),
        (
            models.NEW_EGRESS_REQUEST,
            {
                **CELLS,
                "cells": [
                    {
                        "index": 0,
                        "outputs": [{"output_type": "display_data", "data": {"text/html": {}}}],
                    }
                ],
            },
            "text/html must hold text",
        ),
        (
            models.NEW_EGRESS_REQUEST,
            {
                **CELLS,
                "cells": [
                    {"index": 0, "outputs": [{"output_type": "stream", "name": 1, "text": "x"}]}
                ],
            },
            "cells.0.outputs.0.stream.name",
        ),
        (models.NEW_EGRESS_REQUEST, {**CELLS, "kind": "zip"}, "kind"),
        (models.EGRESS_CONTENT, {"kind": "file", "path": "a", "data_b64": "%%%"}, "data_b64"),
    ],
)
def test_the_models_refuse_wrong_shapes(
    declared: models.Declared[Any], body: dict[str, Any], message: str
) -> None:
    err = refused(declared, body)
    assert err.status == 400 and message in err.message, err.message


def test_an_application_with_nan_epsilon_is_refused() -> None:
    body = {
        "scenario": "s",
        "purpose": "p",
        "method": "m",
        "security_measures": "x",
        "nature": "commercial",
        "period_start": "2027-01-01",
        "period_end": "2027-02-01",
        "datasets": [{"dataset": "health_records", "epsilon": 1}],
    }
    assert read(models.APPLICATION, body).datasets[0].epsilon == 1
    raw = json.dumps(body).replace('"epsilon": 1', '"epsilon": NaN').encode()
    assert "NaN" in refused(models.APPLICATION, raw).message


def test_refusals_list_a_few_problems_and_never_echo_the_input() -> None:
    secret = "x" * 300
    body = {
        "dataset": 1,
        "epsilon": secret,
        "alpha": secret,
        "filters": secret,
        "group_by": 5,
        "statistics": 1,
        "dry_run": secret,
    }
    message = refused(models.DP_QUERY, body).message
    assert secret not in message and "more" in message


def test_an_empty_body_is_an_empty_object_only_where_declared() -> None:
    assert models.EMPTY.may_be_empty and not models.EGRESS_DECISION.may_be_empty
    assert "valid dictionary" in refused(models.EGRESS_DECISION, b"").message
