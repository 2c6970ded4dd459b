"""The platform service's API as an OpenAPI 3.1 document, generated from its models.

:data:`OPERATIONS` lists every JSON operation of the service: its method and path, who
may call it, its declared body (:mod:`.request_models`) and its query parameters. The
document is served at ``/services/shuyu/api/openapi.json`` (open to anyone, as it
describes the interface and holds no data) and kept in ``docs/openapi.json``; a test
checks that the copy, the document and the service's routes agree. Regenerate the
copy with ``python -m shuyu_platform.service.openapi > docs/openapi.json``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter

from .. import __version__
from .base import ApiHandler
from .request_models import (
    APPLICATION,
    APPLICATION_DECISION,
    BLOCKED,
    DP_MODEL,
    DP_QUERY,
    EGRESS_CONTENT,
    EGRESS_DECISION,
    EMPTY,
    IMPORT_DECISION,
    IMPORT_REQUEST,
    JOB_SUBMISSION,
    NEW_EGRESS_REQUEST,
    REGISTRATION,
    REGISTRATION_DECISION,
    WITHDRAW_VERSION,
    AuditQuery,
    Body,
    Declared,
    StatementQuery,
    VolumesQuery,
)

#: Where the API lives behind the hub's proxy.
SERVER: Final[str] = "/services/shuyu"
ID: Final[dict[str, Any]] = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
DATASET: Final[dict[str, Any]] = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}


class GrantsQuery(Body):
    """``GET api/grants``: whose grants (overseers only), and whether ended ones too."""

    tenant: str = ""
    all: str = ""


class EgressListQuery(Body):
    """``GET api/egress/requests``: only requests in this status."""

    status: str = ""


class EgressRequestQuery(Body):
    """``GET api/egress/requests/<id>``: ``content=1`` adds the frozen content for its
    requester (reviewers always get it)."""

    content: str = ""


@dataclass(frozen=True)
class Operation:
    """One JSON operation of the service."""

    method: str
    path: str
    summary: str
    who: str
    body: Declared[Any] | None = None
    query: type[BaseModel] | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: bool = False
    public: bool = False
    media: str = "application/json"


OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation("get", "/api/openapi.json", "This document.", "anyone", public=True),
    Operation("get", "/api/catalogue", "The dataset catalogue.", "any signed-in user"),
    Operation(
        "get",
        "/api/catalogue/{dataset}",
        "One catalogue entry.",
        "any signed-in user",
        params={"dataset": DATASET},
    ),
    Operation("get", "/api/products", "The public product register.", "anyone", public=True),
    Operation(
        "get",
        "/api/products/checkpoints",
        "Every signed checkpoint of the audit chain, and the key that signs them.",
        "anyone",
        public=True,
    ),
    Operation(
        "get",
        "/api/grants",
        "A tenant's grants and the state of its views.",
        "merchant; administrator or auditor with ?tenant=",
        query=GrantsQuery,
    ),
    Operation("get", "/api/audit/events", "Audit events, filtered.", "auditor", query=AuditQuery),
    Operation("get", "/api/audit/verify", "Verify the audit chain.", "auditor"),
    Operation("post", "/api/dp/query", "Preview or answer a DP query.", "merchant", body=DP_QUERY),
    Operation("post", "/api/dp/models", "Preview or fit a DP model.", "merchant", body=DP_MODEL),
    Operation("get", "/api/dp/budget", "The tenant's ε budgets.", "merchant"),
    Operation("get", "/api/dp/releases", "The tenant's released answers.", "merchant"),
    Operation(
        "get",
        "/api/dp/releases/{release_id}",
        "One released answer.",
        "merchant",
        params={"release_id": ID},
    ),
    Operation(
        "post",
        "/api/egress/blocked",
        "Record a download a server refused.",
        "merchant (its server)",
        body=BLOCKED,
        created=True,
    ),
    Operation(
        "get",
        "/api/egress/requests",
        "Export requests: the tenant's, or all for reviewers.",
        "merchant, reviewer",
        query=EgressListQuery,
    ),
    Operation(
        "post",
        "/api/egress/requests",
        "File an export request (cells, a file or a dashboard).",
        "merchant",
        body=NEW_EGRESS_REQUEST,
        created=True,
    ),
    Operation(
        "get",
        "/api/egress/requests/{request_id}",
        "One export request (with its content, for reviewers; for its requester with content=1).",
        "merchant, reviewer",
        params={"request_id": ID},
        query=EgressRequestQuery,
    ),
    Operation(
        "post",
        "/api/egress/requests/{request_id}/decision",
        "A reviewer's decision on the snapshot they saw.",
        "reviewer",
        body=EGRESS_DECISION,
        params={"request_id": ID},
    ),
    Operation(
        "post",
        "/api/egress/requests/{request_id}/resubmit",
        "New content for a request sent back for changes.",
        "merchant",
        body=EGRESS_CONTENT,
        params={"request_id": ID},
    ),
    Operation(
        "get",
        "/api/egress/requests/{request_id}/release",
        "A released request's manifest and provenance.",
        "merchant, reviewer",
        params={"request_id": ID},
    ),
    Operation(
        "post",
        "/api/egress/requests/{request_id}/unpublish",
        "Take a published dashboard off.",
        "merchant, administrator",
        body=EMPTY,
        params={"request_id": ID},
    ),
    Operation(
        "get",
        "/api/egress/volumes",
        "The largest daily output volumes from servers to browsers, largest first.",
        "reviewer, auditor",
        query=VolumesQuery,
    ),
    Operation(
        "get",
        "/api/egress/volume",
        "The signed-in user's own output today (bytes) and the daily cap.",
        "any signed-in user",
    ),
    Operation(
        "get", "/api/jobs", "Sealed production runs: the tenant's, or all.", "merchant, reviewer"
    ),
    Operation(
        "post",
        "/api/jobs",
        "Submit code to run sealed on the production inputs of the tenant's grants.",
        "merchant",
        body=JOB_SUBMISSION,
        created=True,
    ),
    Operation(
        "get",
        "/api/jobs/{job_id}",
        "One job: status, exit code, duration, resource use, its export request.",
        "merchant, reviewer",
        params={"job_id": ID},
    ),
    Operation(
        "post",
        "/api/jobs/{job_id}/cancel",
        "Cancel a queued or running job.",
        "merchant, administrator",
        body=EMPTY,
        params={"job_id": ID},
    ),
    Operation(
        "get",
        "/api/jobs/{job_id}/logs",
        "A job's log, once its export request is released.",
        "merchant, reviewer",
        params={"job_id": ID},
    ),
    Operation("get", "/api/applications", "Scenario applications one may see.", "any role"),
    Operation(
        "post",
        "/api/applications",
        "Apply for a scenario.",
        "merchant",
        body=APPLICATION,
        created=True,
    ),
    Operation(
        "get",
        "/api/applications/{application_id}",
        "One application with its decisions.",
        "any role that may see it",
        params={"application_id": ID},
    ),
    Operation(
        "post",
        "/api/applications/{application_id}/decision",
        "A decision on an application.",
        "compliance or source reviewer; the applicant withdraws",
        body=APPLICATION_DECISION,
        params={"application_id": ID},
    ),
    Operation(
        "get", "/api/supply", "Every dataset's raw versions and rebuilds.", "administrator, auditor"
    ),
    Operation(
        "get",
        "/api/supply/{dataset}",
        "One dataset's raw versions and the progress of its rebuilds.",
        "administrator, auditor, the dataset's source-department account",
        params={"dataset": DATASET},
    ),
    Operation(
        "put",
        "/api/supply/{dataset}",
        "Supply a new raw version: the request body is the file (CSV or Parquet, named by "
        "?filename=), validated against the policy, stored, made current; views and twin "
        "rebuild in the background.",
        "the dataset's source-department account (hub API token)",
        params={"dataset": DATASET},
        created=True,
    ),
    Operation(
        "post",
        "/api/supply/{dataset}/{version}/withdraw",
        "Withdraw a raw version (R23).",
        "administrator",
        body=WITHDRAW_VERSION,
        params={"dataset": DATASET, "version": {"type": "integer", "minimum": 1}},
    ),
    Operation("get", "/api/imports", "Import requests one may see.", "merchant, reviewer, auditor"),
    Operation(
        "post",
        "/api/imports",
        "Request an import of one's own data (checked at once in the parsing jail).",
        "merchant (not a sandbox's token)",
        body=IMPORT_REQUEST,
        created=True,
    ),
    Operation(
        "get",
        "/api/imports/{import_id}",
        "One import with its check report.",
        "its merchant, reviewer, auditor",
        params={"import_id": ID},
    ),
    Operation(
        "delete",
        "/api/imports/{import_id}",
        "Delete an import (audited, irreversible).",
        "its merchant",
        params={"import_id": ID},
    ),
    Operation(
        "post",
        "/api/imports/{import_id}/decision",
        "Approve or reject an import.",
        "reviewer",
        body=IMPORT_DECISION,
        params={"import_id": ID},
    ),
    Operation("get", "/api/onboarding/registrations", "Merchant registrations.", "administrator"),
    Operation(
        "post",
        "/api/onboarding/registrations",
        "Register an organisation.",
        "anyone",
        body=REGISTRATION,
        created=True,
        public=True,
    ),
    Operation(
        "post",
        "/api/onboarding/registrations/{registration_id}/decision",
        "Approve or reject a registration.",
        "administrator",
        body=REGISTRATION_DECISION,
        params={"registration_id": ID},
    ),
    Operation("get", "/api/alerts", "Alerts raised, newest first.", "administrator, auditor"),
    Operation(
        "get",
        "/api/fees/statement",
        "A tenant's monthly statement: usage, priced lines, total, departments.",
        "merchant (own tenant); administrator with ?tenant=",
        query=StatementQuery,
    ),
    Operation(
        "get",
        "/api/fees/statement.csv",
        "The monthly statement as CSV (UTF-8 with a byte-order mark).",
        "merchant (own tenant); administrator with ?tenant=",
        query=StatementQuery,
        media="text/csv",
    ),
)

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Every refusal: the HTTP status and a sentence a person can act on.",
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
    "required": ["status", "message"],
}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": _plain(prop)}
        for name, prop in schema["properties"].items()
    ]


def _plain(prop: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in prop.items() if k not in ("title", "default")}


def _operation(op: Operation, refs: dict[str, Any]) -> dict[str, Any]:
    ok = "201" if op.created else "200"
    body: dict[str, Any] = {
        "summary": op.summary,
        "description": f"Who: {op.who}.",
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_')}".replace("{", "")
        .replace("}", "")
        .replace(".", "_"),
        "responses": {
            ok: {
                "description": "Done.",
                "content": {
                    op.media: {
                        "schema": {"type": "object"}
                        if op.media == "application/json"
                        else {"type": "string"}
                    }
                },
            },
            "4XX": {
                "description": "Refused: a bad body, no such thing, not allowed, a conflict.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if op.public:
        body["security"] = [{}, {"hubToken": []}]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in op.params.items()
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    if parameters:
        body["parameters"] = parameters
    if op.body is not None:
        body["requestBody"] = {
            "required": not op.body.may_be_empty,
            "description": f"At most {op.body.max_bytes:,} bytes.",
            "content": {"application/json": {"schema": refs[op.body.name]}},
        }
    return body


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service (its schemas are JSON Schema 2020-12)."""
    declared = {op.body.name: op.body for op in OPERATIONS if op.body is not None}
    refs, defs = TypeAdapter.json_schemas(
        [(name, "validation", d.adapter) for name, d in sorted(declared.items())],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    by_name: dict[str, Any] = {}
    for (name, _), schema in refs.items():
        if "$ref" in schema:
            by_name[name] = schema
        else:
            schemas[name] = schema
            by_name[name] = {"$ref": f"#/components/schemas/{name}"}
    schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, by_name)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Shuyu platform service",
            "version": __version__,
            "description": (
                "The JSON API of the Shuyu platform service. Sign in through the hub (its "
                "OAuth cookie, with the X-XSRFToken header for writes) or send "
                "'Authorization: token <hub API token>'. Every refusal is a JSON "
                '{"status", "message"}; every body is checked against its schema here '
                "before anything is written or debited."
            ),
        },
        "servers": [{"url": SERVER}],
        "security": [{"hubToken": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "hubToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'token <hub API token>'",
                }
            },
        },
    }


def text() -> str:
    """The document as the committed copy holds it."""
    return json.dumps(document(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


class OpenApiHandler(ApiHandler):
    """``GET api/openapi.json``: the document, for anyone."""

    def prepare(self) -> None:
        """Open to anyone: it describes the interface, not data."""

    def get(self) -> None:
        self.write_json(document())


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [(r"api/openapi\.json", OpenApiHandler)]


if __name__ == "__main__":
    print(text(), end="")
