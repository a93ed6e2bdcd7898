"""Sums from the user's words, worked out exactly (voice/llm/arithmetic.py)."""

from __future__ import annotations

import pytest

from voice.llm.arithmetic import solve, words_to_numbers


@pytest.mark.parametrize("words, value", [
    ("What is seventeen times twenty-three?", 391), ("what's 36 x 47?", 1692), ("What is 12 * 12?", 144),
    ("What's fifty-eight plus sixty-seven?", 125), ("What is one hundred and five divided by five?", 21),
    ("what is 10 percent of 250?", 25), ("What is 7 squared?", 49), ("What is 3 minus 5?", -2),
    ("How much is 1,250 plus 750?", 2000), ("what is 7 divided by 2", 3.5),
    ("If I buy twelve boxes with twenty-four eggs each, how many eggs do I have?", 288),
])
def test_the_sum_in_the_words_is_worked_out(words, value):
    assert solve(words).value == value


def test_that_refers_to_the_previous_answer():
    assert solve("And if I take away thirty from that?", last=125).value == 95
    assert solve("What is that times two?", last=21).spoken == "21 times 2 is 42."


def test_the_answer_is_said_with_the_sum():
    assert solve("What is seventeen times twenty-three?").spoken == "17 times 23 is 391."


@pytest.mark.parametrize("words", ["What is the capital of France?", "Remind me at 6 pm to call mom.",
                                   "How many legs does a spider have?", "I was born in 1990 and I am 36.",
                                   "I have two cats and three dogs.", "What is two and two?"])
def test_words_without_a_sum_are_left_to_the_model(words):
    assert solve(words) is None


def test_dividing_by_zero_is_said_not_raised():
    assert solve("what is 5 divided by 0?").spoken == "You can't divide by zero."


def test_number_words_become_digits():
    assert words_to_numbers("two thousand and twenty four minus twenty-one") == "2024 minus 21"
