"""Process scores: each written equation checked exactly, the response scored by its weakest step."""

from __future__ import annotations

import math

import pytest

from protege.tasks.reasoning.process import arithmetic_score, arithmetic_steps, likelihood_score, split_steps


@pytest.mark.parametrize("response, score", [
    ("12 + 34 = 46\n46 - 5 = 41\n<answer>41</answer>", 1.0),
    ("12 + 34 = 46\n46 - 5 = 42\n<answer>42</answer>", 0.0),  # one wrong step sinks the response
    ("94 + 97 = 101", 0.0),
    ("10-3=7", 1.0),
    ("22 - 69 = -47\n-47 - 87 = -134", 1.0),  # a line's result is not read into the next line's minus
    ("5 - -3 = 8", 1.0),
    ("-3 + 5 = 2", 1.0),
    ("2 + 3 × 4 = 14", 1.0),  # precedence
    ("2 + 3 * 4 = 20", 0.0),
    ("0.2 x 50 = $10", 1.0),  # GSM8K's 'x' and currency
    ("Natalia sold 48/2 = 24 clips.", 1.0),
    ("$1,000 + $2,500 = $3,500.", 1.0),
    ("12 ÷ 4 = 3", 1.0),
    ("10 / 3 = 3.33", 1.0),  # rounded to its own two places
    ("10 / 3 = 3.3333", 1.0),
    ("10 / 3 = 3", 0.0),  # an integer result is exact
    ("10 / 3 = 3.34", 0.0),
    ("7 / 0 = 0", 0.0),
    ("2 + 3 = 5 + 1 = 6", 1.0),  # chained: each equality checked
    ("2 + 3 = 5 + 1 = 7", 0.0),
    ("2 + 3 = 6 + 1 = 7", 0.0),  # continues from a wrong value
    ("Step 1: 3 + 4 = 7. Step 2: 7 * 2 = 14.", 1.0),
    ("x = 5, so 72 = 72", None),  # no operator: not a step
    ("I think the answer is 12.", None),
    ("", None),
])
def test_arithmetic_score(response, score):
    assert arithmetic_score(response) == score


def test_steps_hold_exact_values():
    (step,) = arithmetic_steps("so 1/3 + 1/6 = 0.5 then")
    assert step.left == step.right == 0.5 and step.correct and step.text == "1/3 + 1/6 = 0.5"


def test_likelihood_score_is_the_weakest_steps_geometric_mean_probability():
    seen = []

    def teacher(steps):
        seen.append(list(steps))
        return [-0.1, -2.0, -0.5]

    assert likelihood_score("a\n\n b \nc<answer>1</answer>\n", teacher) == pytest.approx(math.exp(-2.0))
    assert seen == [["a", "b", "c<answer>1</answer>"]]
    assert likelihood_score("  \n", teacher) is None
    assert split_steps("one\ntwo") == ["one", "two"]


def test_likelihood_score_needs_one_value_per_step():
    with pytest.raises(ValueError, match="one mean token log-probability per step"):
        likelihood_score("a\nb", lambda steps: [-1.0])


def test_long_operator_chains_without_an_equals_sign_stay_fast():
    import time

    began = time.perf_counter()
    assert arithmetic_score("1 + " * 1000 + "1") is None
    assert arithmetic_score("1 + " * 1000 + "1 = 1001") == 1.0
    assert time.perf_counter() - began < 2.0
