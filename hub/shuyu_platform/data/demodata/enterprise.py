"""``enterprise_credit`` (企业信用): enterprises, representatives, shareholders, capital."""

from __future__ import annotations

import functools
from datetime import date
from typing import Final, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import (
    _ascii_column,
    _BoolArray,
    _byte_matrix,
    _Categorical,
    _ChunkBuilder,
    _concat,
    _date32,
    _epoch_day,
    _FloatArray,
    _IntArray,
    _money,
    _Permutation,
    _text,
    _vocabulary,
)
from .people import (
    _DISTRICT_NAMES,
    _DISTRICT_WEIGHTS,
    _POPULATION_AGE_CDF,
    _ages,
    _birth_days,
    _credit_code_permutations,
    _credit_codes,
    _IdCardIssuer,
    _names,
)

# =============================================================== enterprise_credit


class _Industry(NamedTuple):
    name: str  # GB/T 4754 section name
    weight: float
    words: tuple[str, ...]  # industry words used in enterprise names


_INDUSTRIES: Final = (
    _Industry("农、林、牧、渔业", 5, ("农业科技", "生态农业", "畜牧养殖", "果蔬种植")),
    _Industry("制造业", 14, ("机械制造", "电子科技", "新材料", "精密制造", "食品")),
    _Industry("建筑业", 8, ("建筑工程", "建设工程", "装饰工程", "市政工程")),
    _Industry("批发和零售业", 22, ("商贸", "贸易", "商业", "医药连锁")),
    _Industry("交通运输、仓储和邮政业", 5, ("物流", "运输", "供应链管理", "仓储")),
    _Industry("住宿和餐饮业", 7, ("餐饮管理", "酒店管理", "餐饮服务")),
    _Industry("信息传输、软件和信息技术服务业", 8, ("信息技术", "软件", "网络科技", "数据科技")),
    _Industry("金融业", 1.5, ("投资管理", "融资担保", "小额贷款")),
    _Industry("房地产业", 4, ("房地产开发", "置业", "物业服务")),
    _Industry("租赁和商务服务业", 12, ("企业管理咨询", "商务服务", "广告传媒", "人力资源服务")),
    _Industry("科学研究和技术服务业", 6, ("科技", "检测技术", "工程设计", "环保科技")),
    _Industry("居民服务、修理和其他服务业", 5, ("家政服务", "汽车维修", "美容美发")),
    _Industry("文化、体育和娱乐业", 2.5, ("文化传播", "体育发展", "影视传媒")),
)
_INDUSTRY_NAMES: Final = _vocabulary(i.name for i in _INDUSTRIES)
_INDUSTRY: Final = _Categorical([i.weight for i in _INDUSTRIES])
_INDUSTRY_WORDS: Final = _vocabulary(w for i in _INDUSTRIES for w in i.words)
_INDUSTRY_WORD_COUNT: Final = np.array([len(i.words) for i in _INDUSTRIES], dtype=np.int64)
_INDUSTRY_WORD_START: Final = np.concatenate([[0], np.cumsum(_INDUSTRY_WORD_COUNT)[:-1]])

_TRADE_CHARS: Final = _vocabulary(
    "鑫华盛源达兴恒泰丰瑞宏远诚信德润康佳明辉腾越新锦金利通安永顺汇博创富祥鼎中天宇嘉和凯旺昌隆"
    "星海龙科益美晟弘蜀涪川蓉卓峰鹏众合力"
)
#: Short place name of each district, in the order of :data:`DISTRICTS`.
_SHORT_PLACES: Final = ("绵阳", "绵阳", "安州", "三台", "盐亭", "梓潼", "北川", "平武", "江油")
_NAME_PLACES: Final = _vocabulary(_SHORT_PLACES)
_LEGAL_FORMS: Final = _vocabulary(["有限公司", "股份有限公司"])
_JOINT_STOCK_RATE: Final = 0.08

_ESTABLISHED_YEARS: Final = np.arange(1990, 2025)
_ESTABLISHED_YEAR: Final = _Categorical(np.exp(0.09 * (_ESTABLISHED_YEARS - 1990)))
_ROUND_CAPITALS: Final = np.array([3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000.0])
_ROUND_CAPITAL: Final = _Categorical([2, 6, 14, 8, 8, 16, 20, 9, 6, 6, 3, 1.5, 0.5])
_HOLDER_COUNT: Final = _Categorical([0.38, 0.34, 0.18, 0.10])
_SNAPSHOT_DAY: Final = _epoch_day(date(2024, 12, 31))


def _enterprise_builder(seed: int, total: int) -> _ChunkBuilder:
    return functools.partial(
        _enterprise_chunk,
        perms=_credit_code_permutations(seed, "enterprise_credit/credit_code"),
        id_cards=_IdCardIssuer(seed, "enterprise_credit"),
    )


def _enterprise_chunk(
    rng: np.random.Generator,
    start: int,
    n: int,
    *,
    perms: tuple[_Permutation, _Permutation],
    id_cards: _IdCardIssuer,
) -> list[pa.Array]:
    district = _DISTRICT_WEIGHTS.sample(rng, n)
    industry = _INDUSTRY.sample(rng, n)
    established = _established_days(rng, n)
    joint_stock = rng.random(n) < _JOINT_STOCK_RATE
    rep_male = rng.random(n) < 0.72
    rep_district = np.where(rng.random(n) < 0.8, district, _DISTRICT_WEIGHTS.sample(rng, n))
    rep_birth = _representative_births(rng, established)
    rep_name = _names(rng, rep_male)
    penalties = rng.poisson(rng.gamma(0.25, 0.6, n)).astype(np.int32)
    return [
        _ascii_column([_byte_matrix(_credit_codes(perms, start, established, district))], n),
        _enterprise_names(rng, district, industry, joint_stock),
        rep_name,
        id_cards.issue(rep_district, rep_birth, rep_male),
        _money(_registered_capital(rng, joint_stock)),
        _equity_structure(rng, rep_name),
        _text(_INDUSTRY_NAMES, industry),
        _text(_DISTRICT_NAMES, district),
        _date32(established),
        pa.array(penalties, type=pa.int32()),
        _money(np.where(penalties > 0, penalties * rng.lognormal(np.log(3000.0), 1.0, n), 0.0)),
    ]


def _established_days(rng: np.random.Generator, n: int) -> _IntArray:
    years = _ESTABLISHED_YEARS[_ESTABLISHED_YEAR.sample(rng, n)]
    first = (years - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    return np.minimum(first + rng.integers(0, 365, n), _SNAPSHOT_DAY)


def _representative_births(rng: np.random.Generator, established: _IntArray) -> _IntArray:
    """Birth dates of legal representatives: 23-75 today and adult when the firm was set up."""
    years_since = (_SNAPSHOT_DAY - established) // 365 + 1
    low = np.maximum(23, years_since + 18)
    ages = _ages(rng, _POPULATION_AGE_CDF, low, np.full(established.size, 75, dtype=np.int64))
    return _birth_days(rng, np.full(established.size, _SNAPSHOT_DAY, dtype=np.int64), ages)


def _enterprise_names(
    rng: np.random.Generator, district: _IntArray, industry: _IntArray, joint_stock: _BoolArray
) -> pa.Array:
    """``<place><2-char trade name><industry word><有限公司|股份有限公司>``."""
    n = district.size
    word = _INDUSTRY_WORD_START[industry] + (
        rng.integers(0, 1 << 30, n) % _INDUSTRY_WORD_COUNT[industry]
    )
    place = np.where(rng.random(n) < 0.5, 0, district)
    return _concat(
        _text(_NAME_PLACES, place),
        _text(_TRADE_CHARS, rng.integers(0, len(_TRADE_CHARS), n)),
        _text(_TRADE_CHARS, rng.integers(0, len(_TRADE_CHARS), n)),
        _text(_INDUSTRY_WORDS, word),
        _text(_LEGAL_FORMS, joint_stock.astype(np.int64)),
    )


def _registered_capital(rng: np.random.Generator, joint_stock: _BoolArray) -> _FloatArray:
    """Registered capital in 10k yuan: often a round figure, otherwise lognormal."""
    n = joint_stock.size
    round_figure = _ROUND_CAPITALS[_ROUND_CAPITAL.sample(rng, n)]
    free_figure = np.maximum(1.0, rng.lognormal(np.log(120.0), 1.4, n))
    capital = np.where(rng.random(n) < 0.55, round_figure, free_figure)
    return np.where(joint_stock, np.maximum(capital * 5, 500.0), capital)


def _equity_structure(rng: np.random.Generator, rep_name: pa.Array) -> pa.Array:
    """``"王伟:60%;李娜:40%"``: 1-4 holders, whole percentages summing to 100, largest first.

    The first holder is usually the legal representative.
    """
    n = len(rep_name)
    holders = _HOLDER_COUNT.sample(rng, n) + 1
    percent = _percentages(rng, holders)
    first = pc.if_else(pa.array(rng.random(n) < 0.85), rep_name, _names(rng, rng.random(n) < 0.6))
    parts: list[pa.Array | str] = []
    for slot in range(4):
        name = first if slot == 0 else _names(rng, rng.random(n) < 0.6)
        piece = _concat(name, ":", pc.cast(pa.array(percent[:, slot]), pa.string()), "%")
        present = pa.array(slot < holders)
        if slot:
            parts.append(pc.if_else(present, ";", ""))
        parts.append(pc.if_else(present, piece, ""))
    return _concat(*parts)


def _percentages(rng: np.random.Generator, holders: _IntArray) -> _IntArray:
    """(n, 4) whole percentages, each holder at least 1%, rows summing to 100, descending."""
    shares = rng.gamma(1.2, 1.0, (holders.size, 4)) * (np.arange(4) < holders[:, None])
    shares /= shares.sum(axis=1, keepdims=True)
    percent = (np.floor(shares * (100 - holders[:, None])) + 1) * (shares > 0)
    percent[:, 0] += 100 - percent.sum(axis=1)
    return -np.sort(-percent.astype(np.int64), axis=1)
