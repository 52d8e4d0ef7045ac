"""Loading ABSA data: the SemEval benchmark folder, user files of the same shape, DS²-ABSA synthetic files.

The file shape (SemEval as published with DS²-ABSA) is a JSON list, or JSON lines, of ``{"ID", "sentence",
"aspects": [{"from", "to", "target", "polarity"}]}``; offsets may be strings. Every loader returns a
:class:`Loaded`: the examples plus an :class:`Issues` tally of what was wrong with the *data* and how it was
handled, never an exception:

- ``offsets_repaired``: ``sentence[from:to]`` is not the target but the target occurs in the sentence; the
  occurrence nearest the given offset is used;
- ``offsets_mismatch``: the target does not occur at all (dropped);
- ``implicit_aspect``: no target term (the harder test sets label implicit aspects by category only; dropped);
- ``unknown_polarity``, ``conflict_dropped``, ``duplicate_span`` (a second aspect on an overlapping span);
- ``row_without_sentence``, ``row_without_aspects`` (dropped), ``duplicate_id`` (renamed ``<id>#2``, …).

*Configuration* problems are errors raised before anything is read: a folder or file that does not exist, an
unknown dataset or split, a file that is not a list of rows.

The benchmark folder comes from the caller (a recipe key), else ``$PROTEGE_ABSA_DIR``, else
``../shared/data/absa`` beside the source checkout; the synthetic files likewise from ``$PROTEGE_DS2_DIR`` or
``../shared/data/teacher_outputs/ds2_gpt35``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from protege.data.packaged import shared_data_dir
from protege.tasks.absa.task import AbsaExample, AbsaTask, Aspect, Issues

DATASETS = ("lap", "res", "res15")
SPLITS = ("train", "dev", "test", "sample2", "sample5")
# The harder test sentences (implicit or mixed sentiment) exist for the 2014 sets only.
HARD_TEST = {"lap": "fsa_hard/laptop14_hard_test.json", "res": "fsa_hard/rest14_hard_test.json"}
SYNTHETIC_FILES = ("lap_all2_instance", "res15_all2_instance", "res15_all5_instance")
METHODS = ("paraphrase_one", "paraphrase_comb", "aspect_mask", "context_mask")

_SYNTHETIC_ID = re.compile(
    rf"^(?P<parents>.+?)_(?P<method>{'|'.join(METHODS)})(?:_(?P<variant>\d+))?_(?P<index>\d+)$")


@dataclass
class Loaded:
    examples: list[AbsaExample]
    issues: Issues = field(default_factory=Issues)
    source: str = ""


def _folder(folder: Optional[str | Path], name: str, env: str, key: str, holds: str) -> Path:
    path = Path(folder).expanduser() if folder else shared_data_dir(name, env)
    if not path.is_dir():
        raise FileNotFoundError(
            f"folder not found: {path.resolve()} — set {key} in the recipe or ${env} to the folder holding "
            f"{holds}, or pass folder=")
    return path


def absa_folder(folder: Optional[str | Path] = None) -> Path:
    """The SemEval folder (``lap/``, ``res/``, ``res15/``, ``fsa_hard/``); raises when it does not exist."""
    return _folder(folder, "absa", "PROTEGE_ABSA_DIR", "data.absa_dir",
                   "lap/, res/ and res15/ with train/dev/test/sample2/sample5.json")


def synthetic_folder(folder: Optional[str | Path] = None) -> Path:
    """The folder of DS²-ABSA GPT-3.5 files (``lap_all2_instance.json``, …); raises when it does not exist."""
    return _folder(folder, "teacher_outputs/ds2_gpt35", "PROTEGE_DS2_DIR", "synthesize.import_dir",
                   ", ".join(f + ".json" for f in SYNTHETIC_FILES))


def _offset(value: Any) -> Optional[int]:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _nearest(sentence: str, term: str, near: Optional[int]) -> Optional[int]:
    starts, i = [], sentence.find(term)
    while i >= 0:
        starts.append(i)
        i = sentence.find(term, i + 1)
    if not starts:
        return None
    return min(starts, key=lambda s: abs(s - near)) if near is not None else starts[0]


def read_aspects(sentence: str, raw: Sequence[Any], task: AbsaTask, issues: Issues,
                 where: str) -> tuple[Aspect, ...]:
    """Validated aspects of a row: polarity read, offsets checked (repaired if possible), overlaps dropped."""
    found: list[Aspect] = []
    for item in raw:
        item = item if isinstance(item, dict) else {}
        term = item.get("target")
        if term is None or not str(term).strip():
            issues.add("implicit_aspect", where)
            continue
        term = str(term)
        polarity = task.read_polarity(item.get("polarity"), issues, where=f"{where} {term!r}")
        if polarity is None:
            continue
        start, end = _offset(item.get("from")), _offset(item.get("to"))
        if start is None or end is None or sentence[start:end] != term:
            fixed = _nearest(sentence, term, start)
            if fixed is None:
                issues.add("offsets_mismatch", f"{where} {term!r} at {item.get('from')}:{item.get('to')}")
                continue
            issues.add("offsets_repaired", f"{where} {term!r} {item.get('from')} -> {fixed}")
            start, end = fixed, fixed + len(term)
        if any(start < a.end and a.start < end for a in found):
            issues.add("duplicate_span", f"{where} {term!r}")
            continue
        found.append(Aspect(start, end, term, polarity))
    return tuple(sorted(found))


def _rows(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"ABSA file not found: {path.resolve()}; give a JSON list or JSON-lines file "
                                "of "
                                '{"ID", "sentence", "aspects": [{"from", "to", "target", "polarity"}]}')
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text) if path.suffix != ".jsonl" else None
    except json.JSONDecodeError:
        rows = None
    if rows is None:
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: neither a JSON list nor JSON lines ({exc})") from exc
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of rows, found a JSON {type(rows).__name__}")
    return rows


def _has_sentence(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("sentence"), str) and bool(row["sentence"].strip())


def _unique_id(row: dict, i: int, stem: str, seen: dict[str, int], issues: Issues) -> str:
    raw = row.get("ID", row.get("id"))
    rid = str(raw) if raw not in (None, "") else f"{stem}:{i}"
    seen[rid] = seen.get(rid, 0) + 1
    if seen[rid] > 1:
        issues.add("duplicate_id", rid)
        rid = f"{rid}#{seen[rid]}"
    return rid


def read_absa_file(path: str | Path, task: AbsaTask) -> Loaded:
    """A user's (or SemEval's) JSON / JSON-lines file of labelled sentences; see the module doc."""
    path = Path(path)
    issues, examples, seen = Issues(), [], {}
    for i, row in enumerate(_rows(path)):
        if not _has_sentence(row):
            issues.add("row_without_sentence", f"row {i}")
            continue
        rid = _unique_id(row, i, path.stem, seen, issues)
        if not isinstance(row.get("aspects"), list):
            issues.add("row_without_aspects", rid)
            continue
        examples.append(AbsaExample(rid, row["sentence"], read_aspects(row["sentence"], row["aspects"], task,
                                                                      issues, rid)))
    return Loaded(examples, issues, str(path))


def semeval_path(dataset: str, split: str, folder: Optional[str | Path] = None) -> Path:
    if dataset not in DATASETS:
        raise ValueError(f"unknown ABSA dataset {dataset!r}; data.dataset must be one of "
                         f"{', '.join(DATASETS)}")
    if split == "hard":
        if dataset not in HARD_TEST:
            raise ValueError(f"no hard test set for {dataset!r}; 'hard' exists for {', '.join(HARD_TEST)}")
        return absa_folder(folder) / HARD_TEST[dataset]
    if split not in SPLITS:
        raise ValueError(f"unknown ABSA split {split!r}; use one of {', '.join(SPLITS)} or hard")
    return absa_folder(folder) / dataset / f"{split}.json"


def load_semeval(dataset: str, split: str, task: AbsaTask, folder: Optional[str | Path] = None) -> Loaded:
    """A SemEval split: ``lap``/``res``/``res15`` × train/dev/test/sample2/sample5 (or ``hard``)."""
    return read_absa_file(semeval_path(dataset, split, folder), task)


# ------------------------------------------------------------------------------------------- synthetic rows


@dataclass(frozen=True)
class SyntheticRow:
    """A teacher-written sentence with its provenance, its raw label and the published normalised label."""

    id: str
    sentence: str
    parents: tuple[str, ...]  # seed ids it was written from (two for paraphrase_comb)
    method: str  # one of METHODS, or "unknown" when the id does not follow the pattern
    raw: tuple  # the teacher's pairs as published (not validated)
    aspects: tuple[Aspect, ...]  # the published normalised label, validated like gold data

    def example(self) -> AbsaExample:
        return AbsaExample(self.id, self.sentence, self.aspects)


def parse_synthetic_id(rid: str) -> tuple[tuple[str, ...], str]:
    """``"<seed>[_<seed>]_<method>[_<variant>]_<n>"`` -> (parent seed ids, method); else ``((), "unknown")``.
    """
    m = _SYNTHETIC_ID.match(rid)
    if m is None:
        return (), "unknown"
    return tuple(m.group("parents").split("_")), m.group("method")


@dataclass
class LoadedSynthetic:
    rows: list[SyntheticRow]
    issues: Issues = field(default_factory=Issues)
    source: str = ""


def load_ds2_synthetic(name: str, task: AbsaTask, folder: Optional[str | Path] = None) -> LoadedSynthetic:
    """A DS²-ABSA synthetic file by name (``lap_all2_instance``, …) or by path."""
    path = Path(name)
    if not path.is_file():
        if name.removesuffix(".json") not in SYNTHETIC_FILES:
            raise ValueError(f"unknown synthetic file {name!r}; give a path or one of "
                             f"{', '.join(SYNTHETIC_FILES)}")
        path = synthetic_folder(folder) / f"{name.removesuffix('.json')}.json"
    issues, rows, seen = Issues(), [], {}
    for i, row in enumerate(_rows(path)):
        if not _has_sentence(row):
            issues.add("row_without_sentence", f"row {i}")
            continue
        rid = _unique_id(row, i, path.stem, seen, issues)
        parents, method = parse_synthetic_id(rid)
        if method == "unknown":
            issues.add("unparsed_id", rid)
        raw = row.get("label")
        raw = tuple(raw) if isinstance(raw, list) else ()
        aspects = read_aspects(row["sentence"], row.get("aspects") or [], task, issues, rid)
        rows.append(SyntheticRow(rid, row["sentence"], parents, method, raw, aspects))
    return LoadedSynthetic(rows, issues, str(path))
