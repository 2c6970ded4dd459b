"""What a single-user server loads at start: none of the hub's machinery, no Node.js.

Each test runs a fresh interpreter as the spawners do (``python -I``, the in-sandbox
packages on the path), so the modules it reports are exactly what a server's start
imports. The savings themselves are measured by ``python -m benchmarks spawn``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

from harness import REPO

#: Modules only the hub uses; a server that imports them pays for nothing.
HUB_ONLY = ("alembic", "jupyterhub.handlers.base", "jupyterhub.app", "sqlalchemy.orm")


def _run(code: str) -> dict:
    """Run ``code`` in a fresh isolated interpreter; the JSON it prints last."""
    # Isolated mode ignores PYTHONPATH, as in a sandbox: the package path goes in by hand.
    bootstrap = f"import sys; sys.path.insert(0, {str(REPO / 'extensions')!r})\n"
    done = subprocess.run(
        [sys.executable, "-I", "-c", bootstrap + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


SERVER_IMPORTS = """
    import json, subprocess
    started = []
    popen_init = subprocess.Popen.__init__
    def record(self, args, *rest, **kwargs):
        started.append([str(arg) for arg in args])
        popen_init(self, args, *rest, **kwargs)
    subprocess.Popen.__init__ = record
    from shuyu_server.singleuser import skip_hub_only_work
    {before}
    import jupyterhub.singleuser, jupyterlab.labapp, jupyter_server.serverapp
    import shuyu_server.egress, shuyu_server.lab_api, shuyu_server.export
    loaded = [m for m in {hub_only!r} if m in sys.modules]
    node = [argv for argv in started if any(arg.endswith("node") for arg in argv)]
    print(json.dumps({{"loaded": loaded, "node": node}}))
"""


def test_a_server_start_imports_no_hub_machinery() -> None:
    """With the start-up trimmed, none of the hub-only modules is imported."""
    report = _run(SERVER_IMPORTS.format(before="skip_hub_only_work()", hub_only=HUB_ONLY))
    assert report["loaded"] == []
    assert report["node"] == []  # nor is Node.js asked for the npm registry


def test_without_the_trim_the_hub_machinery_is_imported() -> None:
    """The control: the same imports untrimmed pull in what the trim keeps out."""
    report = _run(SERVER_IMPORTS.format(before="", hub_only=HUB_ONLY))
    assert set(report["loaded"]) >= {"alembic", "jupyterhub.handlers.base"}
    if shutil.which("node"):
        assert report["node"], "jupyterlab.labapp no longer asks Node.js: drop the trim"


def test_deferred_hub_modules_load_on_first_use() -> None:
    """A deferred module is the real one as soon as anything of it is used."""
    report = _run(
        """
        from shuyu_server.singleuser import skip_hub_only_work
        skip_hub_only_work()
        import json
        import jupyterhub.orm as orm
        from jupyterhub import roles
        from jupyterhub.scopes import _intersect_expanded_scopes
        before = "sqlalchemy.orm" in sys.modules
        user = orm.User  # the first use imports the real module
        print(json.dumps({
            "before": before,
            "real": sys.modules["jupyterhub.orm"].User is user,
            "table": user.__tablename__,
            "roles": callable(roles.get_roles_for),
            "scopes": sorted(_intersect_expanded_scopes({"read:users"}, {"read:users"})),
        }))
        """
    )
    assert report == {
        "before": False,
        "real": True,
        "table": "users",
        "roles": True,
        "scopes": ["read:users"],
    }
