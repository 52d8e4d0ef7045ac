"""The ``augment`` section: how each round asks the teacher for new examples, where it mines the student's
errors, when it stops, how much it may spend and which synthesis strategy the budget ratio picks.

Variants are typed, each with a ``kind``: ``prompt`` is ``one_error`` (one mined error per request, LLM2LLM) or
``report`` (the student's per-class dev metrics and its confidently wrong examples, asking for the weak classes,
PGKD); a plain string (``prompt: report``) is the variant with its defaults. ``mine`` is ``dev`` (the
teacher-labelled dev split) or ``seed`` (the gold seed the student trained on, LLM2LLM's seed-set mining).

The budget is counted in **call units**: one scored prompt (one ledger ``score`` row; labelling a text costs one
per task template) is one unit, one generated completion is ``generation_cost`` units (1 = every request costs
the same, as a hosted API bills per request; on a CPU, where one generation costs about 5-10 scoring calls, set
5-10). The budget ratio R = ``budget.units`` / gold seed size picks the strategy when ``strategy: auto``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from protege.core.section import Section, check_template

ONE_ERROR_INSTRUCTION = (
    "Here is a text whose label is '{label}':\n\n{text}\n\nWrite one new, different text of the same kind "
    "whose label is also clearly '{label}'. Reply with the new text only."
)
REPORT_INSTRUCTION = (
    "A small classifier is learning to label texts as one of: {labels}. Its results on held-out texts, per "
    "label:\n{report}\n\nTexts it got wrong although it was confident:\n{examples}\n\nWrite one new, realistic "
    "text whose correct label is clearly '{label}', of the kind it still gets wrong. Reply with the new text only."
)
REPHRASE_INSTRUCTION = (
    "Rewrite this text in other words, keeping its meaning and its tone:\n\n{text}\n\nReply with the rewritten "
    "text only."
)
Strategy = Literal["answer_aug", "rephrase", "new"]


class OneErrorPrompt(Section):
    """One request per mined error: the teacher sees that text and the label it should have had."""

    kind: Literal["one_error"] = Field("one_error", description="One mined error per request (LLM2LLM).")
    instruction: str = Field(ONE_ERROR_INSTRUCTION, description="Prompt; {text} is the mined text, {label} its "
                             "label (the teacher's on dev, gold on the seed).")

    @field_validator("instruction")
    @classmethod
    def _renders(cls, value: str) -> str:
        check_template(value, {"text": "sample text", "label": "label"}, "augment.prompt.instruction")
        return value


class ReportPrompt(Section):
    """The student's validation report in every request, which asks for a text of one weak class (PGKD)."""

    kind: Literal["report"] = Field("report", description="Per-class dev metrics and hard negatives (PGKD).")
    hard_negatives: int = Field(4, ge=0, description="Confidently wrong mined texts shown per request (those of "
                                "the asked class, true or predicted, first; rotated between requests).")
    weak_classes: Optional[int] = Field(None, ge=1, description="Ask only for the k classes with the lowest dev "
                                        "F1; null: every class with an F1 below 1. Requests are shared in "
                                        "proportion to 1 - F1.")
    instruction: str = Field(REPORT_INSTRUCTION, description="Prompt; {labels} the label names, {report} the "
                             "per-class table, {examples} the hard negatives, {label} the class asked for.")

    @field_validator("instruction")
    @classmethod
    def _renders(cls, value: str) -> str:
        check_template(value, {"labels": "a, b", "report": "table", "examples": "- x", "label": "a"},
                       "augment.prompt.instruction")
        return value


Prompt = Annotated[Union[OneErrorPrompt, ReportPrompt], Field(discriminator="kind")]


class EarlyStop(Section):
    """When the rounds stop: after ``patience`` rounds in a row that do not improve the dev metric."""

    metric: Literal["agreement", "macro_f1"] = Field("agreement", description="Dev metric against the teacher's "
                                                     "dev labels: agreement (accuracy) or macro_f1.")
    patience: int = Field(1, ge=1, description="Rounds in a row without improvement that end the stage. A round "
                          "that does not improve is not kept, but its texts stay in training for the next round "
                          "and are kept with it if that round improves.")
    min_improvement: float = Field(0.0, ge=0, description="The metric must rise by more than this to improve.")


class Budget(Section):
    """What the augmentation may spend, in call units: 1 per scored prompt, generation_cost per completion."""

    units: int = Field(ge=1, description="Most call units over all rounds: one scored prompt = 1 unit, one "
                       "generated completion = generation_cost units. R = units / gold seed size.")
    generation_cost: float = Field(1.0, gt=0, description="Call units one generated completion costs (1: per "
                                   "request, as a hosted API; 5-10 on a CPU, where one generation costs about "
                                   "that many scoring calls).")


class RatioThresholds(Section):
    """strategy auto: R below rephrase_from -> answer_aug, below new_from -> rephrase, else new.

    PROVISIONAL: the defaults are not yet measured by protege's benchmark (benchmarks/augmentation.py grid has
    run only a slice; docs/classification-students.md says which). They follow arXiv 2409.19759's ordering
    (answers at low R, new inputs at high R) and will be replaced by the grid's crossovers.
    """

    rephrase_from: float = Field(3.0, ge=1, description="Smallest R at which auto rephrases instead of "
                                 "augmenting answers (provisional, not yet measured).")
    new_from: float = Field(10.0, ge=1, description="Smallest R at which auto writes new texts (provisional, "
                            "not yet measured).")

    @model_validator(mode="after")
    def _ordered(self) -> "RatioThresholds":
        if self.new_from < self.rephrase_from:
            raise ValueError(f"augment.thresholds: new_from={self.new_from} is below rephrase_from="
                             f"{self.rephrase_from}; new_from must be at least rephrase_from")
        return self


class AugmentConfig(Section):
    """Rounds of new teacher-written examples aimed at the student's errors."""

    # Keys of earlier versions and where they live now; a recipe using one is told the new place.
    moved_keys: ClassVar[dict[str, str]] = {"instruction": "prompt.instruction",
                                            "min_improvement": "early_stop.min_improvement"}
    max_rounds: int = Field(2, ge=1, description="Most rounds; fewer on early stopping or an exhausted budget.")
    max_errors: int = Field(32, ge=1, description="Requests per round: mined errors used (one_error, rephrase; "
                            "the student's most confident first), or report requests.")
    per_error: int = Field(1, ge=1, description="Completions the teacher samples per request.")
    max_new_tokens: int = Field(64, ge=8, description="Length limit of each written text, in teacher tokens.")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature of the teacher when writing.")
    prompt: Prompt = Field(default_factory=OneErrorPrompt, description="How new texts are asked for: one_error "
                           "or report (a string is that kind with its defaults).")
    mine: Literal["dev", "seed"] = Field("dev", description="Where errors are mined: dev (student vs the "
                                         "teacher's dev labels) or seed (student vs the gold seed it trained on).")
    early_stop: EarlyStop = Field(default_factory=EarlyStop, description="When the rounds stop.")
    strategy: Literal["auto", "answer_aug", "rephrase", "new"] = Field(
        "new", description="new: the teacher writes new texts (by prompt); rephrase: it rewrites mined texts, "
        "which keep their label; answer_aug: no new texts, the teacher's calibrated answers for the gold seed "
        "texts (mined errors first); auto: chosen by R and thresholds (needs budget).")
    budget: Optional[Budget] = Field(None, description="Spending limit; null: max_rounds x max_errors requests.")
    thresholds: RatioThresholds = Field(default_factory=RatioThresholds, description="strategy auto: R cut-offs.")
    rephrase_instruction: str = Field(REPHRASE_INSTRUCTION, description="rephrase: prompt; {text} the mined text.")

    @field_validator("prompt", mode="before")
    @classmethod
    def _kind_alone(cls, value: object) -> object:
        return {"kind": value} if isinstance(value, str) else value

    @field_validator("rephrase_instruction")
    @classmethod
    def _rephrase_renders(cls, value: str) -> str:
        check_template(value, {"text": "sample text"}, "augment.rephrase_instruction")
        return value

    @model_validator(mode="after")
    def _auto_needs_budget(self) -> "AugmentConfig":
        if self.strategy == "auto" and self.budget is None:
            raise ValueError("augment.strategy auto picks the strategy by R = budget / seed size: set "
                             "augment.budget.units (e.g. {units: 300}) or name a strategy")
        return self
