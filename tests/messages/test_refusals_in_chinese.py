"""Every refusal a merchant can meet in the sandbox reads Chinese first, English second:
the download refusals and the Request export page's and the JupyterLab extension's
refusals, provoked over real HTTP through the proxy and the gateway on a running server;
and the in-sandbox server's own sentences are the catalogue's (the sandbox does not
carry the catalogue, so it keeps copies that must not drift)."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator

import pytest

from harness import Platform, VisibleText
from merchant import Merchant, start
from shuyu_platform import messages
from shuyu_server import pages


def test_the_sandboxs_refusals_are_the_catalogues() -> None:
    for english, chinese in pages.REFUSALS.items():
        assert messages.zh(english) == chinese, english
    values = {"path": "a.csv", "size": 12_345, "limit": 10_000}
    said = pages.refusal("{path} has {size:,} bytes; at most {limit:,}", **values)
    assert said == messages.text("{path} has {size:,} bytes; at most {limit:,}", **values)
    assert said.startswith("a.csv 有 12,345 字节") and said.endswith("at most 10,000")


@pytest.fixture(scope="module")
def alice(platform: Platform) -> Iterator[Merchant]:
    merchant = start(platform, "alice")
    setup = merchant.kernel.run(
        textwrap.dedent(
            """
            import json, os
            cell = {"cell_type": "code", "id": "c0", "metadata": {}, "execution_count": 1,
                    "source": "print(1)", "outputs": [
                        {"output_type": "stream", "name": "stdout", "text": "1\\n"}]}
            notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}
            json.dump(notebook, open("zh-refusals.ipynb", "w"))
            open("zh-result.csv", "w").write("district,n\\n涪城区,12\\n")
            os.makedirs("zh-folder", exist_ok=True)
            if not os.path.lexists("zh-passwd"):
                os.symlink("/etc/passwd", "zh-passwd")
            """
        )
    )
    assert setup.ok, setup.error
    yield merchant
    merchant.kernel.close()


def _chinese_first(said: str, chinese: str, english: str) -> None:
    """``said`` has ``chinese``, and ``english`` after it, and no English before the
    Chinese (a file name of this test's, which both languages name, aside)."""
    assert chinese in said and english in said, said
    assert said.index(chinese) < said.index(english), said
    before = re.sub(r"zh-[\w.-]+", "", said[: said.index(chinese)])
    assert not re.search(r"[A-Za-z]{2}", before), said


PAGE = [
    ({"file": "zh-passwd"}, 403, "zh-passwd 指向工作目录之外", "leads outside the work folder"),
    ({"file": "zh-folder"}, 400, "zh-folder 不是文件", "is a directory, not a file"),
    ({"file": "zh-missing.csv"}, 404, "无法读取 zh-missing.csv", "zh-missing.csv: "),
    (
        {"notebook": "zh-refusals.ipynb", "cell": "7"},
        400,
        "中没有编号为 7 的单元格",
        "has no cell 7",
    ),
]


@pytest.mark.hub
@pytest.mark.parametrize(("form", "status", "chinese", "english"), PAGE)
def test_the_request_export_page_refuses_chinese_first(
    alice: Merchant, form: dict, status: int, chinese: str, english: str
) -> None:
    refused = alice.request("POST", "shuyu/export", data={**form, "purpose": "试一试"})
    assert refused.status_code == status, refused.text[:300]
    said = re.search(r"<p class=error id=error>(.*?)</p>", refused.text, re.S)
    assert said, refused.text[:500]
    _chinese_first(said.group(1), chinese, english)
    assert "<h1>无法处理 Cannot do that</h1>" in refused.text


LAB = [
    ({"purpose": "p"}, 400, "请选择笔记本中的单元格或一个文件", "Choose cells"),
    ({"file": "zh-result.csv"}, 400, "请填写用途", "needs a purpose statement"),
    ({"file": "zh-passwd", "purpose": "p"}, 403, "指向工作目录之外", "outside the work folder"),
    ({"file": "zh-result.csv", "purpose": "p" * 4001}, 400, "用途超过 4000", "more than 4000"),
]


@pytest.mark.hub
@pytest.mark.parametrize(("body", "status", "chinese", "english"), LAB)
def test_the_lab_extensions_routes_refuse_chinese_first(
    alice: Merchant, body: dict, status: int, chinese: str, english: str
) -> None:
    refused = alice.request("POST", "shuyu/api/exports", json=body)
    assert refused.status_code == status, refused.text[:300]
    _chinese_first(refused.json()["message"], chinese, english)


@pytest.mark.hub
def test_a_body_that_is_not_json_is_refused_chinese_first(alice: Merchant) -> None:
    refused = alice.session.post(
        f"{alice.base}/shuyu/api/exports",
        data=b"not json",
        headers={**alice.headers, "Content-Type": "application/json"},
        timeout=30,
    )
    assert refused.status_code == 400, refused.text[:300]
    _chinese_first(refused.json()["message"], "请求内容不是 JSON", "The body is not JSON")


@pytest.mark.hub
@pytest.mark.parametrize(
    "path", ["files/zh-result.csv", "nbconvert/html/zh-refusals.ipynb", "view/zh-result.csv"]
)
def test_a_refused_download_page_reads_chinese_first(alice: Merchant, path: str) -> None:
    refused = alice.request("GET", path)
    assert refused.status_code == 403 and "text/html" in refused.headers["Content-Type"]
    parser = VisibleText()
    parser.feed(refused.text)
    for text in parser.text:  # each piece of the page says it in Chinese before English
        latin = re.search(r"[A-Za-z]{2}", text)
        assert not latin or re.search(r"[\u4e00-\u9fff]", text[: latin.start()]), text
    (said,) = [text for text in parser.text if "Downloads are" in text]
    _chinese_first(said, "数域沙箱内不能下载", "Downloads are switched off")


@pytest.mark.hub
@pytest.mark.parametrize(
    "path", ["api/contents/zh-result.csv?format=base64", "api/contents/zh-result.csv"]
)
def test_a_refused_download_answer_reads_chinese_first(alice: Merchant, path: str) -> None:
    refused = alice.request("GET", path)
    assert refused.status_code == 403, refused.text[:300]
    _chinese_first(refused.json()["message"], "数域沙箱内不能下载", "Downloads are switched off")
