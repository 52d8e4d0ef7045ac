"""The ledger answers repeated teacher requests and records stage status; records keep provenance and dedupe."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from protege.core.ledger import Ledger, call_key
from protege.models.base import Generation, SamplingParams, TopK
from protege.models.ledgered import LedgeredTeacher, Prices
from protege.core.records import PROVENANCE, RecordStore, record_id


class CountingTeacher:
    """A deterministic teacher that counts how many items reach it."""

    backend = "fake"
    model_id = "fake-1"

    def __init__(self):
        self.items = 0

    def generate(self, prompts, params):
        self.items += len(prompts)
        return [
            [Generation(text=f"{p}!{i}", prompt_tokens=len(p), completion_tokens=2) for i in range(params.n)]
            for p in prompts
        ]

    def score(self, prompts, continuations):
        self.items += len(prompts)
        return [[-float(len(p) + len(c)) for c in cs] for p, cs in zip(prompts, continuations)]

    def topk_logprobs(self, prompts, completions, k):
        self.items += len(prompts)
        return [
            TopK(token_ids=[1, 2, 3], ids=[[1] * k, [2] * k], logprobs=[[-0.1] * k, [-0.2] * k],
                 token_logprobs=[-0.1, -0.2], tail_logprob=[-3.0, -3.0])
            for _ in prompts
        ]


def test_call_key_ignores_dict_order_but_not_values():
    assert call_key("hf", "m", "score", {"a": 1, "b": 2}, {}) == call_key("hf", "m", "score", {"b": 2, "a": 1}, {})
    assert call_key("hf", "m", "score", "x", {"t": 0}) != call_key("hf", "m", "score", "x", {"t": 1})
    assert call_key("hf", "m", "score", "x", {}) != call_key("hf", "m2", "score", "x", {})


def test_repeated_requests_are_answered_from_the_ledger(tmp_path):
    inner = CountingTeacher()
    ledger = Ledger(tmp_path / "ledger.sqlite")
    teacher = LedgeredTeacher(inner, ledger, batch_size=2)
    first = teacher.score(["a", "bb", "ccc"], [["x", "yy"]] * 3)
    assert inner.items == 3
    # A fresh wrapper over the same file (a new process after a crash) pays for nothing already answered.
    again = LedgeredTeacher(inner, Ledger(tmp_path / "ledger.sqlite"))
    assert again.score(["bb", "a", "dddd"], [["x", "yy"]] * 3) == [first[1], first[0], [-5.0, -6.0]]
    assert inner.items == 4
    assert (again.stats.hits, again.stats.misses) == (2, 1)


class BatchRecorder(CountingTeacher):
    def __init__(self):
        super().__init__()
        self.batches = []

    def score(self, prompts, continuations):
        self.batches.append(list(prompts))
        return super().score(prompts, continuations)

    def topk_logprobs(self, prompts, completions, k):
        self.batches.append([p + c for p, c in zip(prompts, completions)])
        return super().topk_logprobs(prompts, completions, k)

    def generate(self, prompts, params):
        self.batches.append(list(prompts))
        return super().generate(prompts, params)


def test_scoring_is_batched_by_length_and_answered_in_the_callers_order(tmp_path):
    """Similar lengths share a batch (little padding); generation keeps the caller's order (seeded samples
    depend on their batch)."""
    inner = BatchRecorder()
    teacher = LedgeredTeacher(inner, Ledger(tmp_path / "l.sqlite"), batch_size=2)
    prompts = ["cccc", "a", "dddddd", "bb", [{"role": "user", "content": "eee"}]]
    got = teacher.score(prompts, [["x"]] * 5)
    assert inner.batches == [["a", "bb"], [[{"role": "user", "content": "eee"}], "cccc"], ["dddddd"]]
    assert got == [[-5.0], [-2.0], [-7.0], [-3.0], [-2.0]]  # the fake scores a chat by its message count
    inner.batches.clear()
    teacher.topk_logprobs(["pp", "p", "ppp"], ["cc", "c", "cccc"], k=2)
    assert inner.batches == [["pc", "ppcc"], ["pppcccc"]]
    inner.batches.clear()
    teacher.generate(["long prompt", "s"], SamplingParams(n=1, temperature=0.7, seed=0))
    assert inner.batches == [["long prompt", "s"]]


def test_generate_and_topk_round_trip_through_the_ledger(tmp_path):
    inner = CountingTeacher()
    teacher = LedgeredTeacher(inner, Ledger(tmp_path / "l.sqlite"), prices=Prices(1e6, 2e6))
    params = SamplingParams(n=2, temperature=0.7)
    gens = teacher.generate(["hi"], params)
    cached = teacher.generate(["hi"], params)
    assert cached == gens and isinstance(cached[0][0], Generation) and len(cached[0]) == 2
    assert inner.items == 1
    teacher.generate(["hi"], SamplingParams(n=2, temperature=0.8))  # other parameters: a new call
    assert inner.items == 2
    top = teacher.topk_logprobs(["p"], ["c"], k=3)
    assert teacher.topk_logprobs(["p"], ["c"], k=3) == top and inner.items == 3
    totals = teacher.ledger.totals()
    assert totals.calls == 3
    assert totals.completion_tokens == 4 + 4  # two generate calls, 2 samples x 2 tokens each
    assert totals.cost == pytest.approx(2 * (2 * 1 + 4 * 2) + 3 * 1)


def test_ledger_is_safe_across_threads(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    inner = CountingTeacher()

    def work(offset):
        LedgeredTeacher(inner, ledger).score([f"p{offset + i}" for i in range(20)], [["a"]] * 20)

    threads = [threading.Thread(target=work, args=(o * 20,)) for o in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.totals().calls == 80


def test_stage_status_round_trip(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    assert ledger.stage_status("annotate") is None
    ledger.mark_stage("annotate", "running")
    assert ledger.stage_status("annotate") == "running"
    ledger.mark_stage("annotate", "done", {"records": 5})
    assert [(s["name"], s["status"], s["summary"]) for s in ledger.stages()] == [("annotate", "done", {"records": 5})]


def test_records_keep_provenance_and_last_version(tmp_path):
    store = RecordStore(tmp_path / "records")
    a, b = record_id("src", "text a"), record_id("src", "text b")
    assert a != b and record_id("src", "text a") == a
    store.append("pool", [{"id": a, "text": "text a", "score": 1.0}, {"id": b, "text": "text b", "score": 2.0}], stage="load")
    store.append("pool", [{"id": a, "text": "text a", "score": 9.0}], stage="annotate")
    frame = store.read("pool")
    assert len(frame) == 2 and set(PROVENANCE) <= set(frame.columns)
    assert frame.set_index("id").loc[a, "score"] == 9.0
    assert frame.set_index("id").loc[a, "stage"] == "annotate"
    assert store.count("pool") == 2 and store.tables() == ["pool"]
    with pytest.raises(ValueError, match="no 'id'"):
        store.append("pool", [{"text": "x"}])


def test_replace_swaps_the_whole_table(tmp_path):
    store = RecordStore(tmp_path / "records")
    store.append("sel", [{"id": str(i)} for i in range(5)])
    store.replace("sel", [{"id": "9"}])
    assert store.read("sel")["id"].tolist() == ["9"]
    assert store.read("missing").empty


def test_a_nan_among_strings_is_stored_as_missing_not_refused(tmp_path):
    from protege.core.records import RecordStore

    store = RecordStore(tmp_path / "records")
    # unlabelled pool texts first (pandas gives NaN for their gold), labelled dev texts after
    store.append("annotated", [{"id": "a", "gold": float("nan"), "p": 0.5}, {"id": "b", "gold": "positive",
                                                                            "p": float("nan")}])
    frame = store.read("annotated").set_index("id")
    assert frame.loc["a", "gold"] != frame.loc["a", "gold"] or frame.loc["a", "gold"] is None
    assert frame.loc["b", "gold"] == "positive"
    assert frame.loc["a", "p"] == 0.5 and frame.loc["b", "p"] != frame.loc["b", "p"]  # NaN stays a missing float


def _open_ledger(path: str, barrier) -> str:
    barrier.wait()
    try:
        Ledger(path)
        return "ok"
    except Exception as exc:  # the failure is the data of this test
        return f"{type(exc).__name__}: {exc}"


def test_processes_opening_one_new_ledger_at_once_all_succeed(tmp_path):
    # The ranks of a distributed run open the run's ledger together; SQLite refused the losers of the race to
    # create it and switch it to WAL at once ("database is locked", in 7 of 40 rounds of 4 processes before).
    ctx = multiprocessing.get_context("fork")
    failures = []
    with ctx.Manager() as manager, ctx.Pool(4) as pool:
        for round_no in range(30):
            barrier = manager.Barrier(4)
            path = str(tmp_path / f"r{round_no}" / "ledger.sqlite")
            (tmp_path / f"r{round_no}").mkdir()
            failures += [r for r in pool.starmap(_open_ledger, [(path, barrier)] * 4) if r != "ok"]
    assert failures == []
