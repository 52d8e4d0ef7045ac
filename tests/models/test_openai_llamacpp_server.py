"""The openai backend against a real OpenAI-compatible server: llama-cpp-python's, started on loopback with the
embedded SmolLM2 GGUF."""

from __future__ import annotations

from typing import Iterator

import pytest
from llama_server import llama_server, smollm2_gguf

from protege.models.base import BackendError, SamplingParams
from protege.models.openai_compat import OpenAICompatTeacher

pytestmark = pytest.mark.server
pytest.importorskip("llama_cpp.server", reason="needs the llamacpp extra: pip install 'protege[llamacpp]'")

CHAT = [{"role": "user", "content": "Name one colour."}]


@pytest.fixture(scope="module")
def gguf() -> str:
    return smollm2_gguf()


@pytest.fixture(scope="module")
def server_url(gguf: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(gguf, tmp_path_factory.mktemp("llama-server")) as url:
        yield url


@pytest.fixture
def teacher(server_url: str) -> Iterator[OpenAICompatTeacher]:
    t = OpenAICompatTeacher(server_url, "smollm2", max_concurrency=4, max_retries=2, timeout_s=120)
    yield t
    t.close()


def test_completions_n_samples_are_seeded(teacher):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=3, seed=42)
    first = teacher.generate(["Once upon a time"], params)[0]
    again = teacher.generate(["Once upon a time"], params)[0]
    assert len(first) == 3 and [g.text for g in first] == [g.text for g in again]
    assert len({g.text for g in first}) >= 2
    for g in first:
        assert g.prompt_tokens > 0 and 1 <= g.completion_tokens <= 8


def test_chat_greedy_with_top_logprobs(teacher):
    gen = teacher.generate([CHAT], SamplingParams(max_new_tokens=6, temperature=0.0, top_logprobs=3))[0][0]
    assert gen.text.strip()
    assert gen.tokens and len(gen.tokens) == len(gen.token_logprobs) == len(gen.top_logprobs)
    assert "".join(gen.tokens).startswith(gen.text[:3])
    for token, lp, row in zip(gen.tokens, gen.token_logprobs, gen.top_logprobs):
        assert 1 <= len(row) <= 3 and all(v <= 0 for v in row.values())
        assert lp == pytest.approx(max(row.values()), abs=1e-4)  # greedy picks the top token
        assert token in row


def test_completions_top_logprobs_continue_the_prompt(teacher):
    gen = teacher.generate(["The capital of France is"],
                           SamplingParams(max_new_tokens=2, temperature=0.0, top_logprobs=2))[0][0]
    assert gen.tokens[0] == " Paris" and gen.text.startswith(" Paris")
    first = gen.top_logprobs[0]
    assert max(first, key=first.get) == " Paris" and first[" Paris"] == pytest.approx(gen.token_logprobs[0])


def test_concurrent_requests_match_sequential(server_url, teacher):
    prompts = ["1, 2, 3,", "Red, green,", [{"role": "user", "content": "Say yes."}], "The sky is"]
    params = SamplingParams(max_new_tokens=5, temperature=0.0)
    together = teacher.generate(prompts, params)
    one_by_one = OpenAICompatTeacher(server_url, "smollm2", max_concurrency=1).generate(prompts, params)
    assert [r[0].text for r in together] == [r[0].text for r in one_by_one]


def test_stop_strings(teacher):
    full = teacher.generate(["1, 2, 3,"], SamplingParams(max_new_tokens=8, temperature=0.0))[0][0].text
    stop = full.strip()[:1]
    cut = teacher.generate(["1, 2, 3,"], SamplingParams(max_new_tokens=8, temperature=0.0, stop=(stop,)))[0][0]
    assert stop not in cut.text and cut.finish_reason == "stop" and full.startswith(cut.text)


def test_greedy_answer_matches_in_process_llamacpp(teacher, gguf):
    from protege.models.llamacpp import LlamaCppTeacher

    local = LlamaCppTeacher(gguf, n_ctx=1024, n_threads=1)
    try:
        params = SamplingParams(max_new_tokens=6, temperature=0.0)
        assert teacher.generate([CHAT], params)[0][0].text == local.generate([CHAT], params)[0][0].text
    finally:
        local.close()


def test_shifted_echo_logprobs_are_reported_unsupported(teacher):
    # llama-cpp-python's echo rows are off by one (see DESIGN.md); the backend must refuse, not mis-score.
    with pytest.raises(BackendError, match="unsupported with this server"):
        teacher.score(["The capital of France is"], [[" Paris", " London"]])


def test_wrong_base_url_gives_404_with_hint(server_url):
    bad = OpenAICompatTeacher(server_url.removesuffix("/v1"), "smollm2", max_retries=0)
    with pytest.raises(BackendError, match=r"404 \(is base_url"):
        bad.generate(["hi"], SamplingParams(max_new_tokens=1))


def test_a_generating_teacher_lists_candidate_labels_that_parse_to_a_set(teacher):
    from protege.tasks.classify.candidate_prompt import ANSWER_TOKENS, ask_candidates, candidate_prompt, parse_candidates
    from protege.tasks.classify.task import ClassificationTask

    task = ClassificationTask(labels=["positive", "negative", "neutral"])
    texts = ["I loved this film, every minute of it was wonderful.", "The food was cold and the waiter was rude."]
    sets = ask_candidates(task, teacher, texts)
    answers = teacher.generate([candidate_prompt(task, t) for t in texts],
                               SamplingParams(max_new_tokens=ANSWER_TOKENS, temperature=0.0))
    # The set is exactly the labels the server's own greedy answer names. (The 135M model often answers without
    # naming a label; annotate then keeps the scored rule's set and counts it, tested in tests/tasks/classify.)
    assert all(a[0].text.strip() for a in answers)
    assert sets == [parse_candidates(task, a[0].text) for a in answers]
    assert all(0 <= i < 3 for s in sets for i in s)
