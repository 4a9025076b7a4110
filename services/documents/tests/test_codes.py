"""The anti-counterfeit code: unguessable, readable, and its check symbol catches typos."""

from __future__ import annotations

import itertools

import pytest

from services.documents import codes


def sample(n: int = 200) -> list[str]:
    return [codes.new_code() for _ in range(n)]


def test_a_code_has_at_least_80_random_bits_and_a_valid_check_symbol() -> None:
    assert codes.BODY_LENGTH * 5 >= 80
    made = sample(500)
    assert len(set(made)) == len(made)
    for code in made:
        assert len(code) == codes.LENGTH
        assert set(code) <= set(codes.ALPHABET)
        assert codes.checks(code)


def test_every_single_symbol_substitution_is_caught() -> None:
    for code in sample(100):
        for position, symbol in itertools.product(range(codes.LENGTH), codes.ALPHABET):
            if code[position] == symbol:
                continue
            typo = code[:position] + symbol + code[position + 1:]
            assert not codes.checks(typo), (code, typo)
            with pytest.raises(codes.InvalidCode, match="check character"):
                codes.parse(typo)


def test_most_adjacent_transpositions_are_caught() -> None:
    caught = total = 0
    for code in sample(200):
        for i in range(codes.LENGTH - 1):
            if code[i] == code[i + 1]:
                continue
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2:]
            total += 1
            caught += not codes.checks(swapped)
    assert caught / total > 0.95


def test_display_form_and_parsing_as_people_type_it() -> None:
    code = codes.new_code()
    shown = codes.display(code)
    assert len(shown.split("-")) == 5 and all(len(g) == 4 for g in shown.split("-"))
    assert codes.parse(shown) == code
    assert codes.parse(shown.lower()) == code
    assert codes.parse(" ".join(shown.split("-"))) == code
    assert codes.parse(code) == code


def test_look_alike_letters_read_as_digits() -> None:
    body = "1" * 10 + "0" * 9
    code = body + codes.check_symbol(body)
    typed = "I" + "L" + "i" + "l" + "1" * 6 + "O" * 4 + "o" * 5 + code[-1]
    assert codes.parse(typed) == code


@pytest.mark.parametrize("raw", ["", "ABC", "X" * 30, "UUUU-UUUU-UUUU-UUUU-UUUU", "💡" * 20])
def test_malformed_codes_are_refused_with_a_hint(raw: str) -> None:
    with pytest.raises(codes.InvalidCode) as info:
        codes.parse(raw)
    assert "20 letters and digits" in info.value.hint


def test_codes_are_found_in_extracted_text_even_with_spaced_hyphens() -> None:
    code = codes.new_code()
    other = codes.new_code()
    spaced = " - ".join(codes.display(code).split("-"))
    typo = codes.display(other)[:-1] + ("0" if other[-1] != "0" else "1")
    text = f"防伪码：{spaced}\n另一个 {typo} 无效"
    assert codes.find_in(text) == [code]
