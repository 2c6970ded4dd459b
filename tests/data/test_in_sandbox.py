"""Views, synthetic twins and grants as a merchant's kernel sees them, in a real sandbox."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest

from harness import Platform
from kernel import Execution, Kernel

pytestmark = pytest.mark.hub


def run(kernel: Kernel, code: str) -> Execution:
    result = kernel.run(textwrap.dedent(code))
    assert result.ok, result.error
    return result


@pytest.fixture(scope="module")
def kernels(platform: Platform) -> Iterator[dict[str, Kernel]]:
    opened = {}
    for name in ("alice", "bob"):
        session = platform.login(name)
        platform.start_server(session, name)
        opened[name] = Kernel(platform.url, session, name)
    yield opened
    for kernel in opened.values():
        kernel.close()


def test_views_list_shows_the_tenants_grants(kernels: dict[str, Kernel]) -> None:
    out = run(
        kernels["alice"],
        """
        import json, shuyu
        views = shuyu.views.list()
        print(json.dumps(views[["dataset", "expires_at"]].to_dict("records")))
        """,
    )
    listed = json.loads(out.stdout)
    assert [v["dataset"] for v in listed] == ["health_records", "social_insurance"]
    assert all(v["expires_at"] for v in listed)


def test_a_view_without_a_grant_is_a_clear_error(kernels: dict[str, Kernel]) -> None:
    attempt = kernels["bob"].run("import shuyu; shuyu.views.read('social_insurance')")
    assert attempt.error["ename"] == "DataNotFound"
    assert "available: enterprise_credit, health_records" in attempt.error["evalue"]
    assert "Apply for a grant" in attempt.error["evalue"]


def test_another_tenants_grants_are_refused_and_audited(
    kernels: dict[str, Kernel], platform: Platform
) -> None:
    attempt = kernels["alice"].run("import shuyu; shuyu.client.get('api/grants', tenant='huaxin')")
    assert attempt.error["ename"] == "PlatformError"
    assert "only your own tenant's grants (kangning)" in attempt.error["evalue"]
    denied = platform.audit_events("access.denied", actor="alice")
    assert any(e["target"] == "grants:huaxin" for e in denied)


def test_row_filter_and_pseudonyms_are_per_tenant(kernels: dict[str, Kernel]) -> None:
    code = """
        import json, shuyu
        df = shuyu.views.read('health_records')
        districts = sorted(set(df['district']))
        print(json.dumps({'ids': df['person_id'].tolist(), 'districts': districts}))
        """
    alice = json.loads(run(kernels["alice"], code).stdout)
    bob = json.loads(run(kernels["bob"], code).stdout)
    assert bob["districts"] == ["涪城区", "游仙区"]
    assert len(alice["districts"]) > 2
    assert alice["ids"] and bob["ids"] and not set(alice["ids"]) & set(bob["ids"])


def test_synthetic_twins_have_the_raw_schema(
    kernels: dict[str, Kernel], platform: Platform
) -> None:
    out = run(
        kernels["bob"],
        """
        import json, shuyu, pyarrow.parquet as pq
        schema = pq.read_schema(shuyu.synthetic.path('health_records'))
        print(json.dumps({
            'names': shuyu.synthetic.names(),
            'schema': [[f.name, str(f.type)] for f in schema],
            'rows': len(shuyu.synthetic.read('health_records')),
        }))
        """,
    )
    seen = json.loads(out.stdout)
    assert seen["names"] == [
        "bus_ridership",
        "enterprise_credit",
        "health_records",
        "social_insurance",
    ]
    raw = pq.read_schema(platform.home / "raw" / "health_records.parquet")
    assert seen["schema"] == [[f.name, str(f.type)] for f in raw]
    assert seen["rows"] > 0
