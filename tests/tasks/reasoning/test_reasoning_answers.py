"""The answer table: extraction rules in order, numeric / exact / choice verifiers, binary rewards only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protege.tasks.reasoning.answers import VERIFIERS, extract, get_verifier, score_response
from protege.tasks.reasoning.process import arithmetic_score

# (response, gold, verifier, expected reward)
TABLE = [
    ("<answer>42</answer>", "42", "numeric", 1.0),
    ("<answer> 42 </answer><|im_end|>", "42", "numeric", 1.0),
    ("Give it as <answer>N</answer>.\n12 + 30 = 42\n<answer>42</answer>", "42", "numeric", 1.0),
    ("<answer>41</answer> and the last number is 42", "42", "numeric", 0.0),  # the tag wins over later numbers
    ("so \\boxed{1,234}", "1234", "numeric", 1.0),
    ("\\boxed{\\frac{1}{2}}", "0.5", "numeric", 1.0),
    ("\\boxed{\\dfrac{2}{3}}", "0.6666667", "numeric", 1.0),  # within 1e-6 relative
    ("\\boxed{0.667}", "2/3", "numeric", 0.0),  # 5e-4 relative: not equal
    ("Natalia sold 72 clips.\n#### 72", "72", "numeric", 1.0),
    ("#### $1,000.", "1000", "numeric", 1.0),
    ("The answer is 18.", "18", "numeric", 1.0),
    ("the answer is 3.5. Let me check: 7/2 = 3.5", "3.5", "numeric", 1.0),
    ("Answer: **-7**", "-7", "numeric", 1.0),
    ("The answer is −7", "-7", "numeric", 1.0),  # unicode minus
    ("The answer is 42 apples.", "42", "numeric", 1.0),  # the only number in the answer
    ("The answer is 3 + 4 = 7.", "7", "numeric", 0.0),  # several numbers: ambiguous, wrong
    ("It costs $18", "18", "numeric", 1.0),  # last number: correct, but unformatted
    ("we get 5 then 6", "5", "numeric", 0.0),  # the last number, not the first
    ("no number here", "5", "numeric", 0.0),
    ("", "5", "numeric", 0.0),
    ("<answer>50%</answer>", "50", "numeric", 1.0),
    ("<answer>1000000</answer>", "1000001", "numeric", 0.0),  # integers compare exactly (1e-6 would pass)
    ("<answer>1000000.0</answer>", "1000000.5", "numeric", 1.0),  # decimals: 5e-7 relative
    ("<answer>3.0</answer>", "3", "numeric", 1.0),
    ("<answer>3.</answer>", "3", "numeric", 1.0),  # trailing period
    ("<answer>1,2</answer>", "12", "numeric", 0.0),  # not a thousands comma
    ("<answer>7/0</answer>", "7", "numeric", 0.0),  # division by zero is no number, not a crash
    ("<answer>0</answer>", "0", "numeric", 1.0),
    ("<answer>0.0000001</answer>", "0", "numeric", 0.0),
    ("<answer>12345678901234567890</answer>", "12345678901234567891", "numeric", 0.0),
    ("<|reserved_special_token_7|>", "7", "numeric", 0.0),  # digits inside special tokens are not numbers
    ("<answer>Paris</answer>", "paris", "exact", 1.0),
    ("The answer is  New   York.", "new york", "exact", 1.0),
    ("<answer>Paris, France</answer>", "Paris", "exact", 0.0),
    ("\\boxed{\\text{yes}}", "Yes", "exact", 1.0),
    ("<answer>(B)</answer>", "B", "choice", 1.0),
    ("<answer>b</answer>", "B", "choice", 1.0),
    ("The answer is B) 42.", "B", "choice", 1.0),
    ("<answer>Option C</answer>", "(C)", "choice", 1.0),
    ("<answer>C</answer>", "B", "choice", 0.0),
    ("<answer>a cat</answer>", "A", "choice", 0.0),  # an article is not an option letter
    ("I think 2", "B", "choice", 0.0),
]


@pytest.mark.parametrize("response, gold, verifier, reward", TABLE)
def test_verifier_table(response, gold, verifier, reward):
    fields = score_response(response, gold, verifier, truncated=False)
    assert fields["reward"] == reward
    assert fields["correct"] is (reward == 1.0)


@pytest.mark.parametrize("response, rule, formatted, answer", [
    ("<answer>1</answer> \\boxed{2} #### 3 the answer is 4. 5", "answer_tag", True, "1"),
    ("\\boxed{2} #### 3", "boxed", True, "2"),
    ("\\boxed{\\frac{1}{2}}", "boxed", True, "\\frac{1}{2}"),
    ("#### 3\nthe answer is 4", "hashes", True, "3"),
    ("the answer is 4. 5", "answer_is", True, "4"),
    ("first 3, then 5", "last_number", False, "5"),
    ("nothing", None, False, None),
    ("\\boxed{unclosed", None, False, None),
])
def test_extraction_rules_apply_in_order(response, rule, formatted, answer):
    found = extract(response)
    assert (found.rule, found.formatted, found.answer) == (rule, formatted, answer)


def test_rewards_are_binary_for_every_verifier():
    for name, verify in VERIFIERS.items():
        for predicted in (None, "", "x", "42", "B", "(A)", "1/3", "$5"):
            for gold in ("42", "B", "x", "0.333333"):
                assert verify(predicted, gold) in (0.0, 1.0), (name, predicted, gold)


def test_record_fields_carry_the_callers_truncation_flag_and_the_format():
    fields = score_response("12 + 30 = 42 and so on and", "42", truncated=True)
    assert fields == {"answer": "42", "rule": "last_number", "formatted": False, "correct": True,
                      "truncated": True, "reward": 1.0}


def test_unknown_verifier_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"verifier='fuzzy' is unknown: use one of 'numeric', 'exact', 'choice'"):
        get_verifier("fuzzy")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=list("0123456789 +-=.,/$%<>{}\\#*xansweriboxd:\n")) | st.text(),
       gold=st.sampled_from(["42", "-3", "0.5", "B", "yes"]), verifier=st.sampled_from(sorted(VERIFIERS)))
def test_any_response_is_data_never_a_crash(text, gold, verifier):
    fields = score_response(text, gold, verifier, truncated=False)
    assert fields["reward"] in (0.0, 1.0)
    assert arithmetic_score(text) in (None, 0.0, 1.0)
