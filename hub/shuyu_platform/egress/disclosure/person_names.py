"""A generic model of person names: what a name looks like, not whose names are in the data.

The names check shown to merchants must not be an oracle: if it matched the merchant's
output against the raw data's names, a merchant could file outputs holding guessed
names and learn from the findings which guesses are real people in the data. So the
findings a merchant sees come from this model only, which answers the same for a real
and an invented name: Chinese names are a surname from the list of common surnames
(single or compound, :data:`SURNAMES`) followed by one or two characters, standing on
their own (a table cell, or a run of Chinese characters between spaces or punctuation)
and not ending like a place, organisation or statistic (涪城区, 人民医院, 合计);
romanised names are a capitalised pinyin surname before or after a capitalised word
(``Zhang Wei``, ``Wei Zhang``). Matches against the raw data's names are shown to the
reviewer only.
"""

from __future__ import annotations

import re
from typing import Final

#: Common Chinese surnames (the most frequent ~140 single-character ones).
_SINGLE: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
    "龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞"
    "左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕"
)
#: Compound surnames.
_COMPOUND: Final = (
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
    "宇文", "司徒", "夏侯", "令狐", "端木", "独孤", "南宫", "西门", "百里", "呼延"
)  # fmt: skip
SURNAMES: Final[frozenset[str]] = frozenset(_SINGLE) | frozenset(_COMPOUND)

#: Endings of words that are no names: places, organisations, statistics, categories.
_NOT_NAME_ENDINGS: Final = (
    *"区县市省镇乡村州路街巷号楼室院局委部厅处科所站队组司行社店厂场馆园校系类型计数额率量",
    *"费值价款金表式期年月日周季性度段级等项次人户家",
    *("中心", "集团", "公司", "医院", "银行", "合计", "总计", "平均", "小计"),
)

_HAN: Final = r"\u3400-\u4dbf\u4e00-\u9fff"
_HAN_RUN: Final = re.compile(f"[{_HAN}]{{2,4}}")
_PINYIN_SURNAMES: Final = (
    "Wang|Li|Zhang|Liu|Chen|Yang|Huang|Zhao|Wu|Zhou|Xu|Sun|Ma|Zhu|Hu|Guo|He|Gao|Lin|Luo|"
    "Zheng|Liang|Xie|Song|Tang|Han|Feng|Deng|Cao|Peng|Zeng|Xiao|Tian|Dong|Yuan|Pan|Yu|"
    "Jiang|Cai|Du|Ye|Cheng|Wei|Su|Lyu|Lu|Ding|Ren|Shen|Yao|Cui|Zhong|Tan|Fan|Jin|Shi|Liao|"
    "Jia|Xia|Fu|Fang|Bai|Zou|Meng|Xiong|Qin|Qiu|Yin|Xue|Yan|Duan|Lei|Hou|Long|Tao|Mao|Hao"
)
_PINYIN: Final = re.compile(
    rf"\b(?:(?:{_PINYIN_SURNAMES}) [A-Z][a-z]{{1,10}}|[A-Z][a-z]{{1,10}} (?:{_PINYIN_SURNAMES}))\b"
)


def _han_name(word: str) -> bool:
    """A run of 2-4 Chinese characters that looks like a surname plus a given name."""
    if not 2 <= len(word) <= 4 or word.endswith(_NOT_NAME_ENDINGS):
        return False
    if word[:2] in SURNAMES:
        return len(word) >= 3
    return word[0] in SURNAMES and len(word) <= 3


def looks_like_names(text: str) -> list[tuple[int, str]]:
    """(offset, name) of everything in ``text`` the model takes for a person's name.

    A Chinese candidate must be a whole run of Chinese characters (bounded by anything
    else: spaces, punctuation, digits, Latin letters, or the text's ends), as names in
    running Chinese text cannot be told from words without a dictionary.
    """
    found: list[tuple[int, str]] = []
    for m in re.finditer(f"[{_HAN}]+", text):
        if _HAN_RUN.fullmatch(m.group()) and _han_name(m.group()):
            found.append((m.start(), m.group()))
    found += [(m.start(), m.group()) for m in _PINYIN.finditer(text)]
    found.sort()
    return found
