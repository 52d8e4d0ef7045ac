"""The OpenAI-compatible backend against scripted loopback servers: retries, errors, concurrency, secrets,
and the echo layout. The real-server test lives in test_openai_llamacpp_server.py."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from protege.models.base import BackendError, SamplingParams
from protege.models.config import TeacherConfig
from protege.models.factory import make_teacher
from protege.models.openai_compat import OpenAICompatTeacher

Reply = tuple[int, dict[str, str], Any]


class ScriptedServer:
    """Answers each POST with ``script(path, body, headers)``; records requests and the peak in flight."""

    def __init__(self, script: Callable[[str, dict, dict], Reply]):
        self.script = script
        self.requests: list[tuple[str, dict, dict]] = []
        self.in_flight = 0
        self.peak = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outer.requests.append((self.path, body, dict(self.headers)))
                    outer.in_flight += 1
                    outer.peak = max(outer.peak, outer.in_flight)
                try:
                    status, headers, payload = outer.script(self.path, body, dict(self.headers))
                finally:
                    with lock:
                        outer.in_flight -= 1
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[str, dict, dict], Reply]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Callable[[str, dict, dict], Reply]) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def completion(text: str, n: int = 1) -> dict:
    return {
        "choices": [{"index": i, "text": f"{text}{i}", "finish_reason": "stop"} for i in range(n)],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2 * n},
    }


def client(url: str, **kw: Any) -> OpenAICompatTeacher:
    kw.setdefault("backoff_base_s", 0.01)
    return OpenAICompatTeacher(url, "served-model", **kw)


def test_retries_429_and_503_then_succeeds(serve):
    replies = iter([(429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}),
                    (503, {}, "overloaded"), (200, {}, completion("ok"))])
    server = serve(lambda path, body, headers: next(replies))
    out = client(server.url, max_retries=3).generate(["hi"], SamplingParams(max_new_tokens=3))
    assert out[0][0].text == "ok0" and len(server.requests) == 3
    path, body, _ = server.requests[-1]
    assert path == "/v1/completions" and body["prompt"] == "hi" and body["max_tokens"] == 3


def test_gives_up_after_max_retries_with_the_last_error(serve):
    server = serve(lambda *a: (503, {}, {"error": {"message": "model is loading"}}))
    with pytest.raises(BackendError, match=r"after 3 attempts.*HTTP 503: model is loading"):
        client(server.url, max_retries=2).generate(["hi"], SamplingParams())
    assert len(server.requests) == 3


def test_client_errors_fail_at_once_with_status_and_server_message(serve):
    server = serve(lambda *a: (400, {}, {"error": {"message": "max_tokens must be positive"}}))
    with pytest.raises(BackendError, match=r"answered 400: max_tokens must be positive"):
        client(server.url, max_retries=5).generate(["hi"], SamplingParams())
    assert len(server.requests) == 1


def test_timeouts_are_retried(serve):
    calls = []

    def script(path: str, body: dict, headers: dict) -> Reply:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.0)
        return 200, {}, completion("late")

    server = serve(script)
    out = client(server.url, timeout_s=0.3, max_retries=2).generate(["hi"], SamplingParams())
    assert out[0][0].text == "late0" and len(calls) == 2


def test_unreachable_server_is_retried_then_reported():
    teacher = client("http://127.0.0.1:9/v1", max_retries=1)  # port 9 (discard) is closed on loopback
    with pytest.raises(BackendError, match=r"after 2 attempts.*Connect"):
        teacher.generate(["hi"], SamplingParams())


def test_api_key_is_sent_but_never_shown(serve, monkeypatch, caplog):
    secret = "sk-protege-test-4f9a1c"
    monkeypatch.setenv("PROTEGE_TEST_KEY", secret)
    replies = iter([(500, {}, {"error": {"message": f"backend hiccup for key {secret}"}}),
                    (401, {}, {"error": {"message": f"Incorrect API key provided: {secret}"}})])
    server = serve(lambda *a: next(replies))
    teacher = client(server.url, api_key_env="PROTEGE_TEST_KEY", max_retries=3)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BackendError) as err:
        teacher.generate(["hi"], SamplingParams())
    assert server.requests[0][2]["Authorization"] == f"Bearer {secret}"
    message = str(err.value)
    assert "401" in message and "PROTEGE_TEST_KEY" in message and "***" in message
    for shown in (message, repr(teacher), str(teacher), caplog.text, repr(vars(teacher))):
        assert secret not in shown
    assert "hiccup" in caplog.text  # the retry was logged, scrubbed


def test_no_key_means_no_authorization_header(serve, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = serve(lambda *a: (200, {}, completion("x")))
    client(server.url).generate(["hi"], SamplingParams())
    assert "Authorization" not in server.requests[0][2]


def test_concurrency_is_bounded_and_order_kept(serve):
    def script(path: str, body: dict, headers: dict) -> Reply:
        time.sleep(0.15)
        return 200, {}, completion(body["prompt"])

    server = serve(script)
    prompts = [f"p{i}-" for i in range(9)]
    start = time.perf_counter()
    out = client(server.url, max_concurrency=3).generate(prompts, SamplingParams())
    elapsed = time.perf_counter() - start
    assert [row[0].text for row in out] == [f"{p}0" for p in prompts]
    assert server.peak == 3
    assert elapsed < 9 * 0.15  # ran in parallel


def test_missing_samples_are_requested_again_with_shifted_seeds(serve):
    # Like llama.cpp's server: one choice whatever n says.
    server = serve(lambda path, body, headers: (200, {}, completion(f"s{body['seed']}-")))
    out = client(server.url).generate(["hi"], SamplingParams(n=3, seed=10, temperature=1.0))
    assert [g.text for g in out[0]] == ["s10-0", "s11-0", "s12-0"]
    assert [b["n"] for _, b, _ in server.requests] == [3, 2, 1]


def test_greedy_n_samples_cost_one_request(serve):
    server = serve(lambda *a: (200, {}, completion("g")))
    out = client(server.url).generate(["hi"], SamplingParams(n=4, temperature=0.0))
    assert [g.text for g in out[0]] == ["g0"] * 4 and len(server.requests) == 1
    assert server.requests[0][1]["n"] == 1


def test_chat_prompts_use_chat_endpoint_and_parse_logprobs(serve):
    def script(path: str, body: dict, headers: dict) -> Reply:
        assert path == "/v1/chat/completions" and body["logprobs"] is True and body["top_logprobs"] == 2
        content = [{"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi", "logprob": -0.1},
                                                                    {"token": "Yo", "logprob": -2.5}]}]
        choice = {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length",
                  "logprobs": {"content": content}}
        return 200, {}, {"choices": [choice], "usage": {"prompt_tokens": 9, "completion_tokens": 1}}

    server = serve(script)
    gen = client(server.url).generate([[{"role": "user", "content": "hello"}]],
                                      SamplingParams(top_logprobs=2, max_new_tokens=1))[0][0]
    assert server.requests[0][1]["messages"] == [{"role": "user", "content": "hello"}]
    assert (gen.text, gen.finish_reason, gen.prompt_tokens, gen.completion_tokens) == ("Hi", "length", 9, 1)
    assert gen.tokens == ["Hi"] and gen.token_logprobs == [-0.1] and gen.top_logprobs == [{"Hi": -0.1, "Yo": -2.5}]


def echo_answer(text: str, table: dict[str, dict[str, float]]) -> dict:
    """A standard echo answer: ``text`` split into one-letter pieces (with their leading space), then one
    generated token 'Z'."""
    pieces = re.findall(r" ?\w", text) + ["Z"]
    offsets = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
    tops = [None] + [table[p] for p in pieces[1:]]
    token_lps = [None] + [table[p][p] for p in pieces[1:]]
    return {"choices": [{"text": "".join(pieces), "logprobs": {
        "tokens": pieces, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}}]}


TABLE = {" b": {" b": -0.5, " x": -1.5}, " c": {" x": -0.2, " c": -2.0}, " d": {" d": -0.1, " x": -3.0},
         "Z": {"Z": -0.05, " c": -4.0}}


def test_score_and_topk_from_standard_echo(serve):
    def script(path: str, body: dict, headers: dict) -> Reply:
        assert path == "/v1/completions" and body["echo"] is True and body["max_tokens"] == 1
        return 200, {}, echo_answer(body["prompt"], TABLE)

    server = serve(script)
    teacher = client(server.url)
    # Only the tokens of the candidate count, not the prompt's " b".
    assert teacher.score(["a b"], [[" c", " c d", ""]]) == [[-2.0, pytest.approx(-2.1), 0.0]]

    class Pieces:  # stands in for a tokenizer: piece text -> id
        vocab = ["a", " b", " c", " d", " x", "Z"]

        def __len__(self) -> int:
            return len(self.vocab)

        def decode(self, ids: list[int]) -> str:
            return self.vocab[ids[0]]

    teacher.tokenizer = Pieces()
    tk = teacher.topk_logprobs(["a b"], [" c"], k=2)[0]
    assert tk.token_ids == [0, 1, 2]
    assert tk.ids == [[1, 4], [4, 2]] and tk.logprobs == [[-0.5, -1.5], [-0.2, -2.0]]
    assert tk.token_logprobs == [-0.5, -2.0]
    assert tk.tail_logprob[0] == pytest.approx(math.log(1 - math.exp(-0.5) - math.exp(-1.5)))


def test_shifted_echo_rows_are_refused(serve):
    # llama-cpp-python's layout: no row for the generated token, rows shifted by one.
    def script(path: str, body: dict, headers: dict) -> Reply:
        return 200, {}, {"choices": [{"text": "ab Z", "logprobs": {
            "tokens": ["a", "b"], "token_logprobs": [None, -5.0], "top_logprobs": [None, {"Z": -0.1, "b": -5.0}],
            "text_offset": [0, 1]}}]}

    server = serve(script)
    with pytest.raises(BackendError, match="unsupported with this server"):
        client(server.url).score(["a"], [["b"]])


def test_chat_scoring_without_tokenizer_says_what_to_set(serve):
    server = serve(lambda *a: (200, {}, {}))
    with pytest.raises(BackendError, match="set the teacher's `tokenizer`"):
        client(server.url).score([[{"role": "user", "content": "hi"}]], [[" yes"]])


def test_factory_builds_openai_teacher_and_requires_base_url(serve):
    server = serve(lambda *a: (200, {}, completion("f")))
    teacher = make_teacher(TeacherConfig(backend="openai", model="m", base_url=server.url, max_concurrency=2))
    assert teacher.backend == "openai" and teacher.model_id == "m"
    assert teacher.generate(["x"], SamplingParams())[0][0].text == "f0"
    with pytest.raises(ValueError, match="base_url"):
        make_teacher(TeacherConfig(backend="openai", model="m"))


def test_extra_body_is_sent(serve):
    server = serve(lambda *a: (200, {}, completion("e")))
    client(server.url, extra_body={"return_tokens_as_token_ids": True}).generate(["x"], SamplingParams())
    assert server.requests[0][1]["return_tokens_as_token_ids"] is True
