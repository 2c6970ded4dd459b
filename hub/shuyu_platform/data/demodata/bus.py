"""``bus_ridership`` (公交线路客流): hourly boardings and alightings per line and station."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import pyarrow as pa

from .columns import (
    _BoolArray,
    _Categorical,
    _ChunkBuilder,
    _date32,
    _epoch_day,
    _FloatArray,
    _IntArray,
    _rng,
    _text,
    _vocabulary,
)
from .enterprise import _SHORT_PLACES
from .people import _DISTRICT_NAMES, DISTRICTS

# =================================================================== bus_ridership

_URBAN_STATIONS: Final = (
    "涪城路口", "火车站", "科学城", "长虹大道", "临园路口", "富乐山", "南山中学", "高水",
    "小枧沟", "园艺山", "绵阳中学", "九洲大道", "跃进路", "剑南路口", "安昌桥", "东津",
    "平政桥", "南河体育中心", "磨家", "青义", "石马", "塘汛", "普明", "松垭", "高新区管委会",
    "经开区", "滨江路", "仙海", "御营坝", "五一广场", "人民公园", "沈家坝", "警钟街",
    "西山公园", "绵阳师范学院", "西南科技大学", "市中心医院", "市第三人民医院", "客运中心",
    "汽车南站", "南郊机场", "会展中心", "万达广场", "铁牛广场", "三江湖", "飞龙桥",
    "芙蓉汉城", "游仙区政府", "涪城区政府", "花园路口", "一环路东", "一环路南", "二环路北",
    "三江大坝", "红星街", "大天池", "涪滨路", "城郊", "火炬广场", "绵州大道",
)  # fmt: skip
_TOWN_GENERIC: Final = (
    "城南", "城北", "城东", "城西", "工业园区", "人民路", "新华街", "解放街", "中山路",
    "文化宫", "体育场", "农贸市场", "滨江路", "政务中心", "汽车站", "东街", "西街", "新区",
)  # fmt: skip
_TOWN_LANDMARKS: Final[dict[str, tuple[str, ...]]] = {
    "安州区": ("花荄", "安州区政府", "安昌河", "界牌", "益昌"),
    "三台县": ("潼川古城", "三台中学", "北坝", "芦溪", "琴泉寺"),
    "盐亭县": ("嫘祖广场", "云溪", "盐亭中学"),
    "梓潼县": ("七曲山", "文昌宫", "长卿山"),
    "北川羌族自治县": ("永昌", "巴拿恰", "羌族民俗博物馆", "安昌"),
    "平武县": ("报恩寺", "龙安", "平武中学"),
    "江油市": ("太白公园", "李白纪念馆", "中坝", "江油火车站", "窦圌山", "长钢", "诗城广场"),
}
_TOWN_STOP_PATTERNS: Final = ("{}客运站", "{}人民医院", "{}中学")
_HUB_STATIONS: Final = frozenset(
    {"火车站", "客运中心", "万达广场", "五一广场", "市中心医院", "汽车南站", "江油火车站"}
)

#: Town lines (41路..60路): home district and number of lines.
_TOWN_LINES: Final = (
    ("江油市", 6), ("三台县", 4), ("安州区", 3), ("盐亭县", 2),
    ("梓潼县", 2), ("北川羌族自治县", 2), ("平武县", 1),
)  # fmt: skip
#: Express lines; like many Chinese operators, no K4 (四 sounds like 死).
_EXPRESS_LINES: Final = ("K1", "K2", "K3", "K5")

#: Relative boardings / alightings by hour of day, 6..22.
_BOARD_BY_HOUR: Final = np.array(
    [0.6, 1.9, 2.3, 1.7, 0.9, 0.8, 0.9, 0.8, 0.7, 0.8, 1.0, 1.8, 2.1, 1.5, 0.8, 0.6, 0.4]
)
_ALIGHT_BY_HOUR: Final = np.array(
    [0.4, 1.6, 2.4, 1.9, 1.0, 0.8, 0.9, 0.8, 0.7, 0.8, 1.0, 1.6, 2.2, 1.7, 0.9, 0.6, 0.5]
)
_FIRST_HOUR: Final = 6
_SERVICE_FIRST_DAY: Final = _epoch_day(date(2024, 1, 1))
_SERVICE_DAYS: Final = 366
_SPRING_FESTIVAL: Final = (_epoch_day(date(2024, 2, 9)), _epoch_day(date(2024, 2, 17)))
_NATIONAL_DAY: Final = (_epoch_day(date(2024, 10, 1)), _epoch_day(date(2024, 10, 7)))


@dataclass(frozen=True)
class _BusNetwork:
    """The fixed line network: per line a home district and an ordered station list."""

    lines: pa.Array  # line names
    districts: _IntArray  # home district index per line
    popularity: _FloatArray  # per line
    first_stop: _IntArray  # offset of each line's stops in the flat arrays
    stop_count: _IntArray  # stops per line
    stations: pa.Array  # station names, flat over (line, stop)
    stop_weight: _FloatArray  # relative activity per (line, stop)
    line_choice: _Categorical  # how often each line appears in the records


@functools.cache
def _bus_network() -> _BusNetwork:
    """Build the network once. It is geography, not sample data: the seed does not move it."""
    rng = _rng(0, "bus_ridership", "network")
    homes = _line_homes(rng)
    names: list[str] = []
    counts: list[int] = []
    weights: list[float] = []
    for district in homes:
        stops = _line_stops(rng, district)
        spread = rng.lognormal(0.0, 0.4, len(stops))
        names.extend(stops)
        counts.append(len(stops))
        weights.extend(np.where([stop in _HUB_STATIONS for stop in stops], 2.5, spread))
    urban = np.array([home in ("涪城区", "游仙区") for home in homes])
    popularity = np.where(
        urban, rng.uniform(1.0, 3.0, len(homes)), rng.uniform(0.4, 1.0, len(homes))
    )
    stop_count = np.array(counts, dtype=np.int64)
    return _BusNetwork(
        lines=_vocabulary([*(f"{i}路" for i in range(1, 61)), *_EXPRESS_LINES]),
        districts=np.array([list(DISTRICTS).index(home) for home in homes], dtype=np.int64),
        popularity=popularity,
        first_stop=np.concatenate([[0], np.cumsum(stop_count)[:-1]]),
        stop_count=stop_count,
        stations=_vocabulary(names),
        stop_weight=np.array(weights),
        line_choice=_Categorical(popularity * stop_count),
    )


def _line_homes(rng: np.random.Generator) -> list[str]:
    """Home district of 1路..60路 then the express lines."""
    city = ["涪城区" if rng.random() < 0.6 else "游仙区" for _ in range(40)]
    towns = [district for district, count in _TOWN_LINES for _ in range(count)]
    return [*city, *towns, *("涪城区" for _ in _EXPRESS_LINES)]


def _line_stops(rng: np.random.Generator, district: str) -> list[str]:
    if district in ("涪城区", "游仙区"):
        pool = list(_URBAN_STATIONS)
        size = int(rng.integers(14, 31))
    else:
        short = _SHORT_PLACES[list(DISTRICTS).index(district)]
        local = [pattern.format(short) for pattern in _TOWN_STOP_PATTERNS]
        pool = [*_TOWN_LANDMARKS[district], *local, *_TOWN_GENERIC]
        size = int(rng.integers(8, 17))
    return [pool[i] for i in rng.choice(len(pool), size=size, replace=False)]


def _bus_builder(seed: int, total: int) -> _ChunkBuilder:
    return functools.partial(_bus_chunk, network=_bus_network())


def _bus_chunk(
    rng: np.random.Generator, start: int, n: int, *, network: _BusNetwork
) -> list[pa.Array]:
    line = network.line_choice.sample(rng, n)
    position = np.floor(rng.random(n) * network.stop_count[line]).astype(np.int64)
    stop = network.first_stop[line] + position
    day = _SERVICE_FIRST_DAY + rng.integers(0, _SERVICE_DAYS, n)
    hour = rng.integers(_FIRST_HOUR, _FIRST_HOUR + _BOARD_BY_HOUR.size, n)
    base = 6.0 * network.popularity[line] * network.stop_weight[stop] * _day_factor(day)
    along = position / np.maximum(network.stop_count[line] - 1, 1)
    weekend = _is_weekend(day)
    board = base * _hourly(_BOARD_BY_HOUR, hour, weekend) * (1.3 - 0.6 * along)
    alight = base * _hourly(_ALIGHT_BY_HOUR, hour, weekend) * (0.7 + 0.6 * along)
    return [
        _text(network.lines, line),
        _text(network.stations, stop),
        _date32(day),
        pa.array(hour.astype(np.int8), type=pa.int8()),
        pa.array(rng.poisson(board).astype(np.int32), type=pa.int32()),
        pa.array(rng.poisson(alight).astype(np.int32), type=pa.int32()),
        _text(_DISTRICT_NAMES, network.districts[line]),
    ]


def _is_weekend(day: _IntArray) -> _BoolArray:
    return (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday; Monday -> 0


def _hourly(profile: _FloatArray, hour: _IntArray, weekend: _BoolArray) -> _FloatArray:
    """Hour profile; weekends have flatter peaks."""
    weekday = profile[hour - _FIRST_HOUR]
    return np.where(weekend, 0.5 * weekday + 0.5 * profile.mean(), weekday)


def _day_factor(day: _IntArray) -> _FloatArray:
    """Fewer riders at weekends and over Spring Festival, more in National Day week."""
    factor = np.where(_is_weekend(day), 0.85, 1.0)
    factor = np.where((day >= _SPRING_FESTIVAL[0]) & (day <= _SPRING_FESTIVAL[1]), 0.6, factor)
    return np.where((day >= _NATIONAL_DAY[0]) & (day <= _NATIONAL_DAY[1]), 1.15, factor)
