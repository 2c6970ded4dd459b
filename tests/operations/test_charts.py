"""Chinese labels in charts: with the platform's matplotlib defaults and Debian's
fonts-noto-cjk, no glyph is missing (matplotlib's warning is an error here), in this
process and in a fresh interpreter that only reads MATPLOTLIBRC, as sandboxes do."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import matplotlib
import pytest

from harness import Platform
from shuyu_platform.core.settings import MATPLOTLIBRC
from shuyu_platform.operations import charts

LABELS = ["一月", "二月", "三月"]


def test_a_chart_with_chinese_labels_misses_no_glyph() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" fails the test
        svg = charts.bar_chart(
            "场景申请审批 Applications", LABELS, {"批准 Approved": [3, 1, 2], "驳回": [0, 1, 0]}
        )
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    family = matplotlib.font_manager.FontProperties(family=["sans-serif"])
    assert "NotoSansCJK" in matplotlib.font_manager.findfont(family)


SANDBOX_CHART = """
import io, warnings
warnings.simplefilter("error")
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.bar(["医疗", "社保", "公交"], [1, 2, 3])
ax.set_title("各部门数据使用量")
fig.savefig(io.BytesIO(), format="png")
family = matplotlib.font_manager.FontProperties(family=["sans-serif"])
print(matplotlib.font_manager.findfont(family))
"""


def test_a_fresh_interpreter_with_the_platform_matplotlibrc_renders_chinese(tmp_path) -> None:
    env = {**os.environ, "MATPLOTLIBRC": str(MATPLOTLIBRC), "MPLCONFIGDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-I", "-c", SANDBOX_CHART],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NotoSansCJK" in done.stdout


def test_without_the_cjk_font_the_check_would_fail() -> None:
    """The check is real: DejaVu Sans alone lacks the glyphs, and matplotlib warns."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with matplotlib.rc_context({"font.family": "DejaVu Sans"}):
            figure = matplotlib.figure.Figure()
            figure.add_subplot().set_title("数据")
            figure.savefig(__import__("io").BytesIO(), format="png")
    assert any("missing from font" in str(w.message) for w in caught)


@pytest.mark.hub
def test_a_chart_in_a_real_sandbox_kernel_misses_no_glyph(platform: Platform) -> None:
    done = platform.run_code("alice", SANDBOX_CHART)
    assert "NotoSansCJK" in done.stdout, done
