"""The message catalogue: Chinese first, every internal name labelled, China time."""

from __future__ import annotations

from datetime import UTC, datetime

from shuyu_platform import messages
from shuyu_platform.data.policy.masking_rules import MASKING_RULES
from shuyu_platform.egress.disclosure.rules import CHECKS, SEVERITIES
from shuyu_platform.egress.requests import TRANSITIONS as EXPORT_TRANSITIONS
from shuyu_platform.jobs.queue import TRANSITIONS as JOB_TRANSITIONS
from shuyu_platform.workflow.applications import NATURES
from shuyu_platform.workflow.applications import TRANSITIONS as APPLICATION_TRANSITIONS


def _names(transitions: dict[str, dict[str, str]]) -> set[str]:
    return set(transitions) | {action for moves in transitions.values() for action in moves}


def test_every_status_action_check_and_rule_has_a_chinese_and_an_english_label() -> None:
    names = (
        _names(EXPORT_TRANSITIONS)
        | _names(APPLICATION_TRANSITIONS)
        | _names(JOB_TRANSITIONS)
        | {"notebook", "script", "warning", "critical", "deleted"}
        | set(CHECKS)
        | set(SEVERITIES)
        | set(MASKING_RULES)
        | set(NATURES)
        | {"pass"}
    )
    missing = sorted(n for n in names if n not in messages.identifiers())
    assert not missing, f"no label in the catalogue for {missing}"
    for name in names:
        chinese, english = messages.zh(name), messages.en(name)
        assert chinese != name and english != name, name
        assert messages.label(name) == f"{chinese} {english}"  # Chinese first
        assert "_" not in messages.label(name)


def test_china_time_names_its_zone_and_moves_utc_eight_hours() -> None:
    assert messages.china_time("2026-12-07T15:59:59Z") == "2026-12-07 23:59 北京时间"
    assert messages.china_time(datetime(2026, 12, 31, 20, 0, tzinfo=UTC)) == (
        "2027-01-01 04:00 北京时间"
    )
    assert messages.china_time(None) == "—"
    assert messages.china_time("not a time") == "not a time"


def test_sentences_fill_their_values_and_braces_without_values_stay() -> None:
    assert messages.text("Not Found") == "未找到 Not Found"
    assert messages.text("{x} and {y}") == "{x} and {y}"  # untranslated, never formatted


def test_the_sandbox_names_cells_as_the_platform_does() -> None:
    from shuyu_server.pages import cell_name as in_sandbox

    for index, count in [(0, None), (6, 5), (12, None), (3, 0)]:
        assert in_sandbox(index, count) == messages.cell_name(index, count)
    assert messages.cell_name(6, 5) == "单元格 [5] cell [5]"  # JupyterLab's [5]
    assert "position 7" in messages.cell_name(6)


def test_a_findings_place_names_cell_output_and_row_as_pages_count_them() -> None:
    where = {"cell": 6, "execution_count": 5, "output": 0, "row": "涪城区", "column": "人数"}
    assert messages.place(where) == (
        "单元格 [5] cell [5] · 输出 1 output 1 · 行 row 涪城区 · 列 column 人数"
    )
    assert messages.place({"file": "out/r.csv", "line": 3}) == "文件 file out/r.csv · 行号 line 3"


def test_the_sandbox_places_findings_as_the_platform_does() -> None:
    from shuyu_server.export import findings_html
    from shuyu_server.pages import place as in_sandbox

    places = [
        {"cell": 6, "execution_count": 5, "output": 0, "row": "涪城区", "column": "人数"},
        {"file": "out/r.csv", "line": 3},
        {"cell": 2, "output": 1, "row": 0, "column": "n", "mime": "text/html"},
        {"mime": "image/png"},
        {},
    ]
    for where in places:
        assert in_sandbox(where) == messages.place(where), where
    answer = {
        "checks": {
            "findings": [
                {"check": "min_cell_count", "severity": "fail", "artefact": "cell 2 output 2",
                 "message": "…", "where": places[2]},
                {"check": "binary", "severity": "fail", "artefact": "file model.bin",
                 "message": "…", "where": {"mime": "application/octet-stream"}},
            ]
        }
    }  # fmt: skip
    shown = findings_html(answer)
    assert (
        "<td>第 3 个单元格 cell at position 3 · 输出 2 output 2 · 行 row 0 · 列 column n</td>"
        in (shown)
    )
    assert "cell 2 output 2" not in shown
    assert "<td>file model.bin</td>" in shown  # no place: the artefact's own name
