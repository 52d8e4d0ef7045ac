"""The absa family's report, built from ``metrics.json`` alone: headline, flags, scores, the polarity
confusion table, breakdowns, synthesis and refinement health, data issues."""

from __future__ import annotations

from protege.core.run import Run
from protege.evaluate.report import Report, Table
from protege.tasks.absa import tables as t

NAMES = {t.STUDENT: "student (seed + synthetic)", t.SEED_STUDENT: "seed only"}


def _f(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _scores(models: dict) -> Table:
    rows = []
    for name, splits in models.items():
        for split, subsets in splits.items():
            for subset, s in subsets.items():
                rows.append(
                    [
                        NAMES.get(name, name),
                        split,
                        subset,
                        str(s["sentences"]),
                        _f(s["pair"]["f1"]),
                        _f(s["pair"]["precision"]),
                        _f(s["pair"]["recall"]),
                        _f(s["aspect"]["f1"]),
                        _f(s["polarity"]["accuracy"]),
                        _f(s["polarity"]["macro_f1"]),
                    ]
                )
    return Table(
        [
            "model",
            "test set",
            "subset",
            "sentences",
            "pair F1",
            "pair P",
            "pair R",
            "aspect F1",
            "polarity acc",
            "polarity macro-F1",
        ],
        rows,
        "Scores (polarity over the aspects each model found)",
    )


def _confusion(scores: dict, labels: list[str], who: str) -> Table:
    table = scores["confusion"]
    return Table(
        ["gold \\ predicted", *labels],
        [[g, *[str(table[g][p]) for p in labels]] for g in labels],
        f"Polarity confusion over matched aspects: {who}, test",
    )


def _pct(x) -> str:
    return "—" if x is None else f"{x:.1%}"


def _pretraining(trained: dict) -> tuple[str, list[Table]]:
    """A headline note and a table when the taggers' encoder was pre-trained on reviews or rationales."""
    info = next((v["pretrained"] for v in trained.values() if v.get("pretrained")), None)
    if not info:
        return "", []
    what = "teacher rationales" if info["corpus"] == "rationales" else "reviews alone (no teacher)"
    note = f"; encoder pre-trained (masked LM) on {info['texts']} {what}"
    rows = [["corpus", what], ["texts", str(info["texts"])], ["teachers", ", ".join(info["teachers"])],
            ["steps", str(info["steps"])], ["loss", f"{_f(info['first_loss'])} -> {_f(info['last_loss'])}"],
            ["masked-token accuracy at the end", _f(info.get("last_mlm_accuracy"))]]
    return note, [Table(["pre-training", ""], rows, "Encoder pre-training before tagging")]


def _rationales(summary: dict) -> list[Table]:
    rows = []
    for teacher, q in (summary.get("teachers") or {}).items():
        agree = q["star_agreement"]
        cells = []
        for part in ("all", "polar"):
            a = agree[part]
            cells.append("—" if not a["n"] else
                         f"{_pct(a['rate'])} [{_pct(a['interval'][0])}, {_pct(a['interval'][1])}] of {a['n']}")
        rows.append([teacher, str(q["rows"]), str(q["usable"]), f"{q['parsed']}/{q['analyses']}", *cells])
    if not rows:
        return []
    return [Table(["teacher", "rationales", "usable", "analyses parsed", "star agreement",
                   "star agreement (1–2 and 4–5 stars)"], rows,
                  "Teacher rationales: parse rate and agreement of each analysis's overall polarity with the "
                  "star rating")]


def build(run: Run) -> Report:
    m = run.read_json(t.METRICS)
    models, labels = m["models"], m["labels"]
    main = t.STUDENT if t.STUDENT in models else next(iter(models))
    f1 = models[main]["test"]["all"]["pair"]["f1"]
    headline = f"{NAMES.get(main, main)}: test pair F1 {f1:.3f}"
    if t.SEED_STUDENT in models and main != t.SEED_STUDENT:
        headline += f" vs {models[t.SEED_STUDENT]['test']['all']['pair']['f1']:.3f} for the seed alone"
    note, pretrained = _pretraining(m.get("trained") or {})
    headline += note
    blocks = [_scores(models), _confusion(models[main]["test"]["all"], labels, NAMES.get(main, main)),
              *pretrained, *_rationales(m.get("rationales") or {})]
    synth = m.get("synthesize") or {}
    if synth:
        gen = synth.get("generation") or {}
        rows = [
            ["mode", str(synth.get("mode"))],
            ["rows kept", str(synth.get("kept"))],
            ["dropped", str(synth.get("dropped"))],
            ["methods", str(synth.get("methods"))],
            ["budget", str(synth.get("budget", "—"))],
            ["parse rate", _f(gen.get("parse_rate"))],
            ["grounding rate", _f(gen.get("grounding_rate"))],
        ]
        blocks.append(Table(["synthesis", ""], rows, "Synthetic data"))
    annotate = (m.get("generation") or {}).get("annotate")
    if annotate:
        blocks.append(
            Table(
                ["annotation (generate)", ""],
                [[k, _f(v) if isinstance(v, float) else str(v)] for k, v in annotate.items()],
                "Teacher-written labels",
            )
        )
    refine = m.get("refine") or {}
    if refine:
        n = refine["normalisation"]
        rows = [
            [
                "normalisation",
                f"{n['rows_changed']} of {n['rows']} rows changed ({n['rows_changed_rate']:.1%}), "
                f"{n['pairs_dropped']} of {n['raw_pairs']} raw pairs dropped",
            ]
        ]
        rows += [
            [
                f"round {r['round']}",
                f"change rate {r['change_rate']:.3f} (kept {r['kept']}, replaced "
                f"{r['replaced']}, dropped {r['dropped']}, added {r['added']}); dev pair F1 "
                f"{_f(r['best_dev_pair_f1'])}",
            ]
            for r in refine["rounds"]
        ]
        blocks.append(Table(["refinement", ""], rows, "Label refinement"))
    data = (m.get("data") or {}).get("splits", {})
    issue_rows = [
        [split, kind, str(v["count"]), "; ".join(v["examples"])[:120]]
        for split, s in data.items()
        for kind, v in s["issues"].items()
    ]
    issue_rows += [
        ["synthetic", kind, str(v["count"]), "; ".join(v["examples"])[:120]]
        for kind, v in (synth.get("issues") or {}).items()
    ]
    if issue_rows:
        blocks.append(
            Table(["split", "issue", "count", "examples"], issue_rows, "Data issues (counted, not fatal)")
        )
    return Report(f"Aspect-based sentiment: {run.path.name}", headline, m.get("flags", []), blocks)
