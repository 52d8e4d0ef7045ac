"""The classification student out of the run: loaded for prediction, exported to ONNX (float or int8), checked.

:class:`Student` wraps the trained folder (``artifacts/student``) with the temperature fitted on dev (from
``metrics.json``; 1 when the run has none): ``predict(texts)`` gives label names, ``predict_proba(texts)`` the
calibrated probabilities. :func:`export` writes ``artifacts/export/<format>/`` — ``model.onnx``, the tokenizer and
the student card — then runs the exported model and the PyTorch one on held-out texts (the gold test split):
the export is kept only if both pick the same label on at least ``min_agreement`` of them, and the check's
figures (agreement, largest probability gap, latency and throughput of each) go to ``export.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from protege.core.errors import UserError
from protege.core.run import Run
from protege.evaluate import speed
from protege.evaluate.metrics import apply_temperature
from protege.tasks.classify import tables
from protege.tasks.classify.student import STUDENT_CARD, load_student, model_inputs, predict_probs

FORMATS = ("onnx", "int8")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Student:
    model: Any
    tokenizer: Any
    labels: list[str]
    max_length: int = 128
    temperature: float = 1.0
    path: Path | None = None

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """(texts, labels) probabilities, temperature-scaled when the run fitted a temperature."""
        probs = predict_probs(self.model, self.tokenizer, list(texts), batch_size=batch_size,
                              max_length=self.max_length)
        return apply_temperature(probs, self.temperature) if self.temperature != 1.0 and len(probs) else probs

    def predict(self, texts: Sequence[str], *, batch_size: int = 64) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts, batch_size=batch_size).argmax(1)]


def load(run: Run) -> Student:
    folder = run.artifacts / tables.STUDENT
    if not (folder / STUDENT_CARD).exists():
        raise UserError(f"{folder}: the run has no trained student yet; run its recipe through the train stage")
    model, tokenizer, card = load_student(folder)
    metrics = run.artifacts / tables.METRICS
    temperature = (json.loads(metrics.read_text()).get("calibration") or {}).get("temperature") if metrics.exists() else None
    return Student(model, tokenizer, list(card["labels"]), card.get("max_length", 128), temperature or 1.0, folder)


def _onnx_session(path: Path) -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("export needs onnxruntime and onnx: pip install 'protege[export]'") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_predict(session: Any, tokenizer: Any, max_length: int) -> Any:
    names = {i.name for i in session.get_inputs()}

    def predict(texts: list[str]) -> np.ndarray:
        enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="np")
        logits = session.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]
        logits = logits - logits.max(1, keepdims=True)
        return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)

    return predict


def _to_onnx(student: Student, target: Path) -> None:
    import torch

    example = student.tokenizer(["an example text", "another"], return_tensors="pt", padding=True)
    names = [k for k in INPUTS if k in example]
    axes = {k: {0: "batch", 1: "tokens"} for k in names}
    model = student.model.eval()

    class Logits(torch.nn.Module):  # a plain tensor out: the traced graph has one output, the logits
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: Any) -> Any:
            return self.inner(**model_inputs(dict(zip(names, args)))).logits

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on transformers' shape checks; the check below is what counts
        torch.onnx.export(Logits(), tuple(example[k] for k in names), str(target), input_names=names,
                          output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)


def export(run: Run, fmt: str, *, check_texts: int = 200, min_agreement: float = 0.99,
           batch_size: int = 64) -> dict[str, Any]:
    """Export the run's student as ``fmt`` (onnx, int8), check it against PyTorch, return the figures."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    student = load(run)
    test = run.records.read(tables.TEST)
    texts = test["text"].tolist()[:check_texts] if len(test) else []
    if not texts:
        raise UserError("export checks the exported model on held-out texts, and the run has no test table")
    out = run.artifact("export", fmt, "x").parent
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "model.onnx"
        _to_onnx(student, plain)
        if fmt == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            root = logging.getLogger()
            level, root.level = root.level, logging.ERROR  # its advice to pre-process goes to the root logger
            try:
                # Per-channel scales: one per output row of each weight, which keeps a small encoder's labels.
                quantize_dynamic(str(plain), str(out / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
            finally:
                root.setLevel(level)
        else:
            shutil.copy(plain, out / "model.onnx")
    student.tokenizer.save_pretrained(out)
    shutil.copy(student.path / STUDENT_CARD, out / STUDENT_CARD)
    exported = onnx_predict(_onnx_session(out / "model.onnx"), student.tokenizer, student.max_length)
    torch_predict = lambda batch: predict_probs(student.model, student.tokenizer, batch,  # noqa: E731
                                                max_length=student.max_length, batch_size=batch_size)
    began = time.perf_counter()
    ref, got = torch_predict(texts), exported(texts)
    agreement = float((ref.argmax(1) == got.argmax(1)).mean())
    figures = {
        "format": fmt, "texts": len(texts), "same_label": agreement,
        "max_probability_gap": float(np.abs(ref - got).max()),
        "size_mb": round((out / "model.onnx").stat().st_size / 1e6, 2),
        "pytorch": speed.measure(torch_predict, texts, batch_size=batch_size).to_dict(),
        "exported": speed.measure(exported, texts, batch_size=batch_size).to_dict(),
        "temperature": student.temperature, "labels": student.labels, "path": str(out),
        "seconds": round(time.perf_counter() - began, 1),
    }
    (out / "export.json").write_text(json.dumps(figures, indent=2))
    if agreement < min_agreement:
        shutil.rmtree(out)
        raise UserError(f"the {fmt} export picks the PyTorch student's label on only {agreement:.1%} of "
                        f"{len(texts)} held-out texts (needs {min_agreement:.0%}); it was removed. Try --format onnx.")
    return figures


def predict_file(student: Student, source: Path, target: Path, *, text_column: str = "text") -> int:
    """Read texts from a CSV/JSONL/... file, write them with the predicted label and every probability."""
    import pandas as pd

    from protege.data.files import read_rows

    rows = pd.DataFrame(read_rows(source))
    if text_column not in rows.columns:
        raise UserError(f"{source.resolve()}: no column {text_column!r} (it has {list(rows.columns)}); pass "
                        "--text-column")
    probs = student.predict_proba(rows[text_column].astype(str).tolist())
    out = rows.assign(label=[student.labels[i] for i in probs.argmax(1)], confidence=probs.max(1).round(4))
    for i, name in enumerate(student.labels):
        out[f"p_{name}"] = probs[:, i].round(4)
    if target.suffix.lower() == ".jsonl":
        out.to_json(target, orient="records", lines=True, force_ascii=False)
    else:
        out.to_csv(target, index=False)
    return len(out)
