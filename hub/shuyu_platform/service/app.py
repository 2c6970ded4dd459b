"""Assemble and run the platform service's tornado application."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer

from .. import messages
from ..access import rebuilds
from ..access.tenant_views import sweep
from ..core import checkpoints, db, keyfiles
from ..core.settings import Shuyu
from ..data import supply
from ..data.policy import PolicyError, load_policies
from ..dp import budget
from ..egress.release import release_pending
from ..jobs.worker import Worker
from ..operations import alerts, disclosure, metrics
from . import (
    accounts_page,
    applications_api,
    audit_api,
    catalogue,
    dp_api,
    egress_api,
    grants_api,
    imports_api,
    jobs_api,
    onboarding_api,
    openapi,
    operations_api,
    products,
    supply_api,
    volumes_api,
)
from .base import NotFoundApi, StaticHandler
from .tenant_reports import ReportLimiter

HERE = Path(__file__).parent
log = logging.getLogger("shuyu.service")

#: The service's cookie secret, in the hub zone: kept across restarts, so nobody who is
#: signed in to the service is signed out when it restarts.
COOKIE_SECRET_FILE = "service-cookie-secret"


def page_templates(prefix: str) -> Environment:
    """The service's page templates, with links under ``prefix``."""
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
    )
    templates.globals["prefix"] = prefix
    messages.install(templates)
    return templates


def make_app(settings: Shuyu, prefix: str) -> web.Application:
    """The service's routes under ``prefix`` (``/services/shuyu/`` behind the hub)."""
    policies = load_policies(Path(settings.policies_dir))
    templates = page_templates(prefix)
    routes = [
        (r"oauth_callback", HubOAuthCallbackHandler),
        *catalogue.routes(),
        *audit_api.routes(),
        *grants_api.routes(),
        *dp_api.routes(),
        *egress_api.routes(),
        *jobs_api.routes(),
        *applications_api.routes(),
        *onboarding_api.routes(),
        *accounts_page.routes(),
        *products.routes(),
        *volumes_api.routes(),
        *supply_api.routes(),
        *imports_api.routes(),
        *openapi.routes(),
        *metrics.routes(),
        *operations_api.routes(),
        (r"api/.*", NotFoundApi),  # last: only what nothing else matched
    ]
    handlers = [(url_path_join(prefix, path), handler) for path, handler in routes]
    counted = metrics.PlatformMetrics(settings)
    metrics.metrics_token(settings)  # made at start, for the scrape configuration to read
    return web.Application(
        handlers,
        shuyu=settings,
        metrics=counted,
        alert_rules=alerts.load_rules(Path(settings.alert_rules_file)),
        log_function=counted.observe,
        policies=policies,
        tenant_reports=ReportLimiter(settings.tenant_reports_per_minute),
        templates=templates,
        service_prefix=prefix,
        cookie_secret=keyfiles.secret_file(settings.zone("hub") / COOKIE_SECRET_FILE),
        static_path=str(HERE / "static"),
        static_url_prefix=url_path_join(prefix, "static/"),
        static_handler_class=StaticHandler,
        xsrf_cookies=False,  # HubOAuthenticated checks xsrf itself for cookie-authenticated writes
    )


#: Database connections kept for the service's own loops beyond its worker threads.
SPARE_CONNECTIONS = 4


def database_connections(settings: Shuyu) -> int:
    """How many database connections the service keeps open: one per thread that may
    use the database at once (worker threads, DP compute threads) and a few spare."""
    return settings.service_threads + settings.dp_compute_threads + SPARE_CONNECTIONS


async def _serve(settings: Shuyu, listening: list[socket.socket]) -> None:
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=max(1, settings.service_threads), thread_name_prefix="db")
    )
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/shuyu/")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", settings.service_url))
    app = make_app(settings, prefix)
    server = HTTPServer(app, xheaders=True)
    if listening:  # bound before the imports (see __main__)
        server.add_sockets(listening)
    else:
        server.listen(url.port or 80, url.hostname or "127.0.0.1")
    log.info("Shuyu platform service listening on %s%s", url.geturl(), prefix)
    policies = app.settings["policies"]
    worker = Worker(
        settings, policies, lambda tenant: egress_api.check_context(settings, policies, tenant)
    )
    running_jobs = asyncio.create_task(worker.serve())  # see jobs.worker: why it runs here
    checkpointing = asyncio.create_task(_checkpoint_loop(settings, app.settings["metrics"]))
    disclosing = asyncio.create_task(_disclosure_loop(settings))
    try:
        while True:
            await _sweep(settings)
            await _evaluate_alerts(app)
            await asyncio.sleep(SWEEP_SECONDS)
    finally:
        checkpointing.cancel()
        running_jobs.cancel()
        disclosing.cancel()


async def _disclosure_loop(settings: Shuyu) -> None:
    """Recompute the public disclosure page every ``disclosure_refresh_seconds``."""
    while True:
        try:
            await asyncio.to_thread(disclosure.refresh, settings)
        except Exception:  # retried on the next round
            log.exception("disclosure refresh failed")
        await asyncio.sleep(settings.disclosure_refresh_seconds)


def write_checkpoint(settings: Shuyu) -> checkpoints.Checkpoint | None:
    """Sign a checkpoint of the audit chain's head if it grew (see core.checkpoints)."""
    with db.session_scope(settings.db_url) as session:
        return checkpoints.write(
            session,
            Path(settings.audit_signing_key_file),
            Path(settings.audit_checkpoints_file),
        )


async def _checkpoint_loop(settings: Shuyu, counted: metrics.PlatformMetrics) -> None:
    """Anchor the audit chain every ``audit_checkpoint_seconds``, starting now; the
    verification that precedes each checkpoint is what the metrics report."""
    while True:
        try:
            made = await asyncio.to_thread(write_checkpoint, settings)
        except checkpoints.CheckpointError as err:
            counted.verified(False)
            log.error("audit chain NOT anchored: %s", err)
        except Exception:  # retried on the next round
            log.exception("audit checkpoint failed")
        else:
            counted.verified(True)
            if made is not None:
                log.info("audit checkpoint: record %s, hash %s", made.seq, made.hash)
        await asyncio.sleep(settings.audit_checkpoint_seconds)


#: How often expired grants are closed, deadlines checked and releases retried.
SWEEP_SECONDS = 60


async def _sweep(settings: Shuyu) -> None:
    """Close expired grants and delete their views, record deemed approvals of overdue
    applications, release approved export requests; all off the event loop."""
    try:
        removed = await asyncio.to_thread(sweep, settings)
    except Exception:  # a failed sweep must not stop the service; it is retried
        log.exception("grant expiry sweep failed")
    else:
        if removed:
            log.info("removed views without an active grant: %s", ", ".join(removed))
    try:
        deemed = await asyncio.to_thread(
            applications_api.process_deadlines, settings, load_policies(Path(settings.policies_dir))
        )
    except Exception:
        log.exception("application deadline sweep failed")
    else:
        if deemed:
            log.info("deemed approvals of applications past their deadline: %s", deemed)
    try:
        released = await asyncio.to_thread(release_pending, settings)
    except Exception:
        log.exception("release sweep failed")
    else:
        if released:
            log.info("released approved egress requests: %s", ", ".join(released))


async def _evaluate_alerts(app: web.Application) -> None:
    """Run the alert rules once, off the event loop (a failure is retried next round)."""
    try:
        raised = await asyncio.to_thread(
            alerts.evaluate,
            app.settings["shuyu"],
            app.settings["alert_rules"],
            app.settings["metrics"],
        )
    except Exception:
        log.exception("alert evaluation failed")
    else:
        for alert in raised:
            log.warning("ALERT %s (%s): %s", alert["rule"], alert["severity"], alert["summary"])


def main(listening: list[socket.socket] | None = None) -> None:
    """Run the service until killed (the hub starts and stops it), on ``listening``
    sockets if given, else on a port of its URL."""
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s shuyu] %(message)s"
    )
    settings = Shuyu.from_environment()
    db.size_pool(database_connections(settings))
    try:
        db.upgrade(settings.db_url)
        settled = budget.settle_interrupted(settings.db_url, refund=settings.dp_refund_failures)
        if settled:
            log.warning("settled DP releases left debited by a crash: %s", ", ".join(settled))
        for problem in budget.ledger_problems(settings.db_url):
            log.error("the DP ledger does not add up: %s", problem)
        for policy in load_policies(Path(settings.policies_dir)).values():
            supply.reconcile(settings.zone("raw"), settings.db_url, policy)
        stopped = rebuilds.interrupted(settings)
        if stopped:
            log.warning("rebuilds interrupted by the last stop: %s", stopped)
        asyncio.run(_serve(settings, listening or []))
    except PolicyError as err:
        sys.exit(f"shuyu service: invalid dataset policy\n{err}")
    except alerts.AlertRulesError as err:
        sys.exit(f"shuyu service: invalid alert rules\n{err}")
    except KeyboardInterrupt:
        pass
