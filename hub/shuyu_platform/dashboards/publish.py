"""Publishing showcase dashboards: approved notebooks made read-only folders (R12, R22).

A merchant asks to publish a notebook with an export request of kind ``dashboard``
(:mod:`..egress.requests`): the notebook and the IDs of the tenant's released artefacts
it reads. It goes through the same checks and review as any export. Approval publishes
it (:func:`publish`): ``published/<id>/`` receives the notebook (outputs cleared, kernel
set to the sandboxed dashboard kernel, prepared in the parsing jail by
:mod:`.notebook`) and a copy of each released file it reads, checked against its
SHA-256, all read-only, with ``provenance.json``. The notebook reads those files by
name, from its own folder. :func:`unpublish` removes the folder at once. The Voila
service that shows them, on an origin of its own, is :mod:`.service`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Final

from sqlalchemy.orm import Session

from ..core import audit
from ..core.atomic import create_folder_atomically, remove_tree, sync_and_hash
from ..core.db import stamp
from ..core.models import EgressRequest
from ..core.settings import Shuyu
from .notebook import NOTEBOOK

PROVENANCE: Final[str] = "provenance.json"


class PublishError(ValueError):
    """A dashboard that cannot be published; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def folder(settings: Shuyu, request_id: str) -> Path:
    """Where a published dashboard lives."""
    return settings.zone("published") / request_id


def publish(
    settings: Shuyu,
    session: Session,
    row: EgressRequest,
    content: dict[str, Any],
    released: list[tuple[str, Path, str]],
    notebook: bytes,
) -> dict[str, Any]:
    """Write ``published/<id>/``: the notebook and the released files (name, path, sha).

    ``notebook`` is :func:`.notebook.prepared_notebook` of the request's document, made
    in the parsing jail (:func:`shuyu_platform.egress.jailed.prepare_dashboard`).
    """
    files: list[dict[str, Any]] = []

    def fill(tmp: Path) -> dict[str, Any]:
        for name, source, digest in released:
            path = tmp / name
            if path.exists():
                raise PublishError(f"two released artefacts are both named {name}")
            shutil.copyfile(source, path)
            if sync_and_hash(path) != digest:
                raise PublishError(f"released file {name} changed on disk; not published")
            files.append({"name": name, "sha256": digest, "bytes": path.stat().st_size})
        (tmp / NOTEBOOK).write_bytes(notebook)
        digest = sync_and_hash(tmp / NOTEBOOK)
        files.append({"name": NOTEBOOK, "sha256": digest, "bytes": len(notebook)})
        record = {
            "request": row.id,
            "tenant": row.tenant,
            "requester": row.username,
            "title": row.title,
            "purpose": row.purpose,
            "notebook": content["notebook"],
            "releases": content.get("releases", []),
            "files": files,
            "published_at": stamp(),
        }
        (tmp / PROVENANCE).write_text(json.dumps(record, ensure_ascii=False, indent=1))
        return record

    # Read-only files in a 0555 folder: readable by the dashboard kernel's uid.
    record = create_folder_atomically(folder(settings, row.id), fill)
    audit.record(
        session,
        actor="platform",
        actor_kind="system",
        action="dashboard.publish",
        target=f"egress:{row.id}",
        tenant=row.tenant,
        detail={"files": files, "url": url_of(settings, row.id)},
    )
    return {
        "files": files,
        "published_at": record["published_at"],
        "dashboard": url_of(settings, row.id),
    }


#: Where the dashboards service's routes start, on its own origin.
PREFIX: Final[str] = "/services/dashboards/"


def url_of(settings: Shuyu, request_id: str) -> str:
    """The address of a published dashboard, on the dashboards' own origin."""
    return f"{settings.dashboards_url}{PREFIX}voila/render/{request_id}/{NOTEBOOK}"


def unpublish(settings: Shuyu, request_id: str) -> bool:
    """Remove a published dashboard's folder at once; whether there was one."""
    target = folder(settings, request_id)
    existed = target.exists()
    remove_tree(target)
    return existed
