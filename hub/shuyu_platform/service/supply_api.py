"""The supply API: source departments deliver new raw versions (R21); operators watch.

``PUT api/supply/<dataset>?filename=<name>.csv|.parquet`` takes the file as the request
body (streamed to a private file in the raw zone, at most ``c.Shuyu.supply_max_mb``),
from the hub API token of the dataset's department's supply account (``supply-…``,
role ``shuyu-supplier``; see :func:`shuyu_platform.hubconfig.supply_tokens`). It answers
``201`` once the version is validated, stored and current, and rebuilds views and twin
in a background thread; a refused file gets the validation's 4xx naming row and column.

``GET api/supply[/<dataset>]`` lists versions and rebuild progress (administrators,
auditors, and a department's own account for its datasets); ``POST
api/supply/<dataset>/<version>/withdraw`` (administrators, ``{"reason": ...}``)
withdraws a version (R23).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from tornado import web

from ..access import rebuilds
from ..core.roles import AUDIT_READ, POLICIES_MANAGE, SUPPLY_WRITE, supply_account
from ..data import supply
from ..data.policy import DatasetPolicy
from .base import ApiHandler
from .request_models import WITHDRAW_VERSION

log = logging.getLogger("shuyu.service")

#: Suffixes a supplied file may have.
SUFFIXES = (".csv", ".parquet")


def start_rebuild(handler: ApiHandler, dataset: str, version: int | None, actor: str) -> int:
    """Record a rebuild and run it in a worker thread; its progress is in the database."""
    settings, policies = handler.shuyu, handler.settings["policies"]
    rebuild_id = rebuilds.start(settings, dataset, version)

    def run() -> None:
        try:
            rebuilds.rebuild(settings, policies, dataset, rebuild_id, actor=actor)
        except Exception:
            log.exception("rebuild %s of %s failed", rebuild_id, dataset)

    task = asyncio.get_running_loop().run_in_executor(None, run)
    handler.application.settings.setdefault("shuyu_rebuilds", set()).add(task)
    task.add_done_callback(handler.application.settings["shuyu_rebuilds"].discard)
    return rebuild_id


class _DatasetHandler(ApiHandler):
    def policy(self, dataset: str) -> DatasetPolicy:
        policy = self.settings["policies"].get(dataset)
        if policy is None:
            raise web.HTTPError(404, f"no dataset {dataset!r} in the catalogue")
        return policy

    def is_department_of(self, policy: DatasetPolicy) -> bool:
        return self.user.get("kind") == "service" and self.user["name"] == supply_account(
            policy.catalogue.department
        )


@web.stream_request_body
class SupplyApi(_DatasetHandler):
    """``PUT api/supply/<dataset>``: one new raw version, streamed."""

    _upload: Path | None = None
    _handle: Any = None
    _received = False  # the whole body read (``put`` runs only then)

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "PUT":
            return
        dataset = self.path_args[0]
        policy = self.policy(dataset)
        self.require_scope(SUPPLY_WRITE, "Supplying raw data", "source-department account")
        if not self.is_department_of(policy):
            needs = f"the supply account of {policy.catalogue.department}"
            self.audit(
                "access.denied", f"dataset:{dataset}", outcome="denied", detail={"needs": needs}
            )
            raise web.HTTPError(
                403, f"{dataset} is supplied by {policy.catalogue.department}'s account only"
            )
        name = Path(self.get_argument("filename", "")).name
        if not name.lower().endswith(SUFFIXES):
            raise web.HTTPError(415, "give ?filename=<name>.csv or <name>.parquet")
        self.request.connection.set_max_body_size(self.shuyu.supply_max_mb * 1024 * 1024)
        folder = self.shuyu.zone("raw")
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        suffix = Path(name).suffix.lower()
        self._upload = folder / f".upload-{os.getpid()}-{secrets.token_hex(6)}{suffix}"
        fd = os.open(self._upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._handle = os.fdopen(fd, "wb")
        self.filename = name

    def data_received(self, chunk: bytes) -> None:
        if self._handle is not None:
            self._handle.write(chunk)

    def on_finish(self) -> None:
        self._discard()

    def on_connection_close(self) -> None:
        self._discard()

    def _discard(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        if self._upload is not None:
            self._upload.unlink(missing_ok=True)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The refusal, saying ``Connection: close`` when it comes before the body was read
        (refused in :meth:`prepare`): the server then closes the connection instead of
        reading the rest, and a proxy that kept it for its next request would get no
        answer to that one (a 503 to an unrelated client)."""
        if self.request.method == "PUT" and not self._received:
            self.set_header("Connection", "close")
        super().write_error(status_code, **kwargs)

    async def put(self, dataset: str) -> None:
        self._received = True
        assert self._handle is not None and self._upload is not None
        self._handle.close()
        self._handle = None
        policy = self.policy(dataset)
        try:
            done = await asyncio.to_thread(
                supply.supply,
                self.shuyu.zone("raw"),
                self.shuyu.db_url,
                policy,
                self._upload,
                actor=self.user["name"],
                actor_kind="service",
                keep=self.shuyu.raw_versions_kept,
                source_name=self.filename,
            )
        except supply.SupplyError as err:
            self.audit(
                "supply.refused",
                f"dataset:{dataset}",
                outcome="denied",
                detail={"reason": err.message, "file": self.filename},
            )
            raise web.HTTPError(err.status, "%s", err.message) from None
        rebuild_id = start_rebuild(self, dataset, done.version, self.user["name"])
        self.write_json({**done.as_dict(), "rebuild": rebuild_id}, 201)

    def get(self, dataset: str) -> None:
        policy = self.policy(dataset)
        if not (
            self.is_department_of(policy)
            or self.has_scope(POLICIES_MANAGE)
            or self.has_scope(AUDIT_READ)
        ):
            self.require_scope(POLICIES_MANAGE, "Reading supply history", "admin")
        self.write_json(_state(self, dataset))


class SupplyListApi(_DatasetHandler):
    """``GET api/supply``: every dataset's versions and rebuilds (operators, auditors)."""

    def get(self) -> None:
        if not self.has_scope(AUDIT_READ):
            self.require_scope(POLICIES_MANAGE, "Reading supply history", "admin")
        self.write_json(
            {"datasets": [_state(self, name) for name in sorted(self.settings["policies"])]}
        )


class WithdrawApi(_DatasetHandler):
    """``POST api/supply/<dataset>/<version>/withdraw``: withdraw a version (R23)."""

    async def post(self, dataset: str, version: str) -> None:
        self.require_scope(POLICIES_MANAGE, "Withdrawing a raw version", "admin")
        policy = self.policy(dataset)
        body = self.body(WITHDRAW_VERSION)
        raw = self.shuyu.zone("raw")
        before = supply.linked_version(raw, policy)
        try:
            now = await asyncio.to_thread(
                supply.withdraw,
                raw,
                self.shuyu.db_url,
                policy,
                int(version),
                actor=self.user["name"],
                reason=body.reason,
            )
        except supply.SupplyError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None
        answer: dict[str, Any] = {"dataset": dataset, "withdrawn": int(version), "current": now}
        if now != before:
            answer["rebuild"] = start_rebuild(self, dataset, now, self.user["name"])
        self.write_json(answer)


def _state(handler: ApiHandler, dataset: str) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "versions": supply.history(handler.shuyu.db_url, dataset),
        "rebuilds": rebuilds.status(handler.shuyu, dataset, limit=5),
    }


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"api/supply", SupplyListApi),
        (r"api/supply/([a-z][a-z0-9_]{1,62})", SupplyApi),
        (r"api/supply/([a-z][a-z0-9_]{1,62})/([0-9]{1,9})/withdraw", WithdrawApi),
    ]
