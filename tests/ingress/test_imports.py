"""Import requests: checks in the parsing jail, review, pseudonymised store, deletion;
bombs and malformed files refused without harm (the attacker is the merchant)."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from harness import REPO
from shuyu_platform.access.tenant_views import masking_secret
from shuyu_platform.core import db
from shuyu_platform.core.models import AuditEvent
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.identifiers import build_id_cards
from shuyu_platform.data.masking import pseudonymize, tenant_key
from shuyu_platform.ingress import imports

FIELDS = {
    "customer_id_card": {"identifier": True, "sensitive": False},
    "mobile": {"identifier": False, "sensitive": False},
    "premium": {"identifier": False, "sensitive": True},
}


@pytest.fixture
def settings(tmp_path: Path) -> Shuyu:
    settings = Shuyu(
        home=str(tmp_path / "home"),
        policies_dir=str(REPO / "policies"),
        jail_memory_mb=512,
        jail_wall_seconds=60,
    )
    settings.ensure_zones()
    db.upgrade(settings.db_url)
    return settings


def _cards(n: int) -> list[str]:
    import numpy as np

    regions = np.full(n, 510703)
    births = np.array(["1980-01-01"] * n, dtype="datetime64[D]") + np.arange(n)
    return [c.decode() for c in build_id_cards(regions, births, np.arange(n) % 1000)]


def _csv(rows: int = 200) -> bytes:
    table = pa.table(
        {
            "customer_id_card": _cards(rows),
            "mobile": [f"139{n:08d}" for n in range(rows)],
            "premium": [float(n) for n in range(rows)],
        }
    )
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def _submit(settings: Shuyu, data: bytes, *, name: str = "customers", filename: str = "c.csv"):
    return imports.submit(
        settings,
        tenant="kangning",
        username="alice",
        name=name,
        filename=filename,
        content_base64=base64.b64encode(data).decode(),
        lawful_source="本公司保单系统，客户签署授权书",
        authorisation="客户授权书 2026-0012",
        scenario="理赔率分析",
        fields=FIELDS,
    )


def test_request_checks_approval_store_and_deletion(settings: Shuyu) -> None:
    row = _submit(settings, _csv())
    assert row["status"] == "submitted" and row["rows"] == 200
    report = row["checks"]
    assert report["identifiers"] == {"id_card": 200, "mobile": 200, "uscc": 0, "bank_card": 0}
    assert report["columns"]["customer_id_card"]["identifiers"] == {"id_card": 200}
    assert report["verdict"] == "review"  # the mobile column is not declared an identifier
    assert "'mobile' holds direct identifiers" in report["warnings"][0]
    assert row["deadline"] > row["created_at"]
    assert not (settings.zone("imports") / "kangning" / "customers").exists()

    with pytest.raises(imports.IngressError, match="needs reasons"):
        imports.decide(settings, row["id"], reviewer="rita", action="reject", reason="")
    approved = imports.decide(settings, row["id"], reviewer="rita", action="approve", reason="")
    assert approved["status"] == "approved"
    stored = settings.zone("imports") / "kangning" / "customers" / "customers.parquet"
    table = pq.read_table(stored)
    assert approved["stored_sha256"]
    tokens = table.column("customer_id_card").to_pylist()
    assert all(t.startswith("I-") and len(t) == 18 for t in tokens)
    cards = _cards(200)
    assert not set(cards) & set(tokens)
    # Not joinable with a view: the tenant's view pseudonym of the same card differs.
    view_tokens = pseudonymize(pa.array(cards), tenant_key(masking_secret(settings), "kangning"))
    assert not {t[2:] for t in tokens} & {t for t in view_tokens.to_pylist()}
    assert stored.stat().st_mode & 0o777 == 0o444
    assert json.loads(stored.with_name("import.json").read_text())["name"] == "customers"
    assert not list((settings.zone("imports") / ".pending").iterdir())

    with pytest.raises(imports.IngressError, match="not awaiting review"):
        imports.decide(settings, row["id"], reviewer="rita", action="reject", reason="late")
    with pytest.raises(imports.IngressError) as other_tenant:
        imports.delete(settings, row["id"], username="bob", tenant="huaxin")
    assert other_tenant.value.status == 404
    gone = imports.delete(settings, row["id"], username="alice", tenant="kangning")
    assert gone["status"] == "deleted"
    assert not (settings.zone("imports") / "kangning" / "customers").exists()
    assert not (settings.zone("imports") / "kangning" / row["id"]).exists()
    with db.session_scope(settings.db_url) as session:
        actions = [
            e.action
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
            if e.action.startswith("import.")
        ]
    assert actions == ["import.submit", "import.approve", "import.delete"]


def test_rejection_and_declared_columns(settings: Shuyu) -> None:
    row = _submit(settings, _csv(20))
    rejected = imports.decide(
        settings, row["id"], reviewer="rita", action="reject", reason="授权书过期"
    )
    assert rejected["status"] == "rejected" and rejected["reason"] == "授权书过期"
    assert not list((settings.zone("imports") / ".pending").iterdir())
    table = pa.table({"premium": [1, 2, 3]})
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    with pytest.raises(imports.IngressError, match="'customer_id_card' is not in") as refused:
        _submit(settings, sink.getvalue(), name="other")
    assert refused.value.status == 422


def test_import_bombs_and_junk_are_refused_and_nothing_is_kept(
    settings: Shuyu, parquet_bomb: bytes
) -> None:
    """A Parquet file that expands to 16 GiB, a malformed one and a file over the size
    limit: each refused with a sentence, nothing stored, and the next good request
    still goes through."""
    with pytest.raises(imports.IngressError, match="refused") as refused:
        imports.submit(
            settings,
            tenant="kangning",
            username="alice",
            name="bomb",
            filename="bomb.parquet",
            content_base64=base64.b64encode(parquet_bomb).decode(),
            lawful_source="x",
            authorisation="x",
            scenario="x",
            fields={"x": {"identifier": True, "sensitive": False}},
        )
    assert refused.value.status == 422
    with pytest.raises(imports.IngressError, match="not a readable table"):
        _submit(settings, b"PAR1" + os.urandom(2000) + b"PAR1", filename="junk.parquet")
    settings.import_max_mb = 1
    with pytest.raises(imports.IngressError) as too_big:
        _submit(settings, b"a,b\n" + b"1,2\n" * 400_000)
    assert too_big.value.status == 413
    settings.import_max_mb = 32
    assert imports.listing(settings) == []
    assert not (settings.zone("imports") / ".pending").exists() or not list(
        (settings.zone("imports") / ".pending").iterdir()
    )
    assert _submit(settings, _csv(10))["status"] == "submitted"
