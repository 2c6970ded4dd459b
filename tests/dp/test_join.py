"""DP queries joined with a merchant's import: a semi-join on a raw identifier, with the
raw dataset's privacy unit still bounding each person and the preview's error honest."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import REPO
from shuyu_platform.data import demodata
from shuyu_platform.data.masking import pseudonymize
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.dp import query
from shuyu_platform.dp.engine import Members, Source
from shuyu_platform.dp.opendp_engine import OpenDpEngine

KEY = b"an import's key, 32 bytes long.."
IMPORT = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def policy() -> DatasetPolicy:
    return load_policies(REPO / "policies")["health_records"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    return demodata.generate(folder, rows=5000, datasets=["health_records"])["health_records"]


def _spec(policy: DatasetPolicy, **body: object) -> query.QuerySpec:
    request = {"dataset": "health_records", "statistics": {"n": {"fn": "count"}}, **body}
    return query.parse(request, policy, list(policy.visible_fields()))


def test_a_join_counts_the_imports_people_within_the_previewed_error(
    policy: DatasetPolicy, raw: Path
) -> None:
    cards = pq.read_table(raw, columns=["id_card"]).column("id_card").combine_chunks()
    people = cards.slice(0, 800)
    tokens = frozenset(pseudonymize(people, KEY, "I-").to_pylist())
    outsiders = pseudonymize(pa.array(["110105194912310021"]), KEY, "I-").to_pylist()
    members = Members("id_card", KEY, tokens | frozenset(outsiders))
    source = Source(policy, raw, members=members)
    join = {"import": IMPORT, "on": "id_card", "import_column": "customer_id_card"}
    spec = _spec(policy, epsilon=0.25, alpha=0.001, join=join)
    assert spec.join is not None and spec.as_dict()["join"]["on"] == "id_card"
    engine = OpenDpEngine()
    preview = engine.estimate(source, spec)
    answer = engine.answer(source, spec)
    assert answer.estimate.as_dict() == preview.as_dict()
    [row] = answer.rows
    half_width = preview.statistics["n"]["ci_half_width"]
    assert abs(row["n"] - 800) <= half_width
    # The same query without the join counts everyone: the join really restricts.
    [everyone] = engine.answer(Source(policy, raw), _spec(policy, epsilon=0.25)).rows
    assert everyone["n"] > 4000


def test_a_join_needs_a_raw_identifier(policy: DatasetPolicy) -> None:
    bad = {"import": IMPORT, "on": "district", "import_column": "x"}
    with pytest.raises(query.QueryError, match=r"join\.on must be an identifier"):
        _spec(policy, join=bad)
    with pytest.raises(query.QueryError, match=r"join\.import must be"):
        _spec(policy, join={"import": "../x", "on": "id_card", "import_column": "x"})
