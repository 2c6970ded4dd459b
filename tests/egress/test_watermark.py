"""Watermarks: every released file type names its request, visibly or in a table column."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import nbformat
import numpy as np
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from shuyu_platform.egress.watermark import (
    COLUMN,
    METADATA_KEY,
    Mark,
    mark_file,
    mark_notebook,
)

MARK = Mark("0123456789abcdef0123456789abcdef", "kangning", "2026-11-23T10:00:00.000000Z")
RID = MARK.request_id


def _png(width: int = 200, height: int = 100) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def test_csv_gets_a_release_column_and_keeps_its_cells() -> None:
    marked = mark_file("out/summary.csv", '区县,人数\n涪城区,"1,204"\n游仙区,873\n'.encode(), MARK)
    assert marked.name == "summary.csv" and marked.watermark == "column"
    assert marked.data.startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    lines = marked.data.decode("utf-8-sig").splitlines()
    assert lines == [f"区县,人数,{COLUMN}", f'涪城区,"1,204",{RID}', f"游仙区,873,{RID}"]


def test_a_csv_with_a_byte_order_mark_is_marked_with_one_only() -> None:
    marked = mark_file("bom.csv", "\ufeff区县,人数\n涪城区,12\n".encode(), MARK)
    assert marked.data.startswith(b"\xef\xbb\xbf") and not marked.data[3:].startswith(b"\xef")


def test_tsv_uses_tabs() -> None:
    marked = mark_file("t.tsv", b"a\tb\n1\t2\n", MARK)
    assert marked.data.decode("utf-8-sig").splitlines() == [f"a\tb\t{COLUMN}", f"1\t2\t{RID}"]


def test_parquet_gets_a_column_and_schema_metadata() -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"district": ["a", "b"], "n": [12, 30]}), sink)
    marked = mark_file("r.parquet", sink.getvalue().to_pybytes(), MARK)
    table = pq.read_table(pa.BufferReader(marked.data))
    assert table.column(COLUMN).to_pylist() == [RID, RID]
    assert table.column("n").to_pylist() == [12, 30]
    assert json.loads(table.schema.metadata[METADATA_KEY.encode()])["request_id"] == RID


def test_xlsx_gets_a_release_column_on_every_sheet_and_workbook_properties() -> None:
    source = openpyxl.Workbook()
    source.active.append(["区县", "人数"])
    source.active.append(["涪城区", 128])
    source.create_sheet("empty")
    raw = io.BytesIO()
    source.save(raw)
    marked = mark_file("out/rates.xlsx", raw.getvalue(), MARK)
    assert marked.name == "rates.xlsx" and marked.watermark.startswith("column")
    book = openpyxl.load_workbook(io.BytesIO(marked.data))
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    assert rows == [("区县", "人数", COLUMN), ("涪城区", 128, RID)]
    assert list(book["empty"].iter_rows(values_only=True)) == []
    assert RID in book.properties.title and RID in json.loads(book.properties.description).values()


def test_json_records_and_objects_get_a_field() -> None:
    records = json.loads(mark_file("r.json", b'[{"n": 12}, {"n": 30}]', MARK).data)
    assert records == [{"n": 12, COLUMN: RID}, {"n": 30, COLUMN: RID}]
    obj = json.loads(mark_file("r.json", b'{"rate": 0.25}', MARK).data)
    assert obj["rate"] == 0.25 and obj[COLUMN]["request_id"] == RID
    scalar = json.loads(mark_file("r.json", b"3.5", MARK).data)
    assert scalar == {COLUMN: MARK.as_dict(), "data": 3.5}


def test_text_and_html_get_a_visible_footer() -> None:
    text = mark_file("notes.md", "# 结论\n理赔率 0.25\n".encode(), MARK).data.decode()
    assert text.startswith("# 结论\n理赔率 0.25") and text.rstrip().endswith("provenance.json")
    assert f"Shuyu release {RID}" in text
    html = mark_file("r.html", b"<html><body><p>x</p></body></html>", MARK).data.decode()
    assert html.index(f"Shuyu release {RID}") < html.index("</body>")


def test_png_gets_a_footer_band_and_a_text_chunk() -> None:
    marked = mark_file("chart.png", _png(), MARK)
    with Image.open(io.BytesIO(marked.data)) as image:
        assert image.format == "PNG"
        assert image.size[0] == 200 and image.size[1] > 100
        assert json.loads(image.text[METADATA_KEY])["request_id"] == RID
        band = image.convert("RGB").crop((0, 100, 200, image.size[1]))
        dark = int((np.asarray(band).sum(axis=2) < 300).sum())
    assert dark > 50, "the footer band must carry drawn text"


def test_jpeg_gets_a_footer_band_and_a_comment() -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 120), (200, 30, 30)).save(out, "JPEG")
    marked = mark_file("photo.jpeg", out.getvalue(), MARK)
    with Image.open(io.BytesIO(marked.data)) as image:
        assert image.format == "JPEG" and image.size[1] > 120
        assert RID.encode() in image.info["comment"]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("model.bin", b"\x00\x01binary", ""),
        ("broken.parquet", b"PAR1 not really", "Parquet file cannot be read"),
        ("fake.png", b"GIF89a....", "not a readable image"),
        ("latin1.csv", "a;b\né;1\n".encode("latin-1"), "not UTF-8"),
        ("broken.xlsx", b"PK\x03\x04 not a workbook", "Excel workbook cannot be read"),
    ],
)
def test_what_cannot_be_marked_inside_is_packed_with_a_release_note(
    name: str, data: bytes, reason: str
) -> None:
    marked = mark_file(name, data, MARK)
    assert marked.name == f"{name}.zip" and reason in marked.watermark
    with zipfile.ZipFile(io.BytesIO(marked.data)) as archive:
        assert archive.read(name) == data, "the approved bytes are released unchanged"
        assert RID in archive.read("SHUYU-RELEASE.txt").decode()
        assert RID.encode() in archive.comment


def test_released_notebook_of_cells_is_valid_and_marked_everywhere() -> None:
    png = base64.b64encode(_png()).decode()
    cells = [
        {
            "index": 3,
            "source": "df.groupby('district').size()",
            "outputs": [
                {
                    "output_type": "execute_result",
                    "execution_count": 3,
                    "data": {"text/plain": "district  n\n涪城区  120"},
                    "metadata": {},
                },
                {"output_type": "display_data", "data": {"image/png": png}, "metadata": {}},
                {"output_type": "stream", "name": "stdout", "text": "done\n"},
            ],
        }
    ]
    marked = mark_notebook("理赔率汇总", "work/analysis.ipynb", cells, MARK)
    assert marked.name == "analysis-release.ipynb"
    notebook = nbformat.reads(marked.data.decode(), as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["shuyu"]["request_id"] == RID
    assert f"Shuyu release {RID}" in notebook.cells[0].source
    assert f"Shuyu release {RID}" in notebook.cells[-1].source
    code = notebook.cells[1]
    assert code.source == "df.groupby('district').size()"
    assert code.outputs[0]["metadata"][COLUMN] == RID
    assert code.outputs[0]["data"]["text/plain"] == "district  n\n涪城区  120"
    image = base64.b64decode(code.outputs[1]["data"]["image/png"])
    with Image.open(io.BytesIO(image)) as shown:
        assert shown.size[1] > 100, "images in the notebook carry the footer band"
    assert code.outputs[2]["text"] == "done\n"


def test_a_notebook_file_is_marked_and_stays_valid() -> None:
    document = nbformat.v4.new_notebook()
    document.cells.append(nbformat.v4.new_markdown_cell("hello"))
    marked = mark_file("report.ipynb", nbformat.writes(document).encode(), MARK)
    notebook = nbformat.reads(marked.data.decode(), as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["shuyu"]["request_id"] == RID
    assert RID in notebook.cells[-1].source
