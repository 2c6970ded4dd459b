"""Well-known text formats (ID cards, credit codes, phones, personal and enterprise
names): recognising a column's format from a sample, and inventing values of it or of
learned templates. Nothing here comes from any dataset."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from shuyu_platform.data.demodata import DISTRICTS
from shuyu_platform.data.identifiers import (
    USCC_ALPHABET,
    build_id_cards,
    build_org_codes,
    build_usccs,
    is_mobile,
    is_valid_id_card,
    is_valid_uscc,
)
from shuyu_platform.data.synthetic.kinds import _Ints
from shuyu_platform.data.synthetic.limits import _KIND_SHARE
from shuyu_platform.data.synthetic.sketches import _DIGIT, _HAN, _LOWER, _UPPER

# ------------------------------------------------------------- format recognition


def _recognise(sample: Sequence[str]) -> str:
    """The fake kind a column's sampled values call for (``template`` if none fits)."""
    if not sample:
        return "template"
    checks: tuple[tuple[str, Callable[[str], bool]], ...] = (
        ("id_card", is_valid_id_card),
        ("credit_code", is_valid_uscc),
        ("phone", is_mobile),
        ("person_name", _looks_like_name),
        ("enterprise_name", lambda s: _ENTERPRISE_RE.fullmatch(s) is not None),
    )
    for kind, check in checks:
        if sum(1 for value in sample if check(value)) >= _KIND_SHARE * len(sample):
            return kind
    return "template"


def _looks_like_name(value: str) -> bool:
    if _NAME_RE.fullmatch(value) is None:
        return False
    return value[0] in _SURNAME_SET or value[:2] in _COMPOUND_SURNAMES


_NAME_RE: Final = re.compile(r"[\u4e00-\u9fff]{2,4}")
_ENTERPRISE_RE: Final = re.compile(
    r".*[\u4e00-\u9fff].*(公司|合作社|企业|厂|商行|店|中心|事务所|工作室)"
)

# ======================================================================== fake values

# Common surnames, most frequent first, and a few compound ones. Generic lists: nothing
# here comes from any dataset.
_SURNAMES: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
_SURNAME_SET: Final = frozenset(_SURNAMES)
_COMPOUND_SURNAMES: Final = ("欧阳", "司马", "诸葛", "上官", "皇甫")
_GIVEN_CHARS: Final = (
    "伟强磊军勇杰涛明超刚平辉鹏华飞斌宇浩凯健俊帆旭宁龙林波成国建文志兵峰东亮海鑫洋雷阳晨博宏"
    "春毅诚彬松山川江昊然轩睿哲翔泽豪铭楠鸿振兴福德荣昌盛永庆云天逸皓霖煜锐钧航芳娜敏静丽艳娟"
    "霞秀英玲燕萍红梅琳婷雪慧倩颖琴兰丹洁蓉莉晶月欣怡佳琪璐瑶悦雯萱涵馨妍彤茜岚琼凤桂芬淑珍翠"
)
_PLACES: Final = ("绵阳", "四川", "涪城", "游仙", "安州", "三台", "盐亭", "梓潼", "北川", "江油")
_TRADE_CHARS: Final = (
    "鑫华盛源达兴恒泰丰瑞宏远诚信德润康佳明辉腾越新锦金利通安永顺汇博创富祥鼎中天宇"
)
_INDUSTRY_WORDS: Final = (
    "商贸", "科技", "建筑工程", "物流", "餐饮管理", "信息技术", "农业开发", "机械制造",
    "文化传播", "物业服务", "医药", "环保科技", "企业管理咨询", "汽车服务", "电子",
)  # fmt: skip
_LEGAL_FORMS: Final = ("有限公司", "有限责任公司", "股份有限公司")
_MOBILE_SEGMENTS: Final = np.array(
    [
        130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156,
        157, 158, 159, 166, 173, 175, 176, 177, 178, 180, 181, 182, 183, 185, 186, 187,
        188, 189, 191, 198, 199,
    ],
    dtype=np.int64,
)  # fmt: skip
_REGION_CODES: Final = np.array([int(code) for code in DISTRICTS.values()], dtype=np.int64)
#: Birth dates of invented ID card holders: adults born 1944-2006.
_BIRTH_DAYS: Final = (
    (date(1944, 1, 1) - date(1970, 1, 1)).days,
    (date(2007, 1, 1) - date(1970, 1, 1)).days,
)
_HAN_FILLER: Final = np.array([ord(c) for c in _SURNAMES + _GIVEN_CHARS], dtype=np.uint32)
_USCC_BYTES: Final = np.frombuffer(USCC_ALPHABET.encode("ascii"), dtype=np.uint8)


def _pick(rng: np.random.Generator, words: Sequence[str], n: int) -> pa.Array:
    """``n`` items of ``words`` drawn uniformly."""
    return pa.array(list(words), type=pa.string()).take(
        pa.array(rng.integers(0, len(words), n), type=pa.int64())
    )


def _join(*parts: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _digit_text(numbers: _Ints, width: int) -> pa.Array:
    """Non-negative integers as zero-padded decimal strings of ``width`` characters."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = ((numbers[:, None] // powers) % 10 + ord("0")).astype(np.uint8)
    return _ascii_rows(digits)


def _ascii_rows(matrix: npt.NDArray[np.uint8]) -> pa.Array:
    """An (n, width) matrix of ASCII bytes as n strings."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _fake_id_cards(rng: np.random.Generator, n: int) -> pa.Array:
    cards = build_id_cards(
        _REGION_CODES[rng.integers(0, _REGION_CODES.size, n)],
        rng.integers(*_BIRTH_DAYS, n).astype("datetime64[D]"),
        rng.integers(0, 1000, n),
    )
    return _ascii_rows(np.ascontiguousarray(cards).view(np.uint8).reshape(n, 18))


def _fake_credit_codes(rng: np.random.Generator, n: int) -> pa.Array:
    legacy = (rng.integers(0, 10, (n, 8)) + ord("0")).astype(np.uint8)
    reform = np.concatenate(
        [
            np.broadcast_to(np.frombuffer(b"MA6", dtype=np.uint8), (n, 3)),
            _USCC_BYTES[rng.integers(0, _USCC_BYTES.size, (n, 5))],
        ],
        axis=1,
    )
    bodies = np.where((rng.random(n) < 0.5)[:, None], reform, legacy)
    orgs = build_org_codes(np.ascontiguousarray(bodies, dtype=np.uint8).view("S8").ravel())
    codes = build_usccs(_REGION_CODES[rng.integers(0, _REGION_CODES.size, n)], orgs)
    return _ascii_rows(np.ascontiguousarray(codes).view(np.uint8).reshape(n, 18))


def _fake_phones(rng: np.random.Generator, n: int) -> pa.Array:
    segment = _MOBILE_SEGMENTS[rng.integers(0, _MOBILE_SEGMENTS.size, n)]
    return _digit_text(segment * 10**8 + rng.integers(0, 10**8, n), 11)


def _fake_names(rng: np.random.Generator, n: int) -> pa.Array:
    weights = 1.0 / (np.arange(len(_SURNAMES)) + 8.0)
    surname_index = rng.choice(len(_SURNAMES), size=n, p=weights / weights.sum())
    surnames = pa.array(list(_SURNAMES), type=pa.string()).take(pa.array(surname_index))
    compound = rng.random(n) < 0.01
    surnames = pc.if_else(pa.array(compound), _pick(rng, _COMPOUND_SURNAMES, n), surnames)
    first = _pick(rng, _GIVEN_CHARS, n)
    second = pc.if_else(pa.array(rng.random(n) < 0.7), _pick(rng, _GIVEN_CHARS, n), "")
    return _join(surnames, first, second)


def _fake_enterprise_names(rng: np.random.Generator, n: int) -> pa.Array:
    return _join(
        _pick(rng, _PLACES, n),
        _pick(rng, _TRADE_CHARS, n),
        _pick(rng, _TRADE_CHARS, n),
        _pick(rng, _INDUSTRY_WORDS, n),
        _pick(rng, _LEGAL_FORMS, n),
    )


_FAKERS: Final[dict[str, Callable[[np.random.Generator, int], pa.Array]]] = {
    "id_card": _fake_id_cards,
    "credit_code": _fake_credit_codes,
    "phone": _fake_phones,
    "person_name": _fake_names,
    "enterprise_name": _fake_enterprise_names,
}


def _fill_templates(rng: np.random.Generator, templates: Sequence[str], index: _Ints) -> pa.Array:
    """One string per entry of ``index``: its template with every marker drawn afresh."""
    n = index.size
    out: list[pa.Array] = []
    order = np.argsort(index, kind="stable")
    for which in np.unique(index).tolist():
        template = templates[which]
        k = int(np.count_nonzero(index == which))
        if not template:
            out.append(pa.array([""] * k, type=pa.string()))
            continue
        codes = np.frombuffer(template.encode("utf-32-le"), dtype=np.uint32)
        matrix = np.broadcast_to(codes, (k, codes.size)).copy()
        for marker, low, size in ((_DIGIT, 48, 10), (_UPPER, 65, 26), (_LOWER, 97, 26)):
            at = codes == ord(marker)
            if at.any():
                matrix[:, at] = low + rng.integers(0, size, (k, int(at.sum())))
        at = codes == ord(_HAN)
        if at.any():
            matrix[:, at] = _HAN_FILLER[rng.integers(0, _HAN_FILLER.size, (k, int(at.sum())))]
        out.append(pa.array(matrix.view(f"<U{codes.size}").ravel(), type=pa.string()))
    grouped = pa.concat_arrays(out) if out else pa.array([], type=pa.string())
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    return grouped.take(pa.array(inverse))
