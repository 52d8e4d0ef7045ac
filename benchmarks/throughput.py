"""Teacher scoring with one-token vs several-token verbalizers, and the student against the teacher, batched.

    python benchmarks/throughput.py [--texts 64] [--repeats 3]

1. The embedded teacher (SmolLM2-135M-Instruct, hf backend, batch 8) scores the same AG-News-like texts with
   four labels verbalized by one-token words, then with a verbalizer set where some words take two or three
   tokens in the chat answer position (``sports`` among them): texts/s of each, and their ratio (target: the
   several-token set within 1.5x of the one-token rate).
2. MiniLM-L6 (the embedded student, 4 labels, batch 64) predicts the same texts: texts/s against the teacher's
   one-token scoring rate (the report's student-vs-teacher throughput). ONNX / int8 exports, when onnxruntime is
   installed, are timed the same way.

Interleaved repeats, the median kept; results go to ``benchmarks/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from protege.core import console
from protege.models.hf import HFTeacher
from protege.models.zoo import load_encoder_classifier
from protege.tasks.classify.student import predict_probs
from protege.tasks.classify.task import ClassificationTask, continuations, render_all

HERE = Path(__file__).parent
LABELS = ["world", "sports", "business", "tech"]
SINGLE = {"world": ["world"], "sports": ["Sports"], "business": ["business"], "tech": ["tech"]}  # 1 token each
SEVERAL = {"world": ["world", "politics"], "sports": ["sports", "football"], "business": ["business", "economy"],
           "tech": ["technology", "science"]}
TOPICS = ["The central bank raised interest rates again as inflation stayed above target in the third quarter.",
          "The striker scored twice in the second half to send the club into the cup final on Sunday night.",
          "A new chip from the company doubles battery life in laptops, according to early benchmark results.",
          "Leaders met at the summit to discuss the ceasefire and humanitarian aid for the border region."]


def texts(n: int) -> list[str]:
    return [f"{TOPICS[i % 4]} Report number {i}, filed by our correspondent." for i in range(n)]


def rate(fn, items: list[str]) -> float:
    began = time.perf_counter()
    fn(items)
    return len(items) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    console.silence_third_party()
    batch = texts(args.texts)
    teacher = HFTeacher.load("smollm2-135m-instruct", batch_size=8)
    tasks = {name: ClassificationTask(labels=LABELS, verbalizers=v) for name, v in
             (("one_token", SINGLE), ("several_tokens", SEVERAL))}
    lengths = {name: {w: len(teacher.encode_continuation(w)) for w in continuations(t)} for name, t in tasks.items()}

    def scorer(task):
        return lambda items: teacher.score([p for x in items for p in render_all(task, x)],
                                           [continuations(task)] * len(items))

    model, tokenizer = load_encoder_classifier("minilm-l6", len(LABELS), LABELS)
    student = lambda items: predict_probs(model, tokenizer, items, batch_size=64, max_length=128)  # noqa: E731
    measured: dict[str, list[float]] = {"one_token": [], "several_tokens": [], "student": []}
    scorer(tasks["one_token"])(batch[:8])  # warm-up: lazy weights, allocator
    student(batch[:8])
    student_batch = batch * max(1, 512 // len(batch))
    for _ in range(args.repeats):
        for name, task in tasks.items():
            measured[name].append(rate(scorer(task), batch))
        measured["student"].append(rate(student, student_batch))
    exports = {}
    try:
        from protege.tasks.classify.deploy import Student, _to_onnx, onnx_predict, _onnx_session
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp:
            plain, int8 = Path(tmp) / "model.onnx", Path(tmp) / "int8.onnx"
            _to_onnx(Student(model, tokenizer, LABELS), plain)
            quantize_dynamic(str(plain), str(int8), weight_type=QuantType.QInt8)
            for name, path in (("onnx", plain), ("int8", int8)):
                fn = onnx_predict(_onnx_session(path), tokenizer, 128)
                chunks = lambda items, fn=fn: [fn(items[i:i + 64]) for i in range(0, len(items), 64)]  # noqa: E731
                chunks(batch[:8])
                exports[name] = statistics.median(rate(chunks, student_batch) for _ in range(args.repeats))
    except ImportError:
        pass
    med = {k: statistics.median(v) for k, v in measured.items()}
    result = {
        "texts": args.texts, "repeats": args.repeats, "verbalizer_tokens": lengths,
        "teacher_texts_per_s": {"one_token": med["one_token"], "several_tokens": med["several_tokens"]},
        "several_vs_one_token_slowdown": med["one_token"] / med["several_tokens"],
        "student_texts_per_s": med["student"], "student_vs_teacher": med["student"] / med["one_token"],
        "exported_texts_per_s": exports,
        "exported_vs_teacher": {k: v / med["one_token"] for k, v in exports.items()},
        "raw": measured,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "throughput.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=2))


if __name__ == "__main__":
    main()
