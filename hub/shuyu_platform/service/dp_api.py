"""The DP query API: queries, model fits, budgets and released answers (R1, R4, R11).

Routes (under ``/services/shuyu/``), for merchants (scope ``custom:shuyu:dp:query``),
from the browser or from their kernel with the server's token:

``POST api/dp/query``
    A query (:mod:`shuyu_platform.dp.query`). With ``"dry_run": true`` it returns the
    cost and expected accuracy and spends nothing; otherwise the cost is debited first
    and the noisy answer returned with its intervals, release id and SHA-256. Both say
    what remains of the grant's budget and of the dataset's global one.
``POST api/dp/models``
    A diffprivlib model fit (:mod:`shuyu_platform.dp.learn`), debited the same way.
``GET api/dp/budget``
    The tenant's budget per active grant: cap, spent, remaining, expiry, and the
    dataset's global budget for this period (shared by every tenant).
``GET api/dp/releases`` and ``GET api/dp/releases/<id>``
    The tenant's released answers (the list without answers; one with its answer).

Every query and fit, answered, previewed or refused, is an audit event with its cost.
A refused request costs nothing: every check that can refuse runs before the debit. A
debited request whose answer cannot be computed is settled (:func:`budget.settle`):
refunded and audited, with a 503 that names no data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from tornado import web

from .. import messages
from ..access import grants, suspension
from ..core.db import session_scope
from ..core.models import Grant
from ..core.roles import DP_QUERY
from ..data import supply
from ..data.policy import DatasetPolicy
from ..dp import budget
from ..dp import query as dpquery
from ..dp.engine import Engine, Estimate, Members, Source, load_engine
from ..ingress import imports
from . import json_body
from .base import ApiHandler
from .request_models import DP_MODEL as MODEL_BODY
from .request_models import DP_QUERY as QUERY_BODY
from .request_models import Declared

log = logging.getLogger("shuyu.service")
#: What a computation run on the DP compute threads returns.
R = TypeVar("R")

Compute = Callable[[], tuple[Any, dict[str, Any]]]
"""Runs a debited request: returns what is released (hashed) and the rest of the reply."""
Prepared = tuple[Any, dict[str, Any], Compute]
"""A checked spec (with ``dry_run``, ``epsilon``, ``epsilon_micro``, ``as_dict()``), the
preview's fields, and the computation to run once the cost is debited."""
Prepare = Callable[[dict[str, Any], DatasetPolicy, Grant], Awaitable[Prepared]]


class DpHandler(ApiHandler):
    """What every DP route shares: the merchant's tenant, its grant, refusals."""

    @cached_property
    def engine(self) -> Engine:
        """The installation's engine (one per application, made on first use)."""
        app = self.application
        if not hasattr(app, "shuyu_dp_engine"):
            app.shuyu_dp_engine = load_engine(self.shuyu.dp_engine)  # type: ignore[attr-defined]
        return app.shuyu_dp_engine  # type: ignore[attr-defined,no-any-return]

    async def computing(self, fn: Callable[[], R]) -> R:
        """Run a DP computation on the service's own compute threads
        (``Shuyu.dp_compute_threads``), not the threads that serve database work."""
        app = self.application
        if not hasattr(app, "shuyu_dp_threads"):
            app.shuyu_dp_threads = ThreadPoolExecutor(  # type: ignore[attr-defined]
                max_workers=max(1, self.shuyu.dp_compute_threads), thread_name_prefix="dp"
            )
        pool: ThreadPoolExecutor = app.shuyu_dp_threads  # type: ignore[attr-defined]
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    def merchant_tenant(self, session: Session | None = None) -> str:
        """The caller's tenant; refuses (audited) non-merchants and suspended tenants.
        The suspension is read in ``session`` if given, else in a transaction of its own."""
        self.require_scope(DP_QUERY, "Differential-privacy queries", "merchant")
        if self.tenant is None:
            raise web.HTTPError(403, f"{self.user['name']} belongs to no tenant, so has no budget.")
        if session is None:
            with session_scope(self.shuyu.db_url) as own:
                return self.merchant_tenant(own)
        suspended = suspension.is_suspended(session, self.tenant)
        reason = suspended.reason if suspended else ""
        if suspended:
            raise dpquery.QueryError(f"tenant {self.tenant} is suspended: {reason}", 403)
        return self.tenant

    def request_body(self, declared: Declared[Any]) -> dict[str, Any]:
        """The body checked against its model, as the keys it set; a refusal otherwise."""
        try:
            body = json_body.read(self.request.body, declared.adapter, max_bytes=declared.max_bytes)
        except json_body.BodyError as err:
            raise dpquery.QueryError(err.message, err.status) from None
        return dict(body.model_dump(exclude_unset=True, by_alias=True))

    def dataset_policy(self, body: dict[str, Any]) -> DatasetPolicy:
        """The policy of the dataset the request names; 404 if there is none."""
        name = body.get("dataset")
        policies: dict[str, DatasetPolicy] = self.settings["policies"]
        if not isinstance(name, str) or name not in policies:
            raise dpquery.QueryError(
                f"no dataset {name!r}; the catalogue has {', '.join(sorted(policies))}", 404
            )
        return policies[name]

    def source(
        self, policy: DatasetPolicy, grant: Grant, join: dpquery.Join | None = None
    ) -> Source:
        """The raw rows the grant lets the engine use (of the current version, pinned),
        restricted to the people of the tenant's import when the query joins one."""
        pinned = supply.current(self.shuyu.zone("raw"), policy)
        members = None
        if join is not None:
            try:
                key, tokens = imports.join_members(
                    self.shuyu, grant.tenant, join.import_id, join.import_column
                )
            except imports.IngressError as err:
                raise dpquery.QueryError(err.message, err.status) from None
            members = Members(join.column, key, tokens)
        return Source(
            policy,
            pinned.path,
            grants.row_filter_of(grant),
            version=pinned.version,
            members=members,
            memory_limit=self.shuyu.data_memory_bytes,
        )

    def refuse(self, kind: str, body: Any, err: dpquery.DpError) -> None:
        """Audit a refused request (cost 0) and answer with its status and message."""
        dataset = body.get("dataset") if isinstance(body, dict) else None
        detail: dict[str, Any] = {"reason": err.message, "cost_epsilon": 0, "status": err.status}
        remaining = getattr(err, "remaining", None)
        if remaining is not None:
            detail["remaining_epsilon"] = remaining
        self.audit(
            f"dp.{kind}",
            f"dataset:{dataset}" if isinstance(dataset, str) else "dataset:?",
            outcome="denied" if isinstance(err, dpquery.QueryError) else "error",
            detail=detail,
        )
        body_out: dict[str, Any] = {
            "status": err.status,
            "message": messages.refusal(err.message, err.status),
        }
        if remaining is not None:
            body_out["remaining_epsilon"] = remaining
        self.write_json(body_out, err.status)

    async def serve(self, kind: budget.Kind, declared: Declared[Any], prepare: Prepare) -> None:
        """Check, preview or debit, compute, register and answer one request.

        ``prepare`` parses the body against the policy and grant and plans the work
        (anything that can refuse runs here, before the debit); it returns the checked
        spec, the preview's extra fields, and the computation to run once debited, which
        returns what is released (hashed and stored) and what else to send back.
        """
        read: dict[str, Any] = {}  # the body, once parsed: what a refusal's audit names

        def checked() -> tuple[str, DatasetPolicy, Grant, budget.Accounts | None]:
            """Tenant, body, policy and grant, and (unless only previewed) the accounts a
            debit spends from: the database read in one transaction."""
            with session_scope(self.shuyu.db_url) as session:
                tenant = self.merchant_tenant(session)
                read["body"] = self.request_body(declared)
                policy = self.dataset_policy(read["body"])
                grant = budget.grant_in(session, tenant, policy.dataset)
                if read["body"].get("dry_run"):
                    return tenant, policy, grant, None
                period = budget.period_of(policy.dp.budget_period)
                ids = budget.account_ids_in(session, grant, period)
                return tenant, policy, grant, (period, *ids)

        try:
            tenant, policy, grant, accounts = await asyncio.to_thread(checked)
            body = read["body"]
            spec, preview, compute = await prepare(body, policy, grant)
            if spec.dry_run:

                def previewed() -> dict[str, Any]:
                    self.audit(
                        "dp.preview",
                        f"dataset:{policy.dataset}",
                        detail={
                            "cost_epsilon": 0,
                            "would_cost": spec.epsilon,
                            "request": spec.as_dict(),
                        },
                    )
                    return {
                        "dry_run": True,
                        "dataset": policy.dataset,
                        "epsilon": spec.epsilon,
                        **_balances(self.shuyu.db_url, tenant, policy),
                        **preview,
                    }

                self.write_json(await asyncio.to_thread(previewed))
                return
            release_id = await asyncio.to_thread(
                budget.debit,
                self.shuyu.db_url,
                grant,
                policy=policy,
                username=self.user["name"],
                kind=kind,
                cost_micro=spec.epsilon_micro,
                request=spec.as_dict(),
                raw_version=preview.get("raw_version"),
                accounts=accounts,
            )
        except dpquery.DpError as err:
            self.refuse(kind, read.get("body"), err)
            return
        try:
            released, extra = await self.computing(compute)
        except Exception as err:
            await self.settle_failure(kind, release_id, spec.epsilon, err)
            return
        balances: dict[str, float | None] = {}
        try:
            digest = await asyncio.to_thread(
                budget.release,
                self.shuyu.db_url,
                release_id,
                released,
                username=self.user["name"],
                also_read=lambda session: balances.update(_balances_in(session, tenant, policy)),
            )
        except budget.BudgetError as err:  # settled meanwhile: the answer must not leave
            message = messages.refusal(err.message, err.status)
            self.write_json({"status": err.status, "message": message}, err.status)
            return
        self.write_json(
            {
                "release": release_id,
                "sha256": digest,
                "dataset": policy.dataset,
                "epsilon": spec.epsilon,
                **balances,
                "raw_version": preview.get("raw_version"),
                **extra,
            }
        )

    async def settle_failure(self, kind: str, release_id: str, cost: float, err: Exception) -> None:
        """Settle a debited request whose answer could not be computed, and say so.

        Nothing was released, so its ε is refunded (unless ``Shuyu.dp_refund_failures``
        is off). The reason goes to the log and the audit chain; the merchant gets a
        message that does not depend on the data.
        """
        refund = self.shuyu.dp_refund_failures
        log.error("DP %s %s failed after its debit", kind, release_id, exc_info=err)
        await asyncio.to_thread(
            budget.settle,
            self.shuyu.db_url,
            release_id,
            f"{type(err).__name__}: {err}",
            username=self.user["name"],
            refund=refund,
        )
        outcome = f"its {cost:g} ε was refunded" if refund else f"its {cost:g} ε stays spent"
        self.write_json(
            {
                "status": 503,
                "message": f"the {kind} could not be answered ({outcome}); "
                f"release {release_id} is marked {'refunded' if refund else 'failed'}, "
                "and the operator can see why",
                "release": release_id,
            },
            503,
        )


class QueryApi(DpHandler):
    """``POST api/dp/query``: preview (``dry_run``) or answer a DP query."""

    async def post(self) -> None:
        engine = self.engine

        async def prepare(body: dict[str, Any], policy: DatasetPolicy, grant: Grant) -> Prepared:
            spec = dpquery.parse(body, policy, grants.fields_of(grant))

            def plan() -> tuple[Source, Estimate]:
                """The pinned source and the planned measurement (the raw file checked),
                before anything is spent: one turn of the compute threads, not two."""
                source = self.source(policy, grant, spec.join)
                return source, engine.estimate(source, spec)

            source, estimate = await self.computing(plan)
            preview = {
                "engine": engine.name,
                "estimate": estimate.as_dict(),
                "raw_version": source.version,
            }

            def compute() -> tuple[Any, dict[str, Any]]:
                answer = engine.answer(source, spec)
                released = {"columns": answer.columns, "rows": answer.rows}
                extra = {"engine": engine.name, "estimate": answer.estimate.as_dict()}
                return released, extra | released

            return spec, preview, compute

        await self.serve("query", QUERY_BODY, prepare)


class ModelsApi(DpHandler):
    """``POST api/dp/models``: fit a diffprivlib model on the raw rows, return parameters."""

    async def post(self) -> None:
        # diffprivlib pulls in scikit-learn: imported on the first fit, not at start-up.
        from ..dp import learn

        async def prepare(body: dict[str, Any], policy: DatasetPolicy, grant: Grant) -> Prepared:
            spec = learn.parse_model(body, policy, grants.fields_of(grant))
            source = self.source(policy, grant)
            await asyncio.to_thread(source.check)

            def compute() -> tuple[Any, dict[str, Any]]:
                fitted = learn.fit(source, spec)
                return fitted, {"model": fitted}

            preview = {"estimate": learn.estimate(spec), "raw_version": source.version}
            return spec, preview, compute

        await self.serve("model", MODEL_BODY, prepare)


class BudgetApi(DpHandler):
    """``GET api/dp/budget``: the tenant's budget per active grant."""

    async def get(self) -> None:
        self.write_json(await asyncio.to_thread(self.read))

    def read(self) -> dict[str, Any]:
        """The balances, read exactly from the ledger (never cached); the read is audited."""
        policies: dict[str, DatasetPolicy] = self.settings["policies"]
        with session_scope(self.shuyu.db_url) as session:
            try:
                tenant = self.merchant_tenant(session)
            except dpquery.QueryError as err:
                raise web.HTTPError(err.status, err.message) from None
            accounts = budget.balances_in(session, tenant)
            granted = {
                a["dataset"]: policies[a["dataset"]] for a in accounts if a["dataset"] in policies
            }
            pools = budget.pool_balances_in(session, list(granted.values()))
            for account in accounts:
                policy = granted.get(account["dataset"])
                if policy is not None:
                    account["max_epsilon_per_query"] = policy.privacy.max_epsilon_per_query
                    account["global"] = pools[policy.dataset]
            self.audit_in(
                session, "dp.budget.read", f"tenant:{tenant}", detail={"accounts": len(accounts)}
            )
        return {
            "tenant": tenant,
            "accounting": "pure ε, sequential composition",
            "budgets": accounts,
        }


class ReleasesApi(DpHandler):
    """``GET api/dp/releases[/<id>]``: the tenant's released answers."""

    def get(self, release_id: str | None = None) -> None:
        try:
            tenant = self.merchant_tenant()
        except dpquery.QueryError as err:
            raise web.HTTPError(err.status, err.message) from None
        if not release_id:
            self.write_json(
                {"tenant": tenant, "releases": budget.releases(self.shuyu.db_url, tenant)}
            )
            return
        row = budget.find_release(self.shuyu.db_url, release_id)
        if row is None or row.tenant != tenant:
            raise web.HTTPError(404, f"no release {release_id} of tenant {tenant}")
        self.write_json(budget.release_dict(row))


def _balances(db_url: str, tenant: str, policy: DatasetPolicy) -> dict[str, float | None]:
    """The tenant's and the dataset's remaining ε, as every DP answer reports them (read
    exactly from the ledger in one transaction)."""
    with session_scope(db_url) as session:
        return _balances_in(session, tenant, policy)


def _balances_in(session: Session, tenant: str, policy: DatasetPolicy) -> dict[str, float | None]:
    """:func:`_balances`, read in ``session``."""
    accounts = budget.balances_in(session, tenant)
    pool = budget.pool_balances_in(session, [policy])[policy.dataset]
    mine = [float(a["remaining_epsilon"]) for a in accounts if a["dataset"] == policy.dataset]
    return {
        "remaining_epsilon": mine[0] if mine else None,
        "global_remaining_epsilon": float(pool["remaining_epsilon"]),
    }


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"api/dp/query/?", QueryApi),
        (r"api/dp/models/?", ModelsApi),
        (r"api/dp/budget/?", BudgetApi),
        (r"api/dp/releases/?", ReleasesApi),
        (r"api/dp/releases/([0-9a-f]{32})/?", ReleasesApi),
    ]
