"""Released cells also as PNG, HTML, CSV and Excel files, named as every page names the cell,
each with its watermark: a footer band, a footer element, a release column."""

from __future__ import annotations

import base64
import csv
import io

import openpyxl
import pandas as pd
from PIL import Image

from shuyu_platform.egress.cell_files import output_files
from shuyu_platform.egress.watermark import COLUMN, Mark

MARK = Mark("0123456789abcdef0123456789abcdef", "kangning", "2026-11-23T10:00:00.000000Z")


def _png() -> str:
    out = io.BytesIO()
    Image.new("RGB", (300, 120), (10, 120, 200)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_images_html_and_tables_come_out_as_files_each_watermarked() -> None:
    table = pd.DataFrame({"人数": [128, 96]}, index=pd.Index(["涪城区", "游仙区"], name="区县"))
    cells = [
        {"index": 7, "execution_count": 5, "source": "plot", "outputs": [
            {"output_type": "display_data", "data": {"image/png": _png(), "text/plain": "<F>"}}]},
        {"index": 9, "source": "table", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "text only\n"},
            {"output_type": "execute_result", "data": {
                "text/html": table.to_html(), "text/plain": str(table)}}]},
    ]  # fmt: skip
    files = {f.name: f for f in output_files("work/rates.ipynb", cells, MARK)}
    assert sorted(files) == [
        "rates-cell5-output1.png",  # JupyterLab's [5]
        "rates-position10-output2.csv",  # never ran: its position
        "rates-position10-output2.html",
        "rates-position10-output2.xlsx",
    ]
    image = Image.open(io.BytesIO(files["rates-cell5-output1.png"].data))
    assert image.height > 120  # the visible footer band

    page = files["rates-position10-output2.html"].data.decode()
    assert "涪城区" in page and MARK.request_id in page.split("<footer", 1)[1]

    raw = files["rates-position10-output2.csv"].data
    assert raw.startswith(b"\xef\xbb\xbf")  # opens in Excel as UTF-8
    rows = list(csv.reader(io.StringIO(raw[3:].decode("utf-8"))))
    assert rows[0][-1] == COLUMN and rows[1][:2] == ["涪城区", "128"]
    assert rows[1][-1] == MARK.request_id

    # The same table as an Excel workbook, read back: labels, numbers, release column.
    book = openpyxl.load_workbook(io.BytesIO(files["rates-position10-output2.xlsx"].data))
    sheet = list(book.active.iter_rows(values_only=True))
    assert sheet[0] == ("区县", "人数", COLUMN)
    assert sheet[1:] == [("涪城区", 128, MARK.request_id), ("游仙区", 96, MARK.request_id)]
    assert MARK.request_id in book.properties.title
