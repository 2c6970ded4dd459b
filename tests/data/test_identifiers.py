"""Tests for data.identifiers: check characters, validators and vectorised builders."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from shuyu_platform.data.identifiers import (
    IdCard,
    build_id_cards,
    build_org_codes,
    build_usccs,
    id_card_check_char,
    is_mobile,
    is_valid_id_card,
    is_valid_org_code,
    is_valid_uscc,
    luhn_check_digit,
    luhn_valid,
    org_code_check_char,
    parse_id_card,
    uscc_check_char,
)

# The two worked examples printed in GB 11643-1999 itself.
STANDARD_ID_CARDS = ("11010519491231002X", "440524188001010014")
# Published examples: the OECD TIN sheet for China, and a code with letters in its body.
KNOWN_USCCS = ("91110000600037341L", "91350100M000100Y43")
# Classic Luhn example, the Visa test card and the UnionPay test card.
KNOWN_LUHN = ("79927398713", "4111111111111111", "6200000000000005")


def _with_check(first17: str) -> str:
    return first17 + id_card_check_char(first17)


def _replace(s: str, position: int, char: str) -> str:
    return s[:position] + char + s[position + 1 :]


# ------------------------------------------------------------------------ ID card


@pytest.mark.parametrize("card", STANDARD_ID_CARDS)
def test_standard_id_cards_are_valid(card: str) -> None:
    assert id_card_check_char(card[:17]) == card[17]
    assert is_valid_id_card(card)


@pytest.mark.parametrize("card", STANDARD_ID_CARDS)
def test_every_single_digit_change_is_detected(card: str) -> None:
    for position in range(17):
        for digit in "0123456789":
            if digit != card[position]:
                assert not is_valid_id_card(_replace(card, position, digit)), (position, digit)


@pytest.mark.parametrize(
    "text",
    [
        "11010519491231002x",  # lower-case x is not the canonical form
        "11010519491231002",  # 17 characters
        "11010519491231002XX",  # 19 characters
        "110105194912310021",  # wrong check digit
        "1101051949123100X2",  # X anywhere but last
        " 11010519491231002X",
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width digits
        "",
    ],
)
def test_malformed_id_cards_are_rejected(text: str) -> None:
    assert not is_valid_id_card(text)


@pytest.mark.parametrize(
    "first17",
    [
        "51070319990230123",  # 30 February
        "51070319991301123",  # month 13
        "51070319990000123",  # day 0
        "51070317990101123",  # before 1800
        "99070319900101123",  # no such province
    ],
)
def test_bad_dates_and_regions_fail_even_with_correct_check_char(first17: str) -> None:
    assert not is_valid_id_card(_with_check(first17))


def test_future_birth_date_is_rejected() -> None:
    tomorrow = (date.today() + timedelta(days=1)).strftime("%Y%m%d")
    assert not is_valid_id_card(_with_check(f"510703{tomorrow}123"))


def test_leap_day_birth_date_is_accepted() -> None:
    assert is_valid_id_card(_with_check("51070320000229123"))


def test_non_strings_are_rejected() -> None:
    assert not is_valid_id_card(None)  # type: ignore[arg-type]
    assert not is_valid_id_card(110105194912310021)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["1101051949123100", "1101051949123100A", "１１０１０５１９４９１２３１００２"]
)
def test_id_card_check_char_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ValueError):
        id_card_check_char(bad)


def test_parse_id_card() -> None:
    parsed = parse_id_card("11010519491231002X")
    assert parsed == IdCard(region_code="110105", birth_date=date(1949, 12, 31), sequence=2)
    assert parsed.sex == "F"
    assert parse_id_card("440524188001010014").sex == "M"
    with pytest.raises(ValueError):
        parse_id_card("11010519491231002x")


def test_build_id_cards_matches_scalar_rules() -> None:
    regions = np.array([510703, 510781, 110105, 440524])
    births = np.array(["1990-01-01", "2000-02-29", "1949-12-31", "1880-01-01"], "datetime64[D]")
    sequences = np.array([123, 456, 2, 1])
    cards = build_id_cards(regions, births, sequences)
    assert cards.dtype == np.dtype("S18")
    decoded = [card.decode() for card in cards]
    assert decoded[2:] == list(STANDARD_ID_CARDS)
    for card, region, birth, sequence in zip(decoded, regions, births, sequences, strict=True):
        parsed = parse_id_card(card)
        assert parsed.region_code == str(region)
        assert parsed.birth_date == birth.astype(date)
        assert parsed.sequence == sequence


def test_build_id_cards_broadcasts_and_validates() -> None:
    cards = build_id_cards(510703, np.array(["1990-01-01"], "datetime64[D]"), [1, 2, 3])
    assert len(set(cards.tolist())) == 3
    with pytest.raises(ValueError):
        build_id_cards([51070], ["1990-01-01"], [1])
    with pytest.raises(ValueError):
        build_id_cards([510703], ["1990-01-01"], [1000])
    with pytest.raises(ValueError):
        build_id_cards([510703], np.array(["NaT"], "datetime64[D]"), [1])


# ---------------------------------------------------------- organisation code


@pytest.mark.parametrize("code", ["600037341", "M000100Y4"])
def test_known_org_codes_are_valid(code: str) -> None:
    assert org_code_check_char(code[:8]) == code[8]
    assert is_valid_org_code(code)


def test_org_code_check_char_special_values() -> None:
    # sum = 6 * 2 = 12, 12 % 11 = 1, 11 - 1 = 10 -> "X"
    assert org_code_check_char("00000006") == "X"
    # sum = 0, 11 - 0 = 11 -> "0"
    assert org_code_check_char("00000000") == "0"


@pytest.mark.parametrize("code", ["600037342", "60003734", "6000373410", "m000100Y4", "60003734-1"])
def test_bad_org_codes_are_rejected(code: str) -> None:
    assert not is_valid_org_code(code)


def test_org_code_check_char_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        org_code_check_char("6000373")
    with pytest.raises(ValueError):
        org_code_check_char("6000373a")


def test_build_org_codes_matches_scalar() -> None:
    bodies = np.array([b"60003734", b"M000100Y", b"00000006", b"MA62475L"])
    codes = [code.decode() for code in build_org_codes(bodies)]
    assert codes[:3] == ["600037341", "M000100Y4", "00000006X"]
    assert all(is_valid_org_code(code) for code in codes)
    with pytest.raises(ValueError):
        build_org_codes(np.array([b"6000373a"]))
    with pytest.raises(ValueError):
        build_org_codes(np.array([b"600037345"]))  # too long: would be truncated


# ------------------------------------------------------ unified social credit code


@pytest.mark.parametrize("code", KNOWN_USCCS)
def test_known_usccs_are_valid(code: str) -> None:
    assert uscc_check_char(code[:17]) == code[17]
    assert is_valid_uscc(code)


@pytest.mark.parametrize("code", KNOWN_USCCS)
def test_every_single_character_change_is_detected(code: str) -> None:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    for position in range(18):
        for char in alphabet:
            if char != code[position]:
                assert not is_valid_uscc(_replace(code, position, char)), (position, char)


@pytest.mark.parametrize(
    "code",
    [
        "91110000600037341l",  # lower case
        "91110000600037341",  # 17 characters
        "91110000600037341LL",  # 19 characters
        "9111000060003734IL",  # I is not in the alphabet
        "911100006000373O1L",  # neither is O
        "911A0000600037341L",  # region code must be digits
        "",
    ],
)
def test_malformed_usccs_are_rejected(code: str) -> None:
    assert not is_valid_uscc(code)


def test_embedded_org_code_is_checked() -> None:
    first17 = "91510703" + "600037342"  # organisation check should be 1
    code = first17 + uscc_check_char(first17)
    assert not is_valid_uscc(code)
    assert is_valid_uscc(code, check_org_code=False)


def test_uscc_check_char_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        uscc_check_char("9111000060003734")
    with pytest.raises(ValueError):
        uscc_check_char("9111000060003734I")


def test_build_usccs_matches_scalar() -> None:
    orgs = build_org_codes(np.array([b"60003734", b"M000100Y", b"MA62475L"]))
    codes = [c.decode() for c in build_usccs([110000, 350100, 510703], orgs)]
    assert codes[:2] == list(KNOWN_USCCS)
    assert all(is_valid_uscc(code) for code in codes)
    per_row = build_usccs(510703, orgs, np.array([b"9", b"5", b"Y"]), np.array([b"1", b"2", b"1"]))
    assert [c.decode()[:2] for c in per_row] == ["91", "52", "Y1"]
    assert all(is_valid_uscc(c.decode()) for c in per_row)


def test_build_usccs_validates() -> None:
    with pytest.raises(ValueError):
        build_usccs([510703], np.array([b"600037342"]))  # wrong organisation check
    with pytest.raises(ValueError):
        build_usccs([510703], build_org_codes(np.array([b"6000I734"])))  # I not allowed
    with pytest.raises(ValueError):
        build_usccs([5107030], build_org_codes(np.array([b"60003734"])))
    with pytest.raises(ValueError):
        build_usccs([510703], build_org_codes(np.array([b"60003734"])), "91")


# ------------------------------------------------------------------ mobile, Luhn


@pytest.mark.parametrize("number", ["13800138000", "19912345678", "15012345678", "17700000000"])
def test_mobiles_are_recognised(number: str) -> None:
    assert is_mobile(number)


@pytest.mark.parametrize(
    "number",
    [
        "12345678901",  # second digit 2
        "10012345678",
        "23800138000",
        "1380013800",  # 10 digits
        "138001380000",  # 12 digits
        "+8613800138000",
        "138 0013 8000",
        "１３８００１３８０００",  # full-width digits
        "1380013800a",
        "",
    ],
)
def test_non_mobiles_are_rejected(number: str) -> None:
    assert not is_mobile(number)
    assert not is_mobile(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("number", KNOWN_LUHN)
def test_known_luhn_numbers(number: str) -> None:
    assert luhn_valid(number)
    assert luhn_check_digit(number[:-1]) == number[-1]


@pytest.mark.parametrize("number", KNOWN_LUHN)
def test_luhn_detects_every_single_digit_change(number: str) -> None:
    for position in range(len(number)):
        for digit in "0123456789":
            if digit != number[position]:
                assert not luhn_valid(_replace(number, position, digit)), (position, digit)


@pytest.mark.parametrize("text", ["", "0", "7992739871a", "７９９２７３９８７１３", "79927398710"])
def test_luhn_rejects_bad_input(text: str) -> None:
    assert not luhn_valid(text)


def test_luhn_check_digit_builds_valid_numbers() -> None:
    body = "621226400000000000"  # 18-digit UnionPay-style body
    assert luhn_valid(body + luhn_check_digit(body))
    with pytest.raises(ValueError):
        luhn_check_digit("")
    with pytest.raises(ValueError):
        luhn_check_digit("12a4")
