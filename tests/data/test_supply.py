"""Supplied raw versions: validated with row and column named, stored once, made current
atomically (also when killed), kept and withdrawn; views and twins follow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from harness import REPO
from shuyu_platform.access import grants, rebuilds
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import AuditEvent
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data import demodata, identifiers, supply
from shuyu_platform.data.policy import DatasetPolicy, load_policies

ROWS = 3000


@pytest.fixture(scope="module")
def policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


@pytest.fixture(scope="module")
def source_table(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    folder = tmp_path_factory.mktemp("source")
    demodata.generate(folder, rows=ROWS, datasets=["health_records"], seed=7)
    return pq.read_table(folder / "health_records.parquet")


@pytest.fixture
def settings(tmp_path: Path) -> Shuyu:
    settings = Shuyu(home=str(tmp_path / "home"), policies_dir=str(REPO / "policies"))
    settings.ensure_zones()
    db.upgrade(settings.db_url)
    demodata.generate(settings.zone("raw"), rows=ROWS, datasets=["health_records"])
    return settings


def _supply(settings: Shuyu, policy: DatasetPolicy, path: Path, keep: int = 3) -> supply.Supplied:
    return supply.supply(
        settings.zone("raw"), settings.db_url, policy, path, actor="tester", keep=keep
    )


def _current_bytes(settings: Shuyu) -> bytes:
    return (settings.zone("raw") / "health_records.parquet").read_bytes()


def _with_column(table: pa.Table, name: str, values: list) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, pa.field(name, pa.string()), pa.array(values, pa.string()))


def test_wrong_type_is_refused_with_row_and_column(
    settings: Shuyu, policies: dict[str, DatasetPolicy], source_table: pa.Table, tmp_path: Path
) -> None:
    before = _current_bytes(settings)
    amounts = [str(v) for v in source_table.column("dosage_mg").to_pylist()]
    amounts[1233] = "twelve"
    path = tmp_path / "wrong.parquet"
    pq.write_table(_with_column(source_table, "dosage_mg", amounts), path)
    with pytest.raises(supply.SupplyError, match=r"row 1234, column 'dosage_mg'.*'twelve'"):
        _supply(settings, policies["health_records"], path)
    assert _current_bytes(settings) == before
    assert not list((settings.zone("raw") / "health_records").glob("*.parquet"))
    assert supply.history(settings.db_url, "health_records") == []


def test_missing_column_and_bad_id_card_are_refused(
    settings: Shuyu, policies: dict[str, DatasetPolicy], source_table: pa.Table, tmp_path: Path
) -> None:
    policy = policies["health_records"]
    before = _current_bytes(settings)
    missing = tmp_path / "missing.csv"
    pacsv.write_csv(source_table.drop_columns(["phone"]), missing)
    with pytest.raises(supply.SupplyError, match=r"column 'phone' is missing"):
        _supply(settings, policy, missing)

    cards = source_table.column("id_card").to_pylist()
    good = cards[2500]
    wrong_check = "0" if good[-1] != "0" else "1"
    cards[2500] = good[:-1] + wrong_check
    bad = tmp_path / "bad-id.csv"
    pacsv.write_csv(_with_column(source_table, "id_card", cards), bad)
    with pytest.raises(supply.SupplyError, match=r"row 2501, column 'id_card': not a valid"):
        _supply(settings, policy, bad)

    nulls = source_table.column("name").to_pylist()
    nulls[9] = None
    empty = tmp_path / "empty-name.parquet"
    pq.write_table(_with_column(source_table, "name", nulls), empty)
    with pytest.raises(supply.SupplyError, match=r"row 10, column 'name': empty"):
        _supply(settings, policy, empty)
    assert _current_bytes(settings) == before


def test_good_version_becomes_current_and_views_and_twin_follow(
    settings: Shuyu, policies: dict[str, DatasetPolicy], source_table: pa.Table, tmp_path: Path
) -> None:
    policy = policies["health_records"]
    with db.session_scope(settings.db_url) as session:
        grants.issue(session, policy, tenant="kangning", fields=None, actor="tester")
    path = tmp_path / "today.csv"
    pacsv.write_csv(source_table, path)
    done = _supply(settings, policy, path)
    assert (done.version, done.previous, done.rows) == (2, 1, ROWS)
    link = settings.zone("raw") / "health_records.parquet"
    assert os.readlink(link) == "health_records/2.parquet"
    stored = settings.zone("raw") / "health_records" / "2.parquet"
    assert stored.stat().st_mode & 0o777 == 0o444
    assert pq.read_table(link).schema == pq.read_schema(
        settings.zone("raw") / "health_records/1.parquet"
    )
    current = supply.current(settings.zone("raw"), policy)
    assert (current.version, current.path) == (2, stored)
    statuses = {r["version"]: r["status"] for r in supply.history(settings.db_url)}
    assert statuses == {2: "current", 1: "superseded"}

    rebuild_id = rebuilds.start(settings, "health_records", 2)
    result = rebuilds.rebuild(settings, policies, "health_records", rebuild_id, actor="tester")
    assert result["status"] == "done", result
    assert result["views"] == 1 and result["twin_sha256"]
    [row] = rebuilds.status(settings, "health_records")
    assert (row["status"], row["done"], row["total"]) == ("done", 2, 2)
    with db.session_scope(settings.db_url) as session:
        events = {
            e.action: json.loads(e.detail)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        }
        assert audit.verify(session).ok
    first = supply.history(settings.db_url, "health_records")[-1]
    assert events["supply.current"]["previous_sha256"] == first["sha256"]
    assert events["supply.current"]["sha256"] == done.sha256
    assert events["supply.current"]["previous_version"] == 1
    assert events["view.build"]["raw_sha256"] == done.sha256


def test_retention_and_withdrawal(
    settings: Shuyu, policies: dict[str, DatasetPolicy], source_table: pa.Table, tmp_path: Path
) -> None:
    policy = policies["health_records"]
    path = tmp_path / "v.parquet"
    pq.write_table(source_table, path)
    for _ in range(3):
        _supply(settings, policy, path, keep=2)
    folder = settings.zone("raw") / "health_records"
    assert sorted(p.name for p in folder.glob("*.parquet")) == ["3.parquet", "4.parquet"]
    statuses = {r["version"]: r["status"] for r in supply.history(settings.db_url)}
    assert statuses == {4: "current", 3: "superseded", 2: "expired", 1: "expired"}

    with pytest.raises(supply.SupplyError, match="needs a reason"):
        supply.withdraw(settings.zone("raw"), settings.db_url, policy, 4, actor="t", reason=" ")
    now = supply.withdraw(
        settings.zone("raw"), settings.db_url, policy, 4, actor="t", reason="source recalled it"
    )
    assert now == 3
    assert not (folder / "4.parquet").exists()
    assert supply.current(settings.zone("raw"), policy).version == 3
    with pytest.raises(supply.SupplyError, match="only version") as refused:
        supply.withdraw(settings.zone("raw"), settings.db_url, policy, 3, actor="t", reason="x")
    assert refused.value.status == 409
    statuses = {r["version"]: r["status"] for r in supply.history(settings.db_url)}
    assert statuses[4] == "withdrawn" and statuses[3] == "current"


@pytest.mark.slow
def test_a_killed_supply_leaves_the_previous_version_current(
    settings: Shuyu, policies: dict[str, DatasetPolicy], source_table: pa.Table, tmp_path: Path
) -> None:
    """SIGKILL while the new version is being written: the link still names the old one,
    the database agrees, and the next supply cleans up and succeeds."""
    policy = policies["health_records"]
    first = tmp_path / "first.parquet"
    pq.write_table(source_table, first)
    _supply(settings, policy, first)
    before = os.readlink(settings.zone("raw") / "health_records.parquet")
    big = tmp_path / "big.csv"
    pacsv.write_csv(pa.concat_tables([source_table] * 50), big)  # 150,000 rows
    env = {**os.environ, "SHUYU_HOME": settings.home, "SHUYU_POLICIES_DIR": settings.policies_dir}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shuyu_platform.cli", "supply", "health_records", str(big)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = settings.zone("raw") / "health_records"
    deadline = time.monotonic() + 120
    while not list(folder.glob(".3.parquet.tmp-*")):
        assert proc.poll() is None, "the supply ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert os.readlink(settings.zone("raw") / "health_records.parquet") == before
    assert supply.current_row(settings.db_url, "health_records")["version"] == 2
    assert list(folder.glob(".3.parquet.tmp-*"))  # left behind by the kill

    done = _supply(settings, policy, first)
    assert done.version == 3 and done.previous == 2
    assert not list(folder.glob(".*.tmp-*"))


def test_reconcile_follows_the_link(
    settings: Shuyu, policies: dict[str, DatasetPolicy], source_table: pa.Table, tmp_path: Path
) -> None:
    """A supply killed between storing and the database's ``current``: the link decides."""
    policy = policies["health_records"]
    path = tmp_path / "v.parquet"
    pq.write_table(source_table, path)
    _supply(settings, policy, path)
    supply._link(settings.zone("raw"), policy, 1)  # as if killed before recording it
    supply.reconcile(settings.zone("raw"), settings.db_url, policy)
    statuses = {r["version"]: r["status"] for r in supply.history(settings.db_url)}
    assert statuses == {2: "superseded", 1: "current"}


def test_rebuilds_left_running_are_marked_interrupted(settings: Shuyu) -> None:
    rebuild_id = rebuilds.start(settings, "health_records", 2)
    assert rebuilds.interrupted(settings) == [rebuild_id]
    [row] = rebuilds.status(settings)
    assert row["status"] == "failed" and "interrupted" in row["detail"]


def test_unsupported_and_empty_files(
    settings: Shuyu, policies: dict[str, DatasetPolicy], source_table: pa.Table, tmp_path: Path
) -> None:
    policy = policies["health_records"]
    text = tmp_path / "data.json"
    text.write_text("{}")
    with pytest.raises(supply.SupplyError, match=r"\.parquet or \.csv") as refused:
        _supply(settings, policy, text)
    assert refused.value.status == 415
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 not really")
    with pytest.raises(supply.SupplyError, match="not a readable Parquet"):
        _supply(settings, policy, junk)
    empty = tmp_path / "empty.parquet"
    pq.write_table(source_table.slice(0, 0), empty)
    with pytest.raises(supply.SupplyError, match="no rows"):
        _supply(settings, policy, empty)


def test_vectorised_validators_agree_with_the_scalar_ones(source_table: pa.Table) -> None:
    rng = np.random.default_rng(5)
    cards = [c for c in source_table.column("id_card").to_pylist()[:500]]
    mutated = []
    for card in cards:
        position = int(rng.integers(0, 18))
        mutated.append(card[:position] + str(int(rng.integers(0, 10))) + card[position + 1 :])
    samples = cards + mutated + ["11010519491231002X", "110105194912310021", "11010520250229001X"]
    matrix = np.frombuffer("".join(samples).encode(), dtype=np.uint8).reshape(len(samples), 18)
    assert identifiers.valid_id_card_rows(matrix).tolist() == [
        identifiers.is_valid_id_card(s) for s in samples
    ]
    codes = [c.decode() for c in demodata_usccs()]
    broken = [c[:10] + ("1" if c[10] != "1" else "2") + c[11:] for c in codes]
    samples = codes + broken
    matrix = np.frombuffer("".join(samples).encode(), dtype=np.uint8).reshape(len(samples), 18)
    assert identifiers.valid_uscc_rows(matrix).tolist() == [
        identifiers.is_valid_uscc(s) for s in samples
    ]


def demodata_usccs() -> list[bytes]:
    bodies = np.array([f"{n:08d}" for n in range(10_000_000, 10_000_300)], dtype="S8")
    orgs = identifiers.build_org_codes(bodies)
    return list(identifiers.build_usccs(np.full(len(orgs), 510703), orgs))


def test_the_shuyu_commands(settings: Shuyu, source_table: pa.Table, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from shuyu_platform.cli import main

    path = tmp_path / "today.parquet"
    pq.write_table(source_table, path)
    home = ["--home", settings.home]
    runner = CliRunner(env={"SHUYU_POLICIES_DIR": settings.policies_dir})
    done = runner.invoke(main, ["supply", *home, "health_records", str(path), "--no-rebuild"])
    assert done.exit_code == 0, done.output
    assert "health_records version 2 is current: 3,000 rows" in done.output
    bad = tmp_path / "bad.parquet"
    pq.write_table(source_table.drop_columns(["sex"]), bad)
    refused = runner.invoke(main, ["supply", *home, "health_records", str(bad)])
    assert refused.exit_code == 1 and "column 'sex' is missing" in refused.output
    listed = runner.invoke(main, ["raw", "versions", *home, "--json"])
    assert [v["status"] for v in json.loads(listed.output)] == ["current", "superseded"]
    withdrawn = runner.invoke(
        main, ["raw", "withdraw", *home, "health_records", "2", "--reason", "recalled"]
    )
    assert withdrawn.exit_code == 0, withdrawn.output
    assert "current: version 1" in withdrawn.output
    rebuilt = runner.invoke(main, ["raw", "rebuilds", *home])
    assert "health_records" in rebuilt.output and "done" in rebuilt.output
