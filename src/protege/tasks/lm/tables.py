"""The language-model family's run-directory catalogue: every table and artifact its stages read or write."""

from __future__ import annotations

from protege.stage import Output, training_files

PROMPTS = "prompts"
RESPONSES = "responses"
MESSAGES = "responses.messages.jsonl"
LOGIT_CACHE = "logit-cache"
STUDENTS = "students"
TRAINED = "train_lm.json"
METRICS = "lm_metrics.json"
REPORT = "report"

OUTPUTS = (
    Output(PROMPTS, "table", "instructions for the teacher, with their split", ("id", "prompt", "split", "source")),
    Output(RESPONSES, "table", "the teacher's answers: the data of sequence-level KD",
           ("id", "parent_id", "prompt", "response", "split", "finish_reason", "teacher")),
    Output(MESSAGES, "artifact", "the teacher's answers as chat `messages` JSON lines (TRL, LLaMA-Factory)",
           path=MESSAGES),
    Output(LOGIT_CACHE, "artifact", "the teacher's top-k log-probabilities over the responses", path=LOGIT_CACHE),
    Output(STUDENTS, "artifact", "trained student LMs, one transformers folder per variant", path=STUDENTS),
    Output(TRAINED, "artifact", "every trained student variant with its training figures", path=TRAINED),
    Output(METRICS, "artifact", "students and teacher on held-out prompts", path=METRICS),
    Output(REPORT, "artifact", "report.html and report.md", path="report*"),
)
TRAIN_LOGS = "train_lm_logs"
OUTPUTS += (
    Output(TRAIN_LOGS, "artifact", "checkpoints and training metrics of the student LMs",
           path=training_files("sft", "logit_kd", "cached_kd", "on_policy_kd")),
)
