"""The reviewer's dashboard preview: Markdown and outputs as Voila lays them out, no code,
no script, no raw HTML beyond tables."""

from __future__ import annotations

from shuyu_platform.dashboards.preview import preview

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPj/"
    "HwADAgH/kcdQ5QAAAABJRU5ErkJggg=="
)


def _html(document: dict) -> str:
    return "".join(preview(document))


def test_markdown_and_outputs_are_shown_and_code_is_not() -> None:
    document = {"cells": [
        {"cell_type": "markdown", "source": "# 区县看板\n\n**说明** <script>alert(1)</script>"},
        {"cell_type": "code", "source": "secret_query()", "outputs": [
            {"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<Fig>"}},
            {"output_type": "execute_result", "data": {
                "text/html": '<table onclick="x()"><tr><td>涪城区</td></tr></table>'
                             '<script>alert(2)</script><img src=x onerror=y()>',
                "text/plain": "table"}},
            {"output_type": "stream", "name": "stdout", "text": "合计 128\n"},
        ]},
    ]}  # fmt: skip
    html = _html(document)
    assert "<h1>区县看板</h1>" in html and "<strong>说明</strong>" in html
    assert f'src="data:image/png;base64,{PNG}"' in html
    assert "<td>涪城区</td>" in html and "合计 128" in html
    assert "secret_query" not in html  # code is never shown, as on the dashboard
    assert "<script" not in html and "onclick" not in html and "onerror" not in html


def test_an_empty_dashboard_says_so() -> None:
    assert "空看板" in _html({"cells": []})
