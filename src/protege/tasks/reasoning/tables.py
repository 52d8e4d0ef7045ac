"""The reasoning family's run-directory catalogue: every table and artifact its stages read or write."""

from __future__ import annotations

from protege.stage import Output, training_files

PROBLEMS = "problems"
TEACHER = "teacher"  # the prepared teacher's weights (a transformers folder)
PREPARE_SUMMARY = "prepare_teacher.json"
STUDENT = "student"
STUDENT_SUMMARY = "student.json"
SAMPLES = "samples"
STATS = "difficulty"
ESTIMATE_SUMMARY = "estimate.json"
POOL = "allocated_samples"
ARMS = "arms"
ALLOCATE_SUMMARY = "allocate.json"
SELFTRAINED = "selftrained"
SELFTRAIN_SUMMARY = "selftrain.json"
RL = "rl"  # one trained student per RL arm
RL_SUMMARY = "rl.json"
RESULTS = "test_results"
METRICS = "reasoning_metrics.json"
REPORT = "report"
PREPARE_LOGS = "prepare_teacher_logs"
STUDENT_LOGS = "student_logs"
SELFTRAIN_LOGS = "selftrain_logs"
RL_LOGS = "rl_logs"

SAMPLE_COLUMNS = ("id", "problem_id", "round", "kind", "index", "response", "tokens", "answer", "correct",
                  "formatted", "truncated", "process_score", "policy", "seed")

OUTPUTS = (
    Output(PROBLEMS, "table", "problems with their gold answer, worked solution and split",
           ("id", "split", "question", "answer", "solution", "meta", "source")),
    Output(TEACHER, "artifact", "the prepared teacher: weights after fine-tuning on the worked solutions",
           path=TEACHER),
    Output(PREPARE_SUMMARY, "artifact", "teacher preparation: model id, steps, loss", path=PREPARE_SUMMARY),
    Output(STUDENT, "artifact", "the half-depth student pruned from the prepared teacher and healed by logit KD",
           path=STUDENT),
    Output(STUDENT_SUMMARY, "artifact", "the student's layers and healing figures", path=STUDENT_SUMMARY),
    Output(SAMPLES, "table", "the estimate stage's k samples per problem, scored", SAMPLE_COLUMNS),
    Output(STATS, "table", "per problem: pass rate with its Wilson interval, process score, tokens, labels",
           ("id", "problem_id", "k", "correct", "pass_rate", "low", "high", "process", "tokens", "hs_label",
            "dast_level")),
    Output(ESTIMATE_SUMMARY, "artifact", "label counts and the label noise k implies", path=ESTIMATE_SUMMARY),
    Output(POOL, "table", "extra samples drawn for the allocation arms (a shared pool per problem and kind)",
           SAMPLE_COLUMNS),
    Output(ARMS, "table", "per arm and problem: samples allocated, better-response kind, labels",
           ("id", "arm", "problem_id", "count", "better", "hs_label", "dast_level")),
    Output(ALLOCATE_SUMMARY, "artifact", "every arm's budget: samples per label, tokens, teacher calls, seconds",
           path=ALLOCATE_SUMMARY),
    Output(SELFTRAINED, "artifact", "self-trained students, one folder per arm and method", path=SELFTRAINED),
    Output(SELFTRAIN_SUMMARY, "artifact", "per arm and method: examples or pairs, steps, loss",
           path=SELFTRAIN_SUMMARY),
    Output(RL, "artifact", "students trained by GRPO, on-policy KD or KDRL, one folder per arm", path=RL),
    Output(RL_SUMMARY, "artifact", "per RL arm: objective, steps, seconds, generated and teacher-scored tokens, "
           "held-out KL", path=RL_SUMMARY),
    Output(RESULTS, "table", "per model and test problem: greedy response, verdict, tokens",
           ("id", "model", "problem_id", "response", "answer", "correct", "formatted", "truncated", "tokens")),
    Output(METRICS, "artifact", "accuracy, pass@k, maj@n, buckets, tokens, budgets and paired intervals",
           path=METRICS),
    Output(REPORT, "artifact", "report.html and report.md", path="report*"),
    Output(PREPARE_LOGS, "artifact", "checkpoints and metrics of teacher preparation",
           path=training_files("prepare_teacher")),
    Output(STUDENT_LOGS, "artifact", "checkpoints and metrics of the student's healing", path=training_files("heal")),
    Output(SELFTRAIN_LOGS, "artifact", "checkpoints and metrics of self-training", path=training_files("selftrain-*")),
    Output(RL_LOGS, "artifact", "per-step metrics (metrics/rl-<arm>.jsonl) and held-out KL (rl-<arm>-eval.jsonl) "
           "of the RL arms", path=training_files("rl-*")),
)
