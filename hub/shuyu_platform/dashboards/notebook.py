"""The published form of a dashboard notebook: outputs cleared, the sandboxed kernel, a title.

Kept apart from the Voila service (:mod:`.service`) because it runs in the parsing jail
(:mod:`shuyu_platform.isolation.jail`), which imports nbformat and nothing heavier.
"""

from __future__ import annotations

from typing import Any, Final

import nbformat

#: The kernelspec every published dashboard runs with.
KERNEL_NAME: Final[str] = "shuyu-dashboard"
#: The notebook's name inside its published folder.
NOTEBOOK: Final[str] = "dashboard.ipynb"


def prepared_notebook(document: dict[str, Any], title: str) -> bytes:
    """The notebook as published: outputs cleared, the dashboard kernel, a title.

    Raises ``ValueError`` for a document that is not a valid nbformat 4 notebook.
    """
    try:
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
    except nbformat.ValidationError as err:
        raise ValueError(f"the dashboard is not a valid notebook: {err.message}") from None
    except (AttributeError, KeyError, TypeError) as err:
        raise ValueError(f"the dashboard is not a valid notebook: {err}") from None
    return nbformat.writes(notebook).encode()
