"""Charts with Chinese labels (disclosure page, annual report), drawn with matplotlib.

The platform's matplotlib defaults live in one file, ``kernels/matplotlibrc`` (a CJK font
first: Debian's ``fonts-noto-cjk``); sandboxes and dashboard kernels read it through
``MATPLOTLIBRC``, the platform's own charts through :func:`configure`. Charts are SVG with
glyphs drawn as paths, so a browser or PDF printer needs no font to show them, and they
are embedded as ``data:`` images (the pages' content security policy allows no other).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.ticker import MaxNLocator

from ..core.settings import MATPLOTLIBRC


def configure(rcfile: Path = MATPLOTLIBRC) -> None:
    """Apply the platform's matplotlib defaults to this process.

    Matplotlib caches the list of system fonts the first time it runs; a CJK font
    installed after that is not in the cache, so it is added here from the system's
    font folders when the cached list lacks it.
    """
    matplotlib.rcParams.update(
        matplotlib.rc_params_from_file(str(rcfile), use_default_template=False)
    )
    manager = font_manager.fontManager
    if not any(entry.name.startswith("Noto Sans CJK") for entry in manager.ttflist):
        for path in font_manager.findSystemFonts():
            if "NotoSansCJK" in Path(path).name:
                manager.addfont(path)


def bar_chart(
    title: str, labels: Sequence[str], series: dict[str, Sequence[float]], *, ylabel: str = ""
) -> str:
    """A grouped bar chart as SVG text: one group per label, one bar per series."""
    configure()
    figure, axes = plt.subplots(figsize=(7.5, 3.2), dpi=100)
    try:
        count = max(len(series), 1)
        width = 0.8 / count
        for index, (name, values) in enumerate(series.items()):
            offsets = [i + (index - (count - 1) / 2) * width for i in range(len(labels))]
            axes.bar(offsets, list(values), width=width, label=name)
        axes.set_xticks(range(len(labels)), list(labels))
        axes.set_title(title)
        if ylabel:
            axes.set_ylabel(ylabel)
        if len(series) > 1:
            axes.legend(fontsize="small")
        axes.spines[["top", "right"]].set_visible(False)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        figure.tight_layout()
        out = io.StringIO()
        figure.savefig(out, format="svg")
        return out.getvalue()
    finally:
        plt.close(figure)


def data_uri(svg: str) -> str:
    """An SVG as a ``data:`` URI for an ``<img>``."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
