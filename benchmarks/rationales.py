"""Does pre-training on a teacher's rationales help an ABSA student beyond reading the same reviews?

FSA distillation pre-trains a small model on a teacher's analyses and rewrites of reviews, then fine-tunes it on
aspect-sentiment extraction. 500 reviews cannot reproduce its +6 F1; this measures the mechanism with the
controls that separate teacher knowledge from domain adaptation. Sub-commands:

- ``quality``: the Mixtral-8x7B file's rationales (parse rate, agreement of each analysis's overall polarity
  with the star rating, Wilson intervals), and the embedded SmolLM2-135M-Instruct teacher writing analyses of
  ``--embedded N`` of the same reviews live, through a ledger (``results/rationales-ledger``); its rows are kept
  in ``results/rationales-embedded.jsonl`` for the encoder arm.
- ``encoder``: MiniLM, masked-LM continued pre-training (the same number of steps in every arm), then the
  tagger on SemEval-14 laptops' 2 % seed (49 sentences, the quickstart's settings), scored on the 800 test
  sentences. Arms: ``none`` (no pre-training), ``reviews`` (the 500 reviews alone: domain adaptation, no
  teacher), ``mixtral`` (the 500 (review, Mixtral rationale) pairs), ``embedded`` (the N (review, embedded
  analysis) pairs), ``reviews-sub`` and ``mixtral-sub`` (the same N reviews alone / with Mixtral's text: the
  fair comparisons for ``embedded``).
- ``generative``: the half-depth SmolLM2 (``smollm2-135m-half``) trained review -> teacher text (completion
  loss), then fine-tuned to write the seed's pairs, scored with pair F1 on ``--test-size`` test sentences.
  Arms ``none``, ``reviews`` (review text as the response to a fixed prompt), ``mixtral``.
- ``summarise``: ``results/rationales.json``: per arm the mean pair F1 over training seeds with a 95 %
  bootstrap interval over test sentences, and the paired difference to ``none`` (every resample scores both
  arms' predictions on the same sentences; each arm averaged over the seeds both have).

Each trained model appends one JSON line (with its test predictions) to ``results/rationales-runs.jsonl``
(under a lock); a re-run skips keys already there, so an interrupted benchmark resumes. ``encoder`` and
``generative`` train one unit per (arm, seed), ``--jobs`` (2) at a time, each in its own process at
``--threads`` (1) torch threads (``benchmarks/processes.py``; logs in ``--logs``); ``--jobs 1`` trains them one
after another in this process. The summary is written once, after the last.

    /work/heavy python benchmarks/rationales.py encoder --arms none,mixtral --seeds 0,1,2 --jobs 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from protege.core.records import record_id
from protege.core.run import Run
from protege.models.base import SamplingParams
from protege.models.config import TeacherConfig
from protege.models.factory import make_teacher
from protege.models.ledgered import LedgeredTeacher
from protege.tasks.absa.data import load_semeval
from protege.evaluate.intervals import micro_f1
from protege.tasks.absa.metrics import aspect_scores, labels_of, pair_scores, sentence_counts
from protege.tasks.absa.pretrain import PretrainConfig, pretrain_encoder
from protege.tasks.absa.prompts import analysis_prompt
from protege.tasks.absa.rationales import quality, rationale_row, reviews_path
from protege.tasks.absa.student import training_set
from protege.tasks.absa.tagger import TaggerConfig, fit_tagger, predict_aspects
from protege.tasks.absa.tags import TagScheme
from protege.tasks.absa.task import AbsaTask, Aspect
from protege.train.loop import EarlyStopping, LoopConfig

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from processes import Unit, add_options, append_line, child, run_children  # noqa: E402
RESULTS = HERE / "results"
RUNS = RESULTS / "rationales-runs.jsonl"
EMBEDDED = RESULTS / "rationales-embedded.jsonl"
MIXTRAL = "mixtral-8x7b-instruct"
TASK = AbsaTask()
SCHEME = TagScheme(tuple(TASK.labels))
ENCODER_ARMS = ("none", "reviews", "mixtral", "embedded", "reviews-sub", "mixtral-sub")
GENERATIVE_ARMS = ("none", "reviews", "mixtral")


def mixtral_rows() -> list[dict]:
    rows = [json.loads(line) for line in reviews_path("fsa_mixtral").read_text().splitlines() if line.strip()]
    return [rationale_row(str(r["ID"]), r["Text"], float(r["Overall"]), r["mixtral_response"] or "", None,
                          MIXTRAL, "", 40) for r in rows]


def subset_ids(n: int) -> list[str]:
    ids = [r["review_id"] for r in mixtral_rows()]
    return [ids[i] for i in sorted(random.Random(0).sample(range(len(ids)), min(n, len(ids))))]


def quality_cmd(args) -> None:
    mixtral = mixtral_rows()
    out = {"mixtral": quality(mixtral)[MIXTRAL]}
    if args.embedded:
        wanted = set(subset_ids(args.embedded))
        reviews = [r for r in mixtral if r["review_id"] in wanted]
        run = Run(RESULTS / "rationales-ledger")
        cfg = TeacherConfig(backend="hf", model="smollm2-135m-instruct", batch_size=args.batch)
        teacher = LedgeredTeacher(make_teacher(cfg), run.ledger, batch_size=args.batch)
        params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0, seed=0)
        began, rows = time.time(), []
        for start in range(0, len(reviews), args.batch):
            chunk = reviews[start: start + args.batch]
            prompts = [analysis_prompt(r["review"]) for r in chunk]
            for r, p, g in zip(chunk, prompts, teacher.generate(prompts, params)):
                rows.append(rationale_row(r["review_id"], r["review"], r["rating"], g[0].text, "analysis",
                                          "smollm2-135m-instruct", record_id(p), 40))
            print(f"embedded: {len(rows)}/{len(reviews)} ({time.time() - began:.0f} s)", flush=True)
        EMBEDDED.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out["embedded"] = {**quality(rows)["smollm2-135m-instruct"], "seconds": round(time.time() - began, 1),
                           "max_new_tokens": args.max_new_tokens,
                           "examples": [r["text"][:400] for r in rows[:3]]}
        out["mixtral_same_reviews"] = quality([r for r in mixtral if r["review_id"] in wanted])[MIXTRAL]
    (RESULTS / "rationales-quality.json").write_text(json.dumps(out, indent=2))
    for name, q in out.items():
        if isinstance(q, dict) and "parse_rate" in q:
            a = q["star_agreement"]
            print(f"{name}: parsed {q['parsed']}/{q['analyses']}, star agreement {a['all']['rate']} "
                  f"{a['all']['interval']} (polar {a['polar']['rate']})")


def arm_texts(arm: str, n: int) -> list:
    """The pre-training texts of an encoder arm (see the module notes)."""
    mixtral = [r for r in mixtral_rows() if r["usable"]]
    sub = set(subset_ids(n))
    if arm in ("reviews", "reviews-sub"):
        return list(dict.fromkeys(r["review"] for r in mixtral if arm == "reviews" or r["review_id"] in sub))
    if arm in ("mixtral", "mixtral-sub"):
        return [(r["review"], r["text"]) for r in mixtral if arm == "mixtral" or r["review_id"] in sub]
    if arm == "embedded":
        if not EMBEDDED.exists():
            raise SystemExit("the embedded arm needs results/rationales-embedded.jsonl: run `quality --embedded N`")
        rows = [json.loads(line) for line in EMBEDDED.read_text().splitlines()]
        return [(r["review"], r["text"]) for r in rows if r["usable"]]
    raise SystemExit(f"unknown arm {arm!r}")


def splits(args):
    seed = load_semeval("lap", "sample2", TASK).examples
    dev = load_semeval("lap", "dev", TASK).examples
    dev = [dev[i] for i in sorted(random.Random(0).sample(range(len(dev)), min(args.dev_size, len(dev))))]
    test = load_semeval("lap", "test", TASK).examples
    return seed, dev, test


def record(key: str, arm: str, s: int, gold, pred, began: float, **extra) -> None:
    row = {"key": key, "arm": arm, "training_seed": s, "pair": pair_scores(gold, pred).as_dict(),
           "aspect": aspect_scores(gold, pred).as_dict(), "seconds": round(time.time() - began, 1),
           "pred": {i: [a.as_dict() for a in v] for i, v in pred.items()}, **extra}
    append_line(RUNS, json.dumps(row, default=str))  # parallel children append to the same file
    print(f"{key}: pair F1 {row['pair']['f1']:.3f} ({row['seconds']} s)", flush=True)


def generative_test(args, test: list) -> list:
    """The generative arms' test sentences: ``--test-size`` of them, the same sample in every arm."""
    return [test[i] for i in sorted(random.Random(0).sample(range(len(test)), min(args.test_size, len(test))))]


def run_key(command: str, arm: str, s: int, args, tests: int) -> str:
    """A trained model's key in ``RUNS`` (``tests``: the test sentences it is scored on)."""
    if command == "encoder":
        return f"encoder:{arm}:{s}:mlm{args.mlm_steps}"
    return f"generative:{arm}:{s}:pre{args.pre_steps}:ft{args.ft_steps}:test{tests}"


def units(args, argv: list[str], done: set, tests: int) -> list[Unit]:
    """One child process per (arm, seed) not in ``done``, in the order the in-process loop trains them. They
    share nothing but ``RUNS`` (appended under a lock) and read-only inputs."""
    return [Unit(f"{args.command}-{arm}-{s}", child(__file__, argv, "--arms", arm, "--seeds", str(s)))
            for s in args.seeds for arm in args.arms if run_key(args.command, arm, s, args, tests) not in done]


def encoder_cmd(args, done: set) -> None:
    seed, dev, test = splits(args)
    tagger = TaggerConfig(max_length=96, loop=LoopConfig(
        steps=args.steps, lr=2e-4, micro_batch_size=16, schedule="linear", warmup_steps=15, weight_decay=0.01,
        eval_every=50, tracker=None, early_stopping=EarlyStopping(metric="dev_pair_f1", mode="max", patience=2)))
    mlm = PretrainConfig(max_length=args.mlm_length, loop=LoopConfig(
        steps=args.mlm_steps, lr=1e-4, micro_batch_size=16, schedule="linear", warmup_steps=10,
        weight_decay=0.01, tracker=None))
    for s in args.seeds:
        for arm in args.arms:
            key = run_key("encoder", arm, s, args, len(test))
            if key in done:
                continue
            began, extra, student = time.time(), {}, tagger
            if arm != "none":
                texts = arm_texts(arm, args.embedded)
                folder = RESULTS / "rationales-encoders" / f"{arm}-{s}"
                extra = {"texts": len(texts), **pretrain_encoder("minilm-l6", texts, mlm, folder, seed=s)}
                student = tagger.model_copy(update={"student": str(folder)})
            fitted = fit_tagger(student, training_set(seed, [], 1.0), SCHEME, dev=dev, seed=s)
            pred = predict_aspects(fitted.model, fitted.tokenizer, SCHEME, test)
            record(key, arm, s, labels_of(test), pred, began, family="encoder", mlm_steps=args.mlm_steps,
                   tagger_steps=fitted.result.steps, **extra)


def generative_cmd(args, done: set) -> None:
    from protege.models.zoo import load_causal_lm
    from protege.tasks.absa.generative import fit_lm, pairs_training, predict_pairs, rationale_pairs

    seed, _, test = splits(args)
    test = generative_test(args, test)
    mixtral = [r for r in mixtral_rows() if r["usable"]]
    for s in args.seeds:
        for arm in args.arms:
            key = run_key("generative", arm, s, args, len(test))
            if key in done:
                continue
            began, extra = time.time(), {}
            model, tokenizer = load_causal_lm("smollm2-135m-half")
            if arm != "none":
                prompts, responses = rationale_pairs([r["review"] for r in mixtral], [r["text"] for r in mixtral],
                                                     "reviews" if arm == "reviews" else "rationales")
                pre = fit_lm(model.train(), tokenizer, prompts, responses, LoopConfig(
                    steps=args.pre_steps, lr=1e-4, micro_batch_size=4, schedule="linear", warmup_steps=5,
                    tracker=None, seed=s), max_length=args.pre_length)
                model = pre.model
                extra = {"pre_loss": [pre.history[0]["loss"], pre.metrics["loss"]] if pre.history else None,
                         "pre_texts": len(responses)}
            prompts, responses = pairs_training(seed)
            ft = fit_lm(model.train(), tokenizer, prompts, responses, LoopConfig(
                steps=args.ft_steps, lr=1e-4, micro_batch_size=8, schedule="linear", warmup_steps=5,
                tracker=None, seed=s), max_length=128)
            pred, health = predict_pairs(ft.model, tokenizer, test, TASK, max_new_tokens=40)
            record(key, arm, s, labels_of(test), pred, began, family="generative", health=health,
                   pre_steps=args.pre_steps if arm != "none" else 0, ft_steps=args.ft_steps, **extra)


def summarise(n_boot: int = 1000) -> dict:
    records = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()] if RUNS.exists() else []
    test = {e.id: e.aspects for e in load_semeval("lap", "test", TASK).examples}
    groups: dict = {}
    for r in records:
        preds = {i: tuple(Aspect(a["from"], a["to"], a["target"], a["polarity"]) for a in v)
                 for i, v in r["pred"].items()}
        groups.setdefault((r["family"], r["key"].split(":", 3)[3]), {}).setdefault(r["arm"], {})[
            r["training_seed"]] = (r, preds)
    quality_file = RESULTS / "rationales-quality.json"
    out = {"interval": "95 % percentile bootstrap over test sentences (1000 resamples) of the mean over "
           "training seeds; differences paired on the same resampled sentences and the seeds both arms have",
           "quality": json.loads(quality_file.read_text()) if quality_file.exists() else None, "rows": []}
    rng = np.random.default_rng(0)
    for (family, config), arms in groups.items():
        ids = sorted(next(iter(next(iter(arms.values())).values()))[1])
        gold = {i: test[i] for i in ids}
        counts = {arm: {s: sentence_counts(gold, p, ids) for s, (_, p) in by_seed.items()}
                  for arm, by_seed in arms.items()}
        picks = rng.integers(0, len(ids), (n_boot, len(ids)))
        whole = np.arange(len(ids))[None, :]
        for arm, by_seed in arms.items():
            seeds = sorted(by_seed)
            own = [counts[arm][s] for s in seeds]
            row = {"family": family, "config": config, "arm": arm, "seeds": seeds,
                   "pair_f1": float(micro_f1(own, whole)[0]),
                   "interval": list(np.percentile(micro_f1(own, picks), [2.5, 97.5])),
                   "pair_f1_per_seed": [by_seed[s][0]["pair"]["f1"] for s in seeds],
                   "seconds": [by_seed[s][0]["seconds"] for s in seeds],
                   **{k: by_seed[seeds[0]][0][k] for k in ("texts", "health") if k in by_seed[seeds[0]][0]}}
            both = sorted(set(seeds) & set(arms.get("none", {}))) if arm != "none" else []
            if both:
                mine, base = [counts[arm][s] for s in both], [counts["none"][s] for s in both]
                diff = micro_f1(mine, picks) - micro_f1(base, picks)
                row["vs_none"] = {"seeds": both,
                                  "difference": float(micro_f1(mine, whole)[0] - micro_f1(base, whole)[0]),
                                  "interval": list(np.percentile(diff, [2.5, 97.5]))}
            out["rows"].append(row)
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("quality", "encoder", "generative", "summarise"))
    ap.add_argument("--arms", default=None, help="comma-separated arms (see the module notes)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--embedded", type=int, default=100, help="reviews the embedded teacher analyses")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=150, help="tagger steps")
    ap.add_argument("--mlm-steps", type=int, default=80)
    ap.add_argument("--mlm-length", type=int, default=256)
    ap.add_argument("--dev-size", type=int, default=150)
    ap.add_argument("--pre-steps", type=int, default=40)
    ap.add_argument("--pre-length", type=int, default=256)
    ap.add_argument("--ft-steps", type=int, default=60)
    ap.add_argument("--test-size", type=int, default=200)
    add_options(ap, Path("/tmp/protege-rationales"), "(arm, seed) units")
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    default = GENERATIVE_ARMS if args.command == "generative" else ENCODER_ARMS
    args.arms = args.arms.split(",") if args.arms else list(default)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    torch.set_num_threads(args.threads)  # a busy shared CPU: extra intra-op threads spin instead of helping
    RESULTS.mkdir(exist_ok=True)
    done = {json.loads(line)["key"] for line in RUNS.read_text().splitlines() if line.strip()} \
        if RUNS.exists() else set()
    status = 0
    if args.command == "quality":
        quality_cmd(args)
    elif args.jobs > 1 and args.command in ("encoder", "generative"):
        tests = len(generative_test(args, load_semeval("lap", "test", TASK).examples))  # a generative key's
        status = run_children(units(args, argv, done, tests), args)
    elif args.command == "encoder":
        encoder_cmd(args, done)
    elif args.command == "generative":
        generative_cmd(args, done)
    if not args.child:  # the parent summarises once, after every child
        (RESULTS / "rationales.json").write_text(json.dumps(summarise(), indent=2))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
