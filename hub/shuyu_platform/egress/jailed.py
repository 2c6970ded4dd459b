"""The egress steps that parse a merchant's content, run in the parsing jail.

Each step has two halves: the task that runs inside the jail (:func:`checks`,
:func:`watermark`, :func:`prepare_dashboard`: JSON in, JSON out, named in
:data:`shuyu_platform.isolation.jail.TASKS`) and the call the platform service makes
(:func:`check_content`, :func:`watermarked_files`, :func:`dashboard_notebook`), which
hands the content over as JSON and reads the answer back.

What a refusal means for each:

- disclosure checks: :class:`~shuyu_platform.isolation.jail.JailRefusal`, which the
  service answers with 422 before anything is written (no request, no snapshot);
- watermarking at release: the content is released exactly as the reviewer saw it,
  packed in a ZIP archive with the release note (:func:`.watermark.pack`); packing
  reads nothing of the content;
- dashboard publishing: :class:`.release.ReleaseError` (the request stays approved and
  the failure is audited).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import PurePosixPath
from typing import Any

from ..isolation import jail
from . import disclosure
from .watermark import Mark, Marked, pack

# ------------------------------------------------------------------ inside the jail


def checks(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Jailed task: the disclosure report of ``payload["content"]`` under its context."""
    from . import requests as egress

    raw = payload["context"]
    context = disclosure.Context(
        rules=disclosure.Rules.from_dict(raw["rules"]),
        known_names=frozenset(raw["known_names"]),
        dp_numbers=frozenset(raw["dp_numbers"]),
        pseudonym_prefixes=tuple(raw["pseudonym_prefixes"]),
    )
    content = payload["content"]
    if content["kind"] == "dashboard":
        from ..dashboards.notebook import prepared_notebook

        prepared_notebook(content["document"], "")  # ValueError: not a valid notebook
    return egress.run_checks(content, context).as_dict()


def watermark(payload: Mapping[str, Any]) -> list[dict[str, str]]:
    """Jailed task: the watermarked files of a request's content (see :mod:`.watermark`)."""
    from .cell_files import output_files
    from .watermark import mark_file, mark_notebook

    content = payload["content"]
    mark = Mark(**payload["mark"])
    if content["kind"] == "cells":
        files = [
            mark_notebook(payload["title"], content["notebook"], content["cells"], mark),
            *output_files(content["notebook"], content["cells"], mark),
        ]
    elif content["kind"] == "job":  # every output, named by its path in the work folder
        files = [
            mark_file(job_file_name(f["path"]), base64.b64decode(f["data_b64"]), mark)
            for f in content["files"]
        ]
    else:
        files = [mark_file(content["path"], base64.b64decode(content["data_b64"]), mark)]
    return [
        {"name": f.name, "data_b64": base64.b64encode(f.data).decode(), "watermark": f.watermark}
        for f in files
    ]


def prepare_dashboard(payload: Mapping[str, Any]) -> str:
    """Jailed task: the published form of a dashboard notebook (UTF-8 JSON text)."""
    from ..dashboards.notebook import prepared_notebook

    return prepared_notebook(payload["document"], payload["title"]).decode()


def job_file_name(path: str) -> str:
    """The released name of a job's output: its path with ``/`` as ``__`` (no clashes)."""
    return str(path).replace("/", "__")


# ------------------------------------------------------------ the service's calls


def context_as_json(context: disclosure.Context) -> dict[str, Any]:
    """A check context as the jail receives it."""
    return {
        "rules": asdict(context.rules),
        "known_names": sorted(context.known_names),
        "dp_numbers": sorted(context.dp_numbers),
        "pseudonym_prefixes": list(context.pseudonym_prefixes),
    }


def check_content(
    content: Mapping[str, Any], context: disclosure.Context, limits: jail.Limits
) -> disclosure.Report:
    """The disclosure report of a snapshot's content, computed in the jail.

    Raises :class:`~shuyu_platform.isolation.jail.JailRefusal` when the content cannot
    be read within the limits (or is a dashboard that is not a valid notebook).
    """
    answer = jail.run(
        "egress.checks", {"content": dict(content), "context": context_as_json(context)}, limits
    )
    return disclosure.Report.from_dict(answer)


def watermarked_files(
    content: Mapping[str, Any], title: str, mark: Mark, limits: jail.Limits
) -> list[Marked]:
    """The released files of a request: watermarked in the jail, or packed as they are."""
    try:
        answer = jail.run(
            "egress.watermark",
            {"content": dict(content), "title": title, "mark": mark.as_dict()},
            limits,
        )
    except jail.JailRefusal as refusal:
        return [_packed(content, mark, refusal.message)]
    return [Marked(f["name"], base64.b64decode(f["data_b64"]), f["watermark"]) for f in answer]


def _packed(content: Mapping[str, Any], mark: Mark, why: str) -> Marked:
    """The content exactly as frozen, in a ZIP archive with the release note."""
    if content["kind"] == "file":
        name = PurePosixPath(str(content["path"])).name
        data = base64.b64decode(content["data_b64"])
    elif content["kind"] == "job":
        name = f"job-{content['job']}.json"
        data = json.dumps(dict(content), ensure_ascii=False, indent=1).encode()
    else:
        name = f"{PurePosixPath(str(content['notebook'])).stem or 'cells'}-cells.json"
        data = json.dumps(dict(content), ensure_ascii=False, indent=1).encode()
    packed = pack(name, data, mark)
    return Marked(f"{name}.zip", packed, f"packed with a release note (not watermarked: {why})")


def dashboard_notebook(document: Mapping[str, Any], title: str, limits: jail.Limits) -> bytes:
    """The published form of a dashboard notebook, made in the jail."""
    return str(
        jail.run("dashboards.prepare", {"document": dict(document), "title": title}, limits)
    ).encode()
