"""Mermaid state diagrams of every lifecycle, generated from the transition tables.

Each lifecycle keeps its allowed transitions in one table in its own module; this
module renders each table as a Mermaid ``stateDiagram-v2`` into ``docs/lifecycles/``,
so the documentation is drawn from the code and cannot fall behind it (a test compares
the committed files with a fresh rendering)::

    python -m shuyu_platform.lifecycles          # rewrite docs/lifecycles/*.md
    python -m shuyu_platform.lifecycles --check  # exit 1 if any file is stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .core.settings import REPO_ROOT

#: Where the rendered diagrams are committed.
DOCS_DIR = REPO_ROOT / "docs" / "lifecycles"

#: status -> {label of the edge: next status}
Table = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class Lifecycle:
    """One state machine: where its table lives, and how to read it as labelled edges."""

    title: str
    source: str
    initial: str
    table: Callable[[], Table]
    actors: Callable[[], Mapping[str, str]]
    note: str


def _egress() -> Table:
    from .egress import requests

    return requests.TRANSITIONS


def _egress_actors() -> Mapping[str, str]:
    from .egress import requests

    return requests.ACTORS


def _dashboard() -> Table:
    """A dashboard's publication: the part of an egress request's life after approval."""
    table = _egress()
    published = ("approved", "released", "unpublished")
    return {s: {a: t for a, t in table[s].items() if t in published} for s in published}


def _applications() -> Table:
    from .workflow import applications

    return applications.TRANSITIONS


def _applications_actors() -> Mapping[str, str]:
    from .workflow import applications

    return applications.ACTORS


def _registrations() -> Table:
    from .workflow import onboarding

    return onboarding.TRANSITIONS


def _grants() -> Table:
    """Grants name the next status only: the edge is labelled with it."""
    from .access import grants

    return {s: {t: t for t in sorted(after)} for s, after in grants.TRANSITIONS.items()}


def _jobs() -> Table:
    from .jobs import queue

    return queue.TRANSITIONS


def _jobs_actors() -> Mapping[str, str]:
    from .jobs import queue

    return queue.ACTORS


def _no_actors() -> Mapping[str, str]:
    return {}


LIFECYCLES: dict[str, Lifecycle] = {
    "egress-request": Lifecycle(
        "Export request",
        "hub/shuyu_platform/egress/requests.py",
        "draft",
        _egress,
        _egress_actors,
        "`unpublish` applies to dashboards only. With the two-reviewer rule the first "
        "`approve` is recorded and the status stays until a second reviewer approves.",
    ),
    "dashboard": Lifecycle(
        "Showcase dashboard (an export request of kind `dashboard`, after approval)",
        "hub/shuyu_platform/egress/requests.py",
        "approved",
        _dashboard,
        _egress_actors,
        "`release` publishes the dashboard to the dashboards service; `unpublish` "
        "removes its folder at once (the requester or an administrator).",
    ),
    "application": Lifecycle(
        "Scenario application",
        "hub/shuyu_platform/workflow/applications.py",
        "compliance_review",
        _applications,
        _applications_actors,
        "`source_approve` leads to `approved` once every source department has approved; "
        "`deem_approve` is taken by the platform when a stage's deadline passes in silence "
        "(with `c.Shuyu.silence_approves` on).",
    ),
    "registration": Lifecycle(
        "Merchant registration",
        "hub/shuyu_platform/workflow/onboarding.py",
        "submitted",
        _registrations,
        _no_actors,
        "An administrator decides; approval creates the tenant and its accounts.",
    ),
    "job": Lifecycle(
        "Sealed production run (job)",
        "hub/shuyu_platform/jobs/queue.py",
        "queued",
        _jobs,
        _jobs_actors,
        "`cancel` is taken by the submitter or an operator (`shuyu jobs cancel`); `requeue` "
        "by the platform for a run cut short by a restart (once). A run that ends "
        "(`succeed`, `fail`, `time_out`) files its outputs and log as an export request "
        "of kind `job`.",
    ),
    "grant": Lifecycle(
        "Grant",
        "hub/shuyu_platform/access/grants.py",
        "active",
        _grants,
        _no_actors,
        "A grant is issued `active`; each edge is named by the status it leads to.",
    ),
}


def render(name: str) -> str:
    """The Markdown page (title, Mermaid diagram, note) of one lifecycle."""
    life = LIFECYCLES[name]
    table, actors = life.table(), life.actors()
    lines = [
        f"# {life.title}",
        "",
        f"Generated from `TRANSITIONS` in `{life.source}` by "
        "`python -m shuyu_platform.lifecycles`; do not edit by hand.",
        "",
        "```mermaid",
        "stateDiagram-v2",
        f"    [*] --> {life.initial}",
    ]
    for status, edges in table.items():
        for action, after in edges.items():
            who = actors.get(action)
            label = f"{action} ({who})" if who else action
            lines.append(f"    {status} --> {after}: {label}")
        if not edges:
            lines.append(f"    {status} --> [*]")
    lines += ["```", "", life.note, ""]
    return "\n".join(lines)


def stale(docs: Path | None = None) -> list[str]:
    """Names of the lifecycles whose committed page differs from a fresh rendering."""
    docs = docs or DOCS_DIR
    out = []
    for name in LIFECYCLES:
        path = docs / f"{name}.md"
        if not path.exists() or path.read_text(encoding="utf-8") != render(name):
            out.append(name)
    return out


def write(docs: Path | None = None) -> None:
    """Render every lifecycle into ``docs`` (by default ``docs/lifecycles/``)."""
    docs = docs or DOCS_DIR
    docs.mkdir(parents=True, exist_ok=True)
    for name in LIFECYCLES:
        (docs / f"{name}.md").write_text(render(name), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Rewrite the diagrams, or with ``--check`` report the stale ones and exit 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"{DOCS_DIR / name}.md differs from its transition table", file=sys.stderr)
        return 1 if names else 0
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
