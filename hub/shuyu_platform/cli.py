"""The ``shuyu`` command: the operator's tool for data, accounts, policies and audit."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .access import suspension
from .core import audit, checkpoints, db
from .core.accounts import AccountError, AccountStore
from .core.hubapi import HubClient, HubUnavailable
from .core.roles import ROLES
from .core.settings import REPO_ROOT, Shuyu

if TYPE_CHECKING:
    from .data.policy import DatasetPolicy

T = TypeVar("T")


def _settings(home: str | None) -> Shuyu:
    return Shuyu(home=home) if home else Shuyu()


home_option = click.option(
    "--home",
    envvar="SHUYU_HOME",
    type=click.Path(file_okay=False),
    help="State root (default: $SHUYU_HOME, else .shuyu/ in the repository).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """数域 Shuyu: a sandbox where public data is usable but not visible."""


# ----------------------------------------------------------------- demo data
@main.command("demo-data")
@home_option
@click.option("--rows", default=100_000, show_default=True, help="Rows per dataset.")
@click.option("--seed", default=20240501, show_default=True, help="Generator seed.")
def demo_data(home: str | None, rows: int, seed: int) -> None:
    """Generate the synthetic raw demo datasets into <home>/raw/."""
    from .data.demodata import generate

    settings = _settings(home)
    settings.ensure_zones()

    def progress(dataset: str, done: int, total: int) -> None:
        click.echo(f"\r  {dataset:<18} {done:>12,} / {total:,} rows", nl=done >= total)

    paths = generate(settings.zone("raw"), rows=rows, seed=seed, progress=progress)
    for name, path in paths.items():
        click.echo(f"  {name:<18} {path}  ({path.stat().st_size / 1e6:.1f} MB)")


@main.command("demo-accounts")
@home_option
def demo_accounts(home: str | None) -> None:
    """Create (or reset) the demo accounts; print them with their passwords."""
    from .demo import banner, create_demo_accounts

    settings = _settings(home)
    settings.ensure_zones()
    create_demo_accounts(settings)
    click.echo(banner(settings))


@main.command("demo-grants")
@home_option
def demo_grants(home: str | None) -> None:
    """Issue the demo grants (if not active), build views and synthetic twins."""
    from .demo import create_demo_grants

    settings = _settings(home)
    settings.ensure_zones()
    db.upgrade(settings.db_url)
    create_demo_grants(settings)
    click.echo("demo grants issued; masked views and synthetic twins built")


@main.command("demo")
@home_option
@click.option("--rows", default=100_000, show_default=True, help="Rows per dataset.")
@click.option("--fresh", is_flag=True, help="Delete the demo state first.")
def demo(home: str | None, rows: int, fresh: bool) -> None:
    """Prepare the demo (data if missing, accounts) and run the platform."""
    from .data.demodata import DATASETS, generate
    from .demo import banner, create_demo_accounts, create_demo_grants

    settings = _settings(home)
    if fresh and Path(settings.home).exists():
        shutil.rmtree(settings.home)
    settings.ensure_zones()
    raw = settings.zone("raw")
    if not all((raw / f"{name}.parquet").exists() for name in DATASETS):
        click.echo(f"Generating {rows:,} rows per dataset into {raw} ...")
        generate(raw, rows=rows)
    create_demo_accounts(settings)
    db.upgrade(settings.db_url)
    click.echo("Issuing demo grants, building masked views and synthetic twins ...")
    create_demo_grants(settings)
    click.echo(banner(settings))
    os.environ["SHUYU_HOME"] = settings.home
    jupyterhub = Path(sys.executable).with_name("jupyterhub")
    os.chdir(settings.zone("hub"))
    os.execv(jupyterhub, [str(jupyterhub), "-f", str(REPO_ROOT / "jupyterhub_config.py")])


# ------------------------------------------------------------------ accounts
@main.group()
def accounts() -> None:
    """Real-name accounts of the embedded deployment."""


@accounts.command("add")
@home_option
@click.argument("name")
@click.option("--role", type=click.Choice(list(ROLES)), required=True)
@click.option("--real-name", required=True, help="The person's legal name (R16).")
@click.option("--tenant", help="Tenant slug (merchants only).")
@click.option(
    "--department",
    "departments",
    multiple=True,
    help="Source department the account speaks for (source reviewers; repeatable).",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--replace", is_flag=True, help="Overwrite an existing account.")
def accounts_add(
    home: str | None,
    name: str,
    role: str,
    real_name: str,
    tenant: str | None,
    departments: tuple[str, ...],
    password_stdin: bool,
    replace: bool,
) -> None:
    """Add an account (the password is asked for, never given on the command line)."""
    settings = _settings(home)
    settings.ensure_zones()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        AccountStore(settings.accounts_file, settings.password_hash_cost).add(
            name,
            real_name=real_name,
            role=role,
            password=password,
            tenant=tenant,
            departments=departments,
            replace=replace,
        )
    except AccountError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"account {name} ({role}{', tenant ' + tenant if tenant else ''}) saved")


@accounts.command("list")
@home_option
def accounts_list(home: str | None) -> None:
    """List accounts (never their hashes)."""
    store = AccountStore(_settings(home).accounts_file)
    for acc in store.load().values():
        state = " (disabled)" if acc.disabled else ""
        click.echo(f"{acc.name:<16} {acc.role:<16} {acc.tenant or '':<12} {acc.real_name}{state}")


# ------------------------------------------------------------------- policies
@main.group()
def policy() -> None:
    """Dataset policies."""


@policy.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def policy_check(directory: str | None) -> None:
    """Validate every policy file; print each problem with file, line and field."""
    from .data.policy import PolicyError, load_policies

    folder = Path(directory or Shuyu().policies_dir)
    try:
        policies = load_policies(folder)
    except PolicyError as err:
        click.echo(str(err), err=True)
        sys.exit(1)
    click.echo(f"OK: {len(policies)} dataset policies in {folder}: {', '.join(sorted(policies))}")


# -------------------------------------------------------------------- tenants
@main.group()
def tenant() -> None:
    """Tenants: suspend and resume their platform access (R23)."""


def _operator() -> str:
    return f"operator:{os.environ.get('SUDO_USER') or getpass.getuser()}"


@tenant.command("suspend")
@home_option
@click.argument("slug")
@click.option("--reason", required=True, help="Why (recorded, and shown to the tenant).")
def tenant_suspend(home: str | None, slug: str, reason: str) -> None:
    """Stop the tenant's servers and refuse new ones until resumed."""
    settings = _settings(home)
    try:
        with db.session_scope(settings.db_url) as session:
            suspension.suspend(session, slug, reason=reason, actor=_operator())
    except suspension.SuspensionError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"tenant {slug} suspended: new sandboxes are refused")
    try:
        stopped = HubClient(settings).stop_tenant_servers(slug)
    except HubUnavailable as err:
        click.echo(f"no running servers stopped: {err}")
        return
    click.echo(f"stopped {len(stopped)} server(s): {', '.join(stopped) or '-'}")


@tenant.command("resume")
@home_option
@click.argument("slug")
@click.option("--reason", default="", help="What was rectified (recorded).")
def tenant_resume(home: str | None, slug: str, reason: str) -> None:
    """Let the tenant start sandboxes again."""
    settings = _settings(home)
    try:
        with db.session_scope(settings.db_url) as session:
            suspension.resume(session, slug, actor=_operator(), reason=reason)
    except suspension.SuspensionError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"tenant {slug} resumed")


# ------------------------------------------------------------------------ jobs
@main.group("jobs")
def jobs_group() -> None:
    """Sealed production runs: list, cancel, drain the queue."""


@jobs_group.command("list")
@home_option
@click.option("--tenant", help="Only this tenant's jobs.")
@click.option("--status", "statuses", multiple=True, help="Only jobs in this status (repeatable).")
def jobs_list(home: str | None, tenant: str | None, statuses: tuple[str, ...]) -> None:
    """The jobs, newest first: status, tenant, submitter, entry, exit code, request."""
    from .jobs import queue

    settings = _settings(home)
    with db.session_scope(settings.db_url) as session:
        rows = [queue.as_dict(r) for r in queue.listed(session, tenant, statuses)]
    for j in rows:
        click.echo(
            f"{j['id']}  {j['status']:<10} {j['tenant']:<14} {j['username']:<12} "
            f"{j['entry']}  exit={j['exit_code']}  request={j['request_id'] or '-'}"
        )
    if not rows:
        click.echo("no jobs")


@jobs_group.command("cancel")
@home_option
@click.argument("job_id")
def jobs_cancel(home: str | None, job_id: str) -> None:
    """Cancel a queued or running job (the runner stops it; nothing is kept)."""
    from .jobs import queue

    settings = _settings(home)
    try:
        with db.session_scope(settings.db_url) as session:
            row = queue.visible(session, job_id, None, True)
            queue.transition(session, row, "cancel", actor=_operator(), operator=True)
    except queue.JobError as err:
        raise click.ClickException(err.message) from err
    click.echo(f"job {job_id} cancelled")


@jobs_group.command("drain")
@home_option
@click.option("--off", is_flag=True, help="Start queued jobs again.")
@click.option("--cancel-queued", is_flag=True, help="Also cancel every queued job.")
def jobs_drain(home: str | None, off: bool, cancel_queued: bool) -> None:
    """Stop starting queued jobs (running ones finish), e.g. before maintenance."""
    from .jobs import queue
    from .jobs.worker import drain_marker

    settings = _settings(home)
    marker = drain_marker(settings)
    if off:
        marker.unlink(missing_ok=True)
        audit.append(settings.db_url, actor=_operator(), action="job.drain", target="jobs",
                     detail={"draining": False})  # fmt: skip
        click.echo("jobs queue resumed: queued jobs start again")
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("drained by the operator\n")
    cancelled = []
    with db.session_scope(settings.db_url) as session:
        if cancel_queued:
            for row in queue.listed(session, None, ["queued"]):
                queue.transition(session, row, "cancel", actor=_operator(), operator=True)
                cancelled.append(row.id)
        running = [r.id for r in queue.listed(session, None, ["running"])]
        audit.record(session, actor=_operator(), action="job.drain", target="jobs",
                     detail={"draining": True, "cancelled": cancelled})  # fmt: skip
    click.echo(f"jobs queue drained: no new job starts; {len(running)} still running")
    for job_id in running:
        click.echo(f"  running {job_id}")
    if cancelled:
        click.echo(f"cancelled {len(cancelled)} queued job(s)")


# -------------------------------------------------------------------- datasets
@main.group("dataset")
def dataset_group() -> None:
    """Datasets: suspend and resume their supply to tenants (R23)."""


def _known_dataset(settings: Shuyu, name: str) -> None:
    from .data.policy import load_policies

    if name not in load_policies(Path(settings.policies_dir)):
        raise click.ClickException(f"no dataset policy defines {name!r}")


@dataset_group.command("suspend")
@home_option
@click.argument("name")
@click.option("--reason", required=True, help="Why (recorded, and shown to the tenants).")
def dataset_suspend(home: str | None, name: str, reason: str) -> None:
    """Hide the dataset's views from every tenant and refuse DP queries of it."""
    from .access.tenant_views import sweep

    settings = _settings(home)
    _known_dataset(settings, name)
    try:
        with db.session_scope(settings.db_url) as session:
            suspension.suspend(session, name, reason=reason, actor=_operator(), kind="dataset")
    except suspension.SuspensionError as err:
        raise click.ClickException(str(err)) from err
    removed = [v for v in sweep(settings) if v.endswith(f"/{name}")]
    click.echo(f"dataset {name} suspended: DP queries refused; views removed: {len(removed)}")
    for view in removed:
        click.echo(f"  view {view}: removed")


@dataset_group.command("resume")
@home_option
@click.argument("name")
@click.option("--reason", default="", help="What was rectified (recorded).")
def dataset_resume(home: str | None, name: str, reason: str) -> None:
    """Supply the dataset again: rebuild the views of the tenants granted it."""
    from .access import grants

    settings = _settings(home)
    _known_dataset(settings, name)
    try:
        with db.session_scope(settings.db_url) as session:
            suspension.resume(session, name, actor=_operator(), reason=reason, kind="dataset")
            holders = sorted({g.tenant for g in grants.active(session, dataset=name)})
    except suspension.SuspensionError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"dataset {name} resumed")
    for slug in holders:
        _build_views(settings, slug, {name})


@dataset_group.command("list")
@home_option
def dataset_list(home: str | None) -> None:
    """Every dataset policy with its supply status."""
    from .data.policy import load_policies

    settings = _settings(home)
    with db.session_scope(settings.db_url) as session:
        stopped = suspension.suspended(session, "dataset")
    for name in load_policies(Path(settings.policies_dir)):
        state = f"suspended: {stopped[name]}" if name in stopped else "active"
        click.echo(f"{name}\t{state}")


# --------------------------------------------------------------------- grants
@main.group("grant")
def grant_group() -> None:
    """Grants: which fields and rows of a dataset a tenant's view holds (R7, R9)."""


def _policy(settings: Shuyu, dataset: str) -> DatasetPolicy:
    from .data.policy import PolicyError, load_policies

    try:
        policies = load_policies(Path(settings.policies_dir))
    except PolicyError as err:
        raise click.ClickException(f"invalid dataset policies:\n{err}") from err
    if dataset not in policies:
        raise click.ClickException(
            f"no dataset {dataset!r}; the policies define {', '.join(sorted(policies))}"
        )
    return policies[dataset]


def _row_filter(specs: tuple[str, ...]) -> dict[str, list[str]]:
    row_filter: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name or not values:
            raise click.BadParameter(f"{spec!r}: write FIELD=VALUE[,VALUE...]", param_hint="--rows")
        row_filter.setdefault(name.strip(), []).extend(v.strip() for v in values.split(","))
    return row_filter


@grant_group.command("add")
@home_option
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--dataset", required=True, help="Dataset name (as in policies/).")
@click.option(
    "--fields", help="Comma-separated fields of the view (default: every field policy allows)."
)
@click.option(
    "--rows", "rows", multiple=True, help="Row filter FIELD=V1,V2 (repeatable; raw values)."
)
@click.option("--budget", type=float, help="DP budget ε of the grant (default: policy's).")
@click.option("--days", type=click.IntRange(min=1), default=365, show_default=True)
@click.option("--scenario", default="", help="The approved scenario this grant serves.")
@click.option("--no-build", is_flag=True, help="Do not build the masked view now.")
def grant_add(
    home: str | None,
    tenant: str,
    dataset: str,
    fields: str | None,
    rows: tuple[str, ...],
    budget: float | None,
    days: int,
    scenario: str,
    no_build: bool,
) -> None:
    """Issue a grant (replacing the tenant's active one for the dataset) and build its view."""
    from datetime import UTC, datetime, timedelta

    from .access import grants

    settings = _settings(home)
    settings.ensure_zones()
    policy = _policy(settings, dataset)
    try:
        with db.session_scope(settings.db_url) as session:
            grant = grants.issue(
                session,
                policy,
                tenant=tenant,
                fields=[f.strip() for f in fields.split(",") if f.strip()] if fields else None,
                row_filter=_row_filter(rows),
                budget_epsilon=budget,
                expires_at=datetime.now(UTC) + timedelta(days=days),
                scenario=scenario,
                actor=_operator(),
            )
            summary = grants.as_dict(grant)
    except grants.GrantError as err:
        raise click.ClickException(str(err)) from err
    click.echo(
        f"grant {summary['id']}: {tenant} may use {dataset} "
        f"({len(summary['fields'])} fields, ε {summary['budget_epsilon']:g}, "
        f"until {summary['expires_at']})"
    )
    if not no_build:
        _build_views(settings, tenant, {dataset})


@grant_group.command("list")
@home_option
@click.option("--tenant", help="Only this tenant.")
@click.option("--all", "every", is_flag=True, help="Also revoked, expired and replaced ones.")
def grant_list(home: str | None, tenant: str | None, every: bool) -> None:
    """List grants."""
    from .access import grants

    with db.session_scope(_settings(home).db_url) as session:
        rows = (
            grants.listing(session, tenant=tenant)
            if every
            else grants.active(session, tenant=tenant)
        )
        for g in rows:
            d = grants.as_dict(g)
            click.echo(
                f"{d['id']:>4} {d['tenant']:<12} {d['dataset']:<18} {d['status']:<8} "
                f"until {d['expires_at']}  ε {d['budget_epsilon']:g}  {','.join(d['fields'])}"
                + (f"  rows {d['row_filter']}" if d["row_filter"] else "")
            )


@grant_group.command("revoke")
@home_option
@click.argument("grant_id", type=int)
@click.option("--reason", required=True, help="Why (recorded, and shown to the tenant).")
def grant_revoke(home: str | None, grant_id: int, reason: str) -> None:
    """End a grant now and remove its masked view."""
    from .access import grants

    settings = _settings(home)
    try:
        with db.session_scope(settings.db_url) as session:
            grant = grants.revoke(session, grant_id, actor=_operator(), reason=reason)
            tenant, dataset = grant.tenant, grant.dataset
    except grants.GrantError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"grant {grant_id} revoked")
    _build_views(settings, tenant, {dataset})


# ---------------------------------------------------------------------- views
@main.group("views")
def views_group() -> None:
    """Masked views: each tenant's granted fields of each dataset, masked by policy."""


def _build_views(settings: Shuyu, tenant: str, datasets: set[str] | None) -> None:
    from .access.tenant_views import build_tenant
    from .data.views import ViewBuildError

    try:
        result = build_tenant(
            settings, tenant, actor=_operator(), datasets=datasets, progress=sys.stderr.isatty()
        )
    except ViewBuildError as err:
        raise click.ClickException(str(err)) from err
    for report in result.built:
        click.echo(
            f"  view {tenant}/{report.dataset}: {report.rows_out:,} rows "
            f"({report.rows_suppressed:,} suppressed for k={report.k}, "
            f"{report.rows_filtered_out:,} outside the grant's rows), "
            f"{len(report.fields)} fields, {report.elapsed_seconds:.1f} s"
        )
        if report.risk is not None:
            click.echo(f"    risk: {report.risk.summary()}")
    for dataset in result.removed:
        click.echo(f"  view {tenant}/{dataset}: removed (no active grant, or suspended)")


@views_group.command("build")
@home_option
@click.option("--tenant", "tenants_", multiple=True, help="Tenant slug (repeatable).")
@click.option("--all", "every", is_flag=True, help="Every tenant with a grant or a view.")
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets.")
def views_build(
    home: str | None, tenants_: tuple[str, ...], every: bool, datasets: tuple[str, ...]
) -> None:
    """(Re)build masked views from the raw data; remove views no grant covers."""
    from .access.tenant_views import known_tenants

    settings = _settings(home)
    settings.ensure_zones()
    chosen = list(tenants_) or (known_tenants(settings) if every else [])
    if not chosen:
        raise click.UsageError("name a tenant with --tenant, or use --all")
    for slug in chosen:
        _build_views(settings, slug, set(datasets) or None)


@views_group.command("risk")
@home_option
@click.option("--tenant", help="Only this tenant's views.")
@click.option("--dataset", help="Only views of this dataset.")
@click.option("--json", "as_json", is_flag=True, help="Print the full figures as JSON.")
def views_risk(home: str | None, tenant: str | None, dataset: str | None, as_json: bool) -> None:
    """Re-identification risk and utility of the current views, as measured when built."""
    from .access.tenant_views import view_risks

    settings = _settings(home)
    entries = view_risks(settings, tenant=tenant, dataset=dataset)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"tenant": e.tenant, "dataset": e.dataset, "rows": e.rows, "risk": e.risk}
                    for e in entries
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    if not entries:
        click.echo("no views")
    for entry in entries:
        risk = entry.risk
        if risk is None:
            click.echo(f"  {entry.tenant}/{entry.dataset}: built before risk was measured")
            continue
        lows = ", ".join(f"l({name})={value}" for name, value in risk["lowest_l"].items())
        errors = ", ".join(
            f"{name} {error['mean_relative_error']:.2%}"
            for name, error in risk["mean_errors"].items()
        )
        click.echo(
            f"  {entry.tenant}/{entry.dataset}: {entry.rows:,} rows, "
            f"k={risk['k']} over {', '.join(risk['quasi_identifiers']) or 'no quasi-identifiers'}"
            f" (level {risk['level']}); max risk {risk['max_prosecutor_risk']:.3f}, "
            f"average {risk['average_prosecutor_risk']:.4f}, "
            f"{risk['records_below_k_share']:.1%} below k, {risk['unique_records']} unique"
            + (f", {lows}" if lows else "")
            + f"; {risk['rows_suppressed']:,} suppressed ({risk['suppressed_share']:.1%})"
            + (f"; group-mean error {errors}" if errors else "")
        )


# ------------------------------------------------------------------ supply
def _policy(settings: Shuyu, name: str) -> DatasetPolicy:
    from .data.policy import load_policies

    policies = load_policies(Path(settings.policies_dir))
    if name not in policies:
        raise click.ClickException(f"no dataset policy defines {name!r}")
    return policies[name]


def _rebuild(settings: Shuyu, dataset: str, version: int | None) -> None:
    from .access import rebuilds
    from .data.policy import load_policies

    rebuild_id = rebuilds.start(settings, dataset, version)
    click.echo(f"rebuilding views and synthetic twins (rebuild {rebuild_id}) ...")
    result = rebuilds.rebuild(
        settings,
        load_policies(Path(settings.policies_dir)),
        dataset,
        rebuild_id,
        actor=_operator(),
        echo=click.echo,
    )
    if result["failures"]:
        raise click.ClickException("rebuild failed: " + "; ".join(result["failures"]))


@main.command("supply")
@home_option
@click.argument("dataset")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--no-rebuild", is_flag=True, help="Leave views and twins to a later rebuild.")
def supply_command(home: str | None, dataset: str, file: Path, no_rebuild: bool) -> None:
    """Supply a new raw version of DATASET from FILE (.parquet or .csv) and make it current.

    The file is validated against the dataset's policy (columns, types, nulls,
    identifier formats); a refusal names row and column and changes nothing.
    """
    from .data import supply

    settings = _settings(home)
    settings.ensure_zones()
    policy = _policy(settings, dataset)
    db.upgrade(settings.db_url)
    try:
        done = supply.supply(
            settings.zone("raw"),
            settings.db_url,
            policy,
            file,
            actor=_operator(),
            keep=settings.raw_versions_kept,
        )
    except supply.SupplyError as err:
        raise click.ClickException(err.message) from err
    click.echo(
        f"{dataset} version {done.version} is current: {done.rows:,} rows, sha256 {done.sha256}"
        + (f" (was version {done.previous})" if done.previous else "")
    )
    if not no_rebuild:
        _rebuild(settings, dataset, done.version)


@main.group("raw")
def raw_group() -> None:
    """Raw versions of the datasets: list, withdraw (R23), rebuild status, supply accounts."""


@raw_group.command("versions")
@home_option
@click.argument("dataset", required=False)
@click.option("--json", "as_json", is_flag=True)
def raw_versions(home: str | None, dataset: str | None, as_json: bool) -> None:
    """Every recorded version, newest first."""
    from .data import supply

    settings = _settings(home)
    rows = supply.history(settings.db_url, dataset)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['dataset']:<20} v{row['version']:<4} {row['status']:<10} {row['rows']:>12,} rows"
            f"  {row['supplied_at']} by {row['supplied_by']}  {row['sha256'][:16]}"
        )


@raw_group.command("withdraw")
@home_option
@click.argument("dataset")
@click.argument("version", type=int)
@click.option("--reason", required=True, help="Why (recorded).")
def raw_withdraw(home: str | None, dataset: str, version: int, reason: str) -> None:
    """Withdraw a version: its file is deleted and nothing is computed on it again."""
    from .data import supply

    settings = _settings(home)
    policy = _policy(settings, dataset)
    was = supply.linked_version(settings.zone("raw"), policy)
    try:
        now = supply.withdraw(
            settings.zone("raw"),
            settings.db_url,
            policy,
            version,
            actor=_operator(),
            reason=reason,
        )
    except supply.SupplyError as err:
        raise click.ClickException(err.message) from err
    click.echo(f"{dataset} version {version} withdrawn; current: version {now}")
    if now != was:
        _rebuild(settings, dataset, now)


@raw_group.command("rebuilds")
@home_option
@click.argument("dataset", required=False)
def raw_rebuilds(home: str | None, dataset: str | None) -> None:
    """Progress of the newest view and twin rebuilds."""
    from .access import rebuilds

    for row in rebuilds.status(_settings(home), dataset):
        click.echo(
            f"{row['id']:>4} {row['dataset']:<20} v{row['version']:<4} {row['status']:<8} "
            f"{row['done']}/{row['total']}  {row['started_at']} {row['detail']}"
        )


# ------------------------------------------------------------------ synthetic
@main.command("synthetic")
@home_option
@click.option("--rows", type=int, help="Rows per twin (default: raw rows, at most 100,000).")
@click.option("--seed", default=0, show_default=True)
def synthetic_build(home: str | None, rows: int | None, seed: int) -> None:
    """Build the synthetic twin of every dataset into <home>/synthetic/ (R5)."""
    from .data.policy import load_policies
    from .data.synthetic import SyntheticError, build_all

    settings = _settings(home)
    settings.ensure_zones()
    try:
        reports = build_all(
            load_policies(Path(settings.policies_dir)),
            settings.zone("raw"),
            settings.zone("synthetic"),
            rows=rows,
            seed=seed,
        )
    except SyntheticError as err:
        raise click.ClickException(str(err)) from err
    for report in reports:
        click.echo(f"  synthetic {report}")


# ---------------------------------------------------------------------- audit
@main.group("audit")
def audit_group() -> None:
    """The tamper-evident audit chain."""


@audit_group.command("verify")
@home_option
@click.option("--db-url", envvar="SHUYU_DB_URL", help="Platform database URL.")
@click.option(
    "--checkpoints",
    "checkpoints_file",
    type=click.Path(dir_okay=False),
    help="Signed checkpoints to hold the chain to (default: the platform's own file).",
)
@click.option(
    "--public-key",
    help="The signer's Ed25519 public key in hex, as the product register publishes it "
    "(default: the public half of the platform's signing key).",
)
def audit_verify(
    home: str | None, db_url: str | None, checkpoints_file: str | None, public_key: str | None
) -> None:
    """Re-derive every hash and hold the chain to its signed checkpoints.

    Exit 0 if intact, 1 naming the first broken record or the checkpoint it contradicts.
    """
    settings = _settings(home)
    url = db_url or settings.db_url
    path = Path(checkpoints_file or settings.audit_checkpoints_file)
    try:
        signed = checkpoints.load(path)
        if public_key:
            key = checkpoints.parse_public_key(public_key)
        elif signed:
            key_path = Path(settings.audit_signing_key_file)
            key = checkpoints.signing_key(key_path, create=False).public_key()
    except checkpoints.CheckpointError as err:
        raise click.ClickException(str(err)) from err
    with db.session_scope(url) as session:
        result = checkpoints.verify(session, signed, key) if signed else audit.verify(session)
    click.echo(str(result))
    if not signed:
        click.echo(f"not anchored: no signed checkpoints in {path}")
    sys.exit(0 if result.ok else 1)


@audit_group.command("checkpoint")
@home_option
def audit_checkpoint(home: str | None) -> None:
    """Sign a checkpoint of the chain's head now (the platform service does so periodically)."""
    settings = _settings(home)
    with db.session_scope(settings.db_url) as session:
        try:
            made = checkpoints.write(
                session,
                Path(settings.audit_signing_key_file),
                Path(settings.audit_checkpoints_file),
            )
        except checkpoints.CheckpointError as err:
            raise click.ClickException(str(err)) from err
    if made is None:
        click.echo("no new records since the last checkpoint")
    else:
        click.echo(f"checkpoint: record {made.seq}, hash {made.hash}, signed at {made.at}")


@audit_group.command("prove")
@home_option
@click.argument("seq", type=click.IntRange(min=1))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write the proof here, not stdout."
)
def audit_prove(home: str | None, seq: int, output: str | None) -> None:
    """Print an inclusion proof of record SEQ against the newest signed checkpoint.

    The JSON holds the record, the sibling hashes up to the checkpoint's RFC 6962 Merkle
    root and the signed checkpoint: 'shuyu audit verify-proof' checks it without the log.
    """
    settings = _settings(home)
    try:
        signed = checkpoints.load(Path(settings.audit_checkpoints_file))
        with db.session_scope(settings.db_url) as session:
            document = checkpoints.prove(session, signed, seq)
    except checkpoints.CheckpointError as err:
        raise click.ClickException(str(err)) from err
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@audit_group.command("verify-proof")
@click.argument("proof", type=click.File("r", encoding="utf-8"))
@click.option(
    "--public-key",
    required=True,
    help="The signer's Ed25519 public key in hex, as the product register publishes it.",
)
def audit_verify_proof(proof: Any, public_key: str) -> None:
    """Check an inclusion proof (a file, or - for stdin) without the log.

    Exit 0 if the record is in the log the checkpoint signed, 1 saying why not.
    """
    try:
        key = checkpoints.parse_public_key(public_key)
        document = json.load(proof)
        click.echo(checkpoints.verify_proof(document, key))
    except json.JSONDecodeError as err:
        click.echo(f"NOT VERIFIED: the proof is not JSON ({err})")
        sys.exit(1)
    except checkpoints.CheckpointError as err:
        click.echo(f"NOT VERIFIED: {err}")
        sys.exit(1)


@audit_group.command("tail")
@home_option
@click.option("-n", "count", default=20, show_default=True, help="How many records.")
def audit_tail(home: str | None, count: int) -> None:
    """Print the newest records."""
    url = _settings(home).db_url
    with db.session_scope(url) as session:
        events = audit.newest(session, count)
    for e in events:
        click.echo(
            f"{e['seq']:>6} {e['ts']} {e['actor']:<12} {e['action']:<18} {e['outcome']:<6} "
            f"{e['target']} {audit.canonical_json(e['detail'])}"
        )


# ------------------------------------------------------------------ emergency
@main.group("emergency")
def emergency_group() -> None:
    """The emergency plan (R24): suspend, stop, sign the audit head, record the incident."""


@emergency_group.command("start")
@home_option
@click.option(
    "--scope",
    type=click.Choice(["tenant", "dataset", "all"]),
    required=True,
    help="What to stop: one tenant, one dataset, or every tenant and dataset.",
)
@click.argument("subject", default="")
@click.option("--reason", required=True, help="Why (recorded, and shown to those affected).")
def emergency_start(home: str | None, scope: str, subject: str, reason: str) -> None:
    """Suspend SUBJECT (a tenant slug or dataset name; none for --scope all), stop its
    servers, sign the audit head; print the incident record as JSON."""
    from .operations import emergency

    settings = _settings(home)
    try:
        outcome = emergency.start(settings, scope, subject, reason=reason, actor=_operator())
    except (emergency.EmergencyError, suspension.SuspensionError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(outcome.incident, ensure_ascii=False, indent=2))
    for problem in outcome.problems:
        click.echo(f"WARNING: {problem}", err=True)


@emergency_group.command("drill")
@home_option
@click.option(
    "--scope",
    type=click.Choice(["tenant", "dataset", "all"]),
    default="all",
    show_default=True,
    help="What the drill stops on the scratch copy.",
)
@click.argument("subject", default="")
def emergency_drill(home: str | None, scope: str, subject: str) -> None:
    """Run the emergency start on a scratch copy of the database and record the drill.

    Exit 0 if the copy ended up with everything suspended and its chain intact, else 1.
    """
    from .operations import emergency

    settings = _settings(home)
    try:
        result = emergency.drill(settings, scope, subject, actor=_operator())
    except emergency.EmergencyError as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    sys.exit(0 if result["passed"] else 1)


@emergency_group.command("list")
@home_option
def emergency_list(home: str | None) -> None:
    """Every incident and drill, newest first."""
    from .operations import emergency

    for row in emergency.incidents(_settings(home)):
        click.echo(
            f"{row['started_at']}  {row['kind']:<8} {row['scope']}:{row['subject']:<20} "
            f"{len(row['suspended'])} suspended, {row['seconds']} s  {row['reason']}"
        )


# ------------------------------------------------------------------ operations
def _validated(load: Callable[[Path], T], path: Path) -> T:
    """``load(path)`` of a validated operations file, or exit 1 naming every problem
    (its loaders raise a ``ValueError`` that says what and where)."""
    try:
        return load(path)
    except ValueError as err:
        raise click.ClickException(str(err)) from err


@main.group("alerts")
def alerts_group() -> None:
    """Alert rules over the audit chain and metrics (R15)."""


@alerts_group.command("check")
@home_option
@click.option("--file", "path", type=click.Path(dir_okay=False), help="Rules file to check.")
def alerts_check(home: str | None, path: str | None) -> None:
    """Validate the alert rules file; exit 1 naming every problem."""
    from .operations import alerts

    target = Path(path or _settings(home).alert_rules_file)
    rules = _validated(alerts.load_rules, target)
    click.echo(f"{target}: {len(rules.rules)} rules OK")


@alerts_group.command("evaluate")
@home_option
def alerts_evaluate(home: str | None) -> None:
    """Run the audit and review rules once now (the service runs them every minute)."""
    from .operations import alerts

    settings = _settings(home)
    rules = _validated(alerts.load_rules, Path(settings.alert_rules_file))
    for alert in alerts.evaluate(settings, rules):
        click.echo(
            f"ALERT #{alert['id']} {alert['rule']} ({alert['severity']}): {alert['summary']}"
        )


@main.group("fees")
def fees_group() -> None:
    """Metering and fees (R25): monthly statements per tenant."""


@fees_group.command("check")
@home_option
@click.option("--file", "path", type=click.Path(dir_okay=False), help="Pricing file to check.")
def fees_check(home: str | None, path: str | None) -> None:
    """Validate the pricing policy; exit 1 naming every problem."""
    from .operations import fees

    target = Path(path or _settings(home).pricing_file)
    pricing = _validated(fees.load_pricing, target)
    click.echo(f"{target}: OK, {len(pricing.prices)} priced items in {pricing.currency}")


@fees_group.command("statement")
@home_option
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--month", required=True, help="Month, YYYY-MM (UTC).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the CSV here.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write HTML here.")
@click.option("--pdf", "pdf_path", type=click.Path(dir_okay=False), help="Print a PDF here.")
def fees_statement(
    home: str | None,
    tenant: str,
    month: str,
    csv_path: str | None,
    html_path: str | None,
    pdf_path: str | None,
) -> None:
    """Print one tenant's monthly statement as JSON; optionally write CSV, HTML, PDF."""
    from .data.policy import load_policies
    from .operations import fees
    from .operations.metering import MeteringError

    settings = _settings(home)
    try:
        statement = fees.statement_for(
            settings, tenant, month, load_policies(Path(settings.policies_dir))
        )
    except (fees.PricingError, MeteringError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(statement.as_dict(), ensure_ascii=False, indent=2))
    if csv_path:
        Path(csv_path).write_bytes(fees.statement_csv(statement))
    if html_path or pdf_path:
        from .service.app import page_templates
        from .service.operations_api import print_pdf, standalone

        html = standalone(
            page_templates(""), "statement.html", inline_css=True,
            statement=statement, printable=True,
        )  # fmt: skip
        target = Path(html_path or Path(pdf_path or "").with_suffix(".html"))
        target.write_text(html, "utf-8")
        if pdf_path:
            print_pdf(target, Path(pdf_path))


@main.group("report")
def report_group() -> None:
    """Public disclosure and the annual operation report (R22, R26)."""


@report_group.command("figures")
@home_option
@click.option("--year", type=int, required=True, help="Calendar year (UTC).")
def report_figures(home: str | None, year: int) -> None:
    """Print every figure of the year's report as JSON, computed from the platform
    database and the audit chain (what the report and the public page show)."""
    from .operations import disclosure

    click.echo(
        json.dumps(disclosure.year_figures(_settings(home), year), ensure_ascii=False, indent=2)
    )


@report_group.command("annual")
@home_option
@click.option("--year", type=int, required=True, help="Calendar year (UTC).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder.")
@click.option("--pdf/--no-pdf", default=True, show_default=True, help="Also print a PDF.")
def report_annual(home: str | None, year: int, out_dir: str, pdf: bool) -> None:
    """Write the annual operation report as HTML (and PDF, printed by chromium)."""
    from .service.app import page_templates
    from .service.operations_api import print_pdf, report_html

    settings = _settings(home)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / f"shuyu-annual-report-{year}.html"
    html.write_text(report_html(settings, year, page_templates(""), inline_css=True), "utf-8")
    click.echo(str(html))
    if pdf:
        print_pdf(html, html.with_suffix(".pdf"))
        click.echo(str(html.with_suffix(".pdf")))


# ------------------------------------------------------------------------- db
@main.group("db")
def db_group() -> None:
    """The platform database."""


@db_group.command("upgrade")
@home_option
def db_upgrade(home: str | None) -> None:
    """Migrate the platform database to the newest schema."""
    settings = _settings(home)
    db.upgrade(settings.db_url)
    click.echo(f"platform database at newest schema: {settings.db_url}")


if __name__ == "__main__":
    main()
