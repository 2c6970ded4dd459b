"""The OpenAPI document: valid OpenAPI 3.1, current in docs/, and covering every API route."""

from __future__ import annotations

import json
import re
from pathlib import Path

from openapi_spec_validator import validate
from tornado import web

from harness import REPO
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.service import openapi
from shuyu_platform.service.app import make_app

PREFIX = "/services/shuyu/"
SAMPLES = {"dataset": "health_records", "version": "2"}
METHODS = ("get", "post", "put", "patch", "delete")


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.document()
    assert document["openapi"] == "3.1.0"
    validate(document)
    every = [op for path in document["paths"].values() for op in path.values()]
    assert all("4XX" in op["responses"] for op in every)


def test_the_committed_copy_is_current() -> None:
    committed = (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == openapi.text(), (
        "docs/openapi.json is stale: run "
        "`.venv/bin/python -m shuyu_platform.service.openapi > docs/openapi.json`"
    )


def _api_routes(settings: Shuyu) -> list[tuple[re.Pattern[str], str]]:
    """(path regex, method) of every JSON API handler of the service."""
    app = make_app(settings, PREFIX)
    found = []
    for rule in app.default_router.rules:
        for inner in getattr(rule.target, "rules", []):
            pattern = inner.matcher.regex.pattern
            if f"{PREFIX}api/" not in pattern.replace("\\", ""):
                continue
            handler = inner.target
            for method in METHODS:
                if getattr(handler, method) is not getattr(web.RequestHandler, method):
                    found.append((inner.matcher.regex, method))
    return found


def _sample(path: str) -> str:
    return PREFIX.rstrip("/") + re.sub(
        r"\{(\w+)\}", lambda m: SAMPLES.get(m.group(1), "0" * 32), path
    )


def test_every_api_route_is_documented_and_nothing_else(settings: Shuyu) -> None:
    routes = _api_routes(settings)
    assert len(routes) > 20
    documented = [(op.method, _sample(op.path)) for op in openapi.OPERATIONS]
    for regex, method in routes:
        assert any(m == method and regex.fullmatch(p) for m, p in documented), (
            f"{method.upper()} {regex.pattern} is not in the OpenAPI document"
        )
    for method, path in documented:
        assert any(m == method and r.fullmatch(path) for r, m in routes), (
            f"{method.upper()} {path} is documented but the service has no such route"
        )


def test_every_body_schema_forbids_unknown_keys() -> None:
    schemas = openapi.document()["components"]["schemas"]
    objects = {
        name: schema
        for name, schema in schemas.items()
        if schema.get("type") == "object" and "properties" in schema and name != "Error"
    }
    assert objects
    for name, schema in objects.items():
        assert schema.get("additionalProperties") is False, name


def test_the_document_names_the_limits(tmp_path: Path) -> None:
    text = json.dumps(openapi.document())
    for limit in ('"maxLength": 4000', '"exclusiveMinimum": 0', '"maxItems": 50'):
        assert limit in text, limit
