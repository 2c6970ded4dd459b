"""Start ``jupyterhub-singleuser`` without a second and a half of wasted imports.

``jsonschema`` imports ``rfc3987_syntax`` whenever it is installed (``nbformat`` pulls it
in through ``jsonschema[format-nongpl]``), and that module compiles about 35 Lark
parsers at import time: on this project's machines it is 1.4 s of a server's ~4 s start,
for the ``iri`` / ``iri-reference`` formats that no Jupyter schema uses. Marking the
module absent before anything imports ``jsonschema`` makes ``jsonschema`` skip those two
format checks and nothing else (upstream: python-jsonschema/jsonschema#1428,
jupyter-server/jupyter_server#1559). Every spawner runs servers through this module:
``python -m shuyu_server.singleuser [server arguments]``.
"""

from __future__ import annotations

import sys


def main() -> int | None:
    """Run the single-user server with the slow optional import disabled."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
    from jupyterhub.singleuser import main as singleuser_main

    return singleuser_main()


if __name__ == "__main__":
    sys.exit(main())
