"""What the automatic disclosure checks tell a merchant reads Chinese first, English second.

Two ways round: every sentence the checks put together (each literal passed to the
catalogue in ``egress/disclosure``) has a Chinese text in the catalogue, and a real run of
the checks over content that trips most of them gives findings whose every message
starts in Chinese and still carries the English after it.
"""

from __future__ import annotations

import ast
import io
import json
import re
from pathlib import Path

import pandas as pd
from PIL import Image

from shuyu_platform import messages
from shuyu_platform.data.identifiers import build_id_cards
from shuyu_platform.egress import disclosure
from shuyu_platform.egress.disclosure import Context, artefacts_from_file, run_checks

CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")
#: The functions of the catalogue the checks build their sentences with.
CATALOGUE_CALLS = {"say", "both", "text"}


def _catalogue_literals() -> set[str]:
    found: set[str] = set()
    for path in Path(disclosure.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in CATALOGUE_CALLS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


def test_every_sentence_of_the_checks_has_a_chinese_text() -> None:
    literals = _catalogue_literals()
    assert len(literals) > 40, "the checks no longer build their sentences from the catalogue"
    missing = sorted(m for m in literals if not CJK.search(messages.zh(m)))
    assert not missing, f"no Chinese in the catalogue for {missing}"
    for message in literals:  # the same placeholders on both sides
        assert set(re.findall(r"{[^}]*}", messages.zh(message))) == set(
            re.findall(r"{[^}]*}", message)
        ), message


def _png_with_trailing_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (10, 120, 200)).save(out, "PNG")
    return out.getvalue() + b"hidden"


def test_findings_shown_to_a_merchant_read_chinese_first_then_english() -> None:
    ids = [str(i) for i in build_id_cards(510703, "1990-01-01", range(1, 41))]
    rows = "\n".join(f"{i},{ids[i]},{i % 3 + 1}" for i in range(40))
    sums = pd.DataFrame({"区县": ["涪城区", "游仙区"], "total_income": [1234.5, 98.25]})
    artefacts = [
        *artefacts_from_file("people.csv", f"row,id,n\n{rows}\n".encode()),
        *artefacts_from_file("notes.txt", f"联系 {ids[0]}\n".encode() + b"line\n" * 600),
        *artefacts_from_file("income.csv", sums.to_csv(index=False).encode()),
        *artefacts_from_file("chart.png", _png_with_trailing_bytes()),
        *artefacts_from_file("fake.jpg", b"GIF89a not a jpeg"),
        *artefacts_from_file("model.bin", b"\x00\x01\x02"),
    ]
    report = run_checks(artefacts, Context()).public()
    checks = {f.check for f in report.findings}
    assert {"identifiers", "row_level", "min_cell_count", "dominance", "file_type"} <= checks
    assert {"image", "binary"} <= checks
    for finding in report.findings:
        text = finding.message
        chinese, latin = CJK.search(text), LATIN.search(text)
        assert chinese, f"{finding.check}: no Chinese in {text!r}"
        assert latin is None or chinese.start() < latin.start(), f"English first: {text!r}"
        assert latin, f"{finding.check}: the English is gone from {text!r}"
        assert ids[0] not in text  # masked in both languages


def test_refusals_read_chinese_first_and_keep_their_english() -> None:
    signed_out = "Sign in through the hub, or send 'Authorization: token <hub API token>'."
    assert messages.refusal(signed_out, 401).startswith("请通过平台登录")
    assert messages.refusal(signed_out, 401).endswith(signed_out)
    # A sentence with the request's own names: the status in Chinese, then the sentence.
    assert messages.refusal("bus_ridership has no field 'x'", 400) == (
        "请求有误：bus_ridership has no field 'x'"
    )
    assert messages.refusal("odd", 299) == "odd"  # no Chinese name: left as it is


def test_places_and_review_notes_are_said_in_each_language() -> None:
    counts = pd.DataFrame({"区县": ["涪城区", "游仙区"], "n": [3, 40]})
    outputs = [
        {"output_type": "display_data", "data": {"application/x-custom": "abc"}, "metadata": {}},
        {"output_type": "weird"},
    ]
    cell = {"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs}
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}
    artefacts = [
        *artefacts_from_file("counts.csv", counts.to_csv(index=False).encode()),
        *artefacts_from_file("broken.parquet", b"not parquet"),
        *artefacts_from_file("broken.ipynb", b"not a notebook"),
        *artefacts_from_file("outputs.ipynb", json.dumps(notebook).encode()),
    ]
    said = [f.message for f in run_checks(artefacts, Context()).public().findings]
    expected = [  # (the Chinese, the English after it), each in one finding
        ("单元格（行 0，列 'n'）计数为 3", "Cell (row 0, column 'n') counts 3"),
        ("无法按 parquet 格式读取（", "it could not be read as parquet ("),
        ("它不是可读取的笔记本", "it is not a readable notebook"),
        (
            "审核工具无法显示输出类型 application/x-custom",
            "Output type application/x-custom cannot",
        ),
        ("无法识别输出类型 'weird'", "Output type 'weird' is not understood"),
    ]
    for chinese, english in expected:
        found = [m for m in said if chinese in m and english in m]
        assert found, (chinese, said)
        assert found[0].index(chinese) < found[0].index(english), found[0]
        head = found[0][: found[0].index(english)]  # the Chinese half names no English place
        assert not re.search(r"\b(row|column|it|Output)\b", head), head
