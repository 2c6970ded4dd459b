"""The committed lifecycle diagrams are drawn from the transition tables, not by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from shuyu_platform import lifecycles
from shuyu_platform.egress import requests as egress
from shuyu_platform.workflow import applications, onboarding


def test_every_committed_diagram_matches_its_table() -> None:
    stale = lifecycles.stale()
    assert not stale, (
        f"docs/lifecycles/ is behind the code for {stale}: "
        "run `python -m shuyu_platform.lifecycles`"
    )


@pytest.mark.parametrize("name", sorted(lifecycles.LIFECYCLES))
def test_each_diagram_draws_every_transition(name: str) -> None:
    life = lifecycles.LIFECYCLES[name]
    page = lifecycles.render(name)
    assert f"[*] --> {life.initial}" in page
    for status, edges in life.table().items():
        for action, after in edges.items():
            assert f"    {status} --> {after}: {action}" in page


def test_a_changed_table_makes_the_committed_diagram_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycles.write(tmp_path)
    assert lifecycles.stale(tmp_path) == []
    changed = {**egress.TRANSITIONS, "rejected": {"reopen": "submitted"}}
    monkeypatch.setattr(egress, "TRANSITIONS", changed)
    assert lifecycles.stale(tmp_path) == ["egress-request"]
    monkeypatch.setattr(applications, "TRANSITIONS", {"compliance_review": {}})
    monkeypatch.setattr(onboarding, "TRANSITIONS", {"submitted": {"approve": "approved"}})
    assert {"application", "registration"} <= set(lifecycles.stale(tmp_path))


def test_check_mode_exits_non_zero_on_a_stale_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycles, "DOCS_DIR", tmp_path)
    lifecycles.write(tmp_path)
    (tmp_path / "grant.md").write_text("hand-edited\n", encoding="utf-8")
    assert lifecycles.main(["--check"]) == 1
    assert lifecycles.main([]) == 0
    assert lifecycles.main(["--check"]) == 0
