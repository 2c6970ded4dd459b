"""Publishing showcase dashboards: approved notebooks made read-only folders (R12, R22).

A merchant asks to publish a notebook with an export request of kind ``dashboard``
(:mod:`..egress.requests`): the notebook and the IDs of the tenant's released artefacts
it reads. It goes through the same checks and review as any export. Approval publishes
it (:func:`publish`): ``published/<id>/`` receives the notebook (outputs cleared, kernel
set to the sandboxed dashboard kernel) and a copy of each released file it reads,
checked against its SHA-256, all read-only, with ``provenance.json``. The notebook
reads those files by name, from its own folder. :func:`unpublish` removes the folder
at once. The Voila service that shows them is :mod:`.service`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Final

import nbformat
from sqlalchemy.orm import Session

from ..core import audit
from ..core.atomic import create_folder_atomically, remove_tree, sync_and_hash
from ..core.db import stamp
from ..core.models import EgressRequest
from ..core.settings import Shuyu

#: The kernelspec every published dashboard runs with.
KERNEL_NAME: Final[str] = "shuyu-dashboard"
#: The notebook's name inside its published folder.
NOTEBOOK: Final[str] = "dashboard.ipynb"
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


def prepared_notebook(document: dict[str, Any], title: str) -> bytes:
    """The notebook as published: outputs cleared, the dashboard kernel, a title."""
    notebook = nbformat.from_dict(document)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "Shuyu dashboard (sandboxed)",
        "language": "python",
    }
    notebook.metadata["title"] = title
    nbformat.validate(notebook)
    return nbformat.writes(notebook).encode()


def publish(
    settings: Shuyu,
    session: Session,
    row: EgressRequest,
    content: dict[str, Any],
    released: list[tuple[str, Path, str]],
) -> dict[str, Any]:
    """Write ``published/<id>/``: the notebook and the released files (name, path, sha)."""
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
        notebook = prepared_notebook(content["document"], row.title)
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
        detail={"files": files, "url": url_of(row.id)},
    )
    return {"files": files, "published_at": record["published_at"], "dashboard": url_of(row.id)}


def url_of(request_id: str) -> str:
    """The path of a published dashboard behind the proxy."""
    return f"/services/dashboards/voila/render/{request_id}/{NOTEBOOK}"


def unpublish(settings: Shuyu, request_id: str) -> bool:
    """Remove a published dashboard's folder at once; whether there was one."""
    target = folder(settings, request_id)
    existed = target.exists()
    remove_tree(target)
    return existed
