"""Stages, families and the context a stage runs in: the contract between the pipeline and the task families.

A **stage** is one step of a recipe, declared once, in its family, by a :class:`Stage`: its name (which is also
the name of its recipe section), the type of that section, the function that runs it, the catalogue names of
the tables and artifacts it reads and writes, the other recipe sections it reads, and whether it needs a
teacher. The pipeline learns everything it needs from the declarations: the recipe schema, the run order, which
stage feeds which, what to recompute after a change, what to print for ``--dry-run`` and ``inspect``.

A **family** (classification, language models, …) is a package under ``protege.tasks`` exposing one
:class:`Family`: its task section, its stages in run order and its :class:`Output` catalogue.

A stage function ``run(ctx: StageContext) -> dict`` sees its own section (``ctx.config``), the run directory,
the recipe's seed, the family's task section, the sections it declared (``ctx.sections``) and the teacher
(``ctx.teacher``): nothing else of the recipe. It talks to other stages only through the run directory and
returns a small JSON-able summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Optional

from protege.core.errors import UserError

if TYPE_CHECKING:
    from protege.core.run import Run
    from protege.core.section import Section
    from protege.models.route import TeacherRoute


@dataclass(frozen=True)
class Output:
    """One entry of a family's run-directory catalogue: a record table or an artifact (file or folder).

    ``path`` of an artifact is relative to ``artifacts/``: one or more globs separated by spaces
    (``checkpoints/student checkpoints/curve-*``).
    """

    name: str
    kind: Literal["table", "artifact"]
    description: str
    columns: tuple[str, ...] = ()
    path: str = ""

    @property
    def location(self) -> str:
        """Where it lives, for people: ``records/<table>``, ``artifacts/<path>``, or the name of a group of files."""
        if self.kind == "table":
            return f"records/{self.name}"
        return f"artifacts/{self.patterns[0]}" if len(self.patterns) == 1 else self.name

    @property
    def patterns(self) -> list[str]:
        return (self.path or self.name).split()


def training_files(*names: str) -> str:
    """The artifact globs the training loop writes for trainings called ``names``: resume checkpoints, metric
    logs and tracker files (see :mod:`protege.train.loop`), for an :class:`Output`'s ``path``."""
    return " ".join(f"{folder}/{n}{suffix}" for n in names
                    for folder, suffix in (("checkpoints", ""), ("metrics", ".jsonl"), ("metrics", "-eval.jsonl"),
                                           ("tensorboard", "")))


@dataclass(frozen=True)
class Stage:
    """A stage's declaration. ``reads`` must be produced by an earlier stage of the recipe; ``uses`` are read
    when an earlier stage produced them (an optional input); ``sections`` are other recipe sections it reads.

    ``needs(config)`` gives reads chosen by the stage's settings (a table name in its section), so a recipe whose
    stages cannot feed each other fails at load, before any teacher call.

    ``adapts_teacher(backend, run)`` marks a stage that prepares the teacher: once it has run, every later
    stage gets the backend it returns (the pipeline's one route to the teacher).
    """

    name: str
    config: type["Section"]
    run: Callable[["StageContext"], dict]
    description: str
    reads: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()
    teacher: bool | Callable[[Any], bool] = False  # or a function of the stage's section
    adapts_teacher: Optional[Callable[[Any, "Run"], Any]] = None
    needs: Optional[Callable[[Any], tuple[str, ...]]] = None  # reads that depend on the stage's own settings

    def asks_teacher(self, config: Any) -> bool:
        """Whether the stage needs the teacher with ``config`` (an import instead of synthesis may not)."""
        return bool(self.teacher(config) if callable(self.teacher) else self.teacher)

    def required(self, config: Any) -> tuple[str, ...]:
        """What the stage reads with ``config``: its declared ``reads`` and those its settings name."""
        return (*self.reads, *(self.needs(config) if self.needs is not None and config is not None else ()))


@dataclass(frozen=True)
class Family:
    """A job family: its task section type, its stages in run order and its catalogue of outputs."""

    name: str
    description: str
    task: Optional[type["Section"]]
    stages: tuple[Stage, ...]
    outputs: tuple[Output, ...]
    student: Optional[Callable[["Run"], Any]] = None  # loads the run's trained student (predict, predict_proba)
    # Checks across sections, run when a recipe is read (before anything runs): raise ValueError naming the keys.
    check: Optional[Callable[[Any], None]] = None

    def __post_init__(self) -> None:
        known = {o.name for o in self.outputs}
        for stage in self.stages:
            unknown = [n for n in (*stage.reads, *stage.uses, *stage.writes) if n not in known]
            if unknown:
                raise ValueError(f"family {self.name}: stage {stage.name} names {unknown}, which are not in the "
                                 f"family's catalogue; add them to its outputs")

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def output(self, name: str) -> Output:
        return next(o for o in self.outputs if o.name == name)


@dataclass
class StageContext:
    """What a stage receives: its own section, the run, the seed, the task, its declared sections, the teacher."""

    name: str
    config: Any
    run: "Run"
    seed: int
    task: Any = None
    sections: Mapping[str, Any] = field(default_factory=dict)
    recipe_name: str = ""
    route: Optional["TeacherRoute"] = None

    def section(self, name: str) -> Any:
        """A section this stage declared it reads (None when the recipe leaves it out)."""
        if name not in self.sections:
            raise KeyError(f"stage {self.name!r} reads section {name!r} without declaring it: add it to the "
                           "stage's `sections` in its family's registry")
        return self.sections[name]

    def require_task(self) -> Any:
        if self.task is None:
            raise UserError(f"stage {self.name!r} needs a 'task:' section in the recipe")
        return self.task

    @property
    def teacher(self) -> Any:
        """The recipe's teacher behind the run's ledger (prepared, when an earlier stage prepared it)."""
        if self.route is None:
            raise UserError(f"stage {self.name!r} needs a teacher: add a 'teacher:' section to the recipe")
        return self.route.ledgered()

    def teacher_weights(self, dtype: Optional[str] = None) -> tuple[Any, Any]:
        """The in-process teacher's ``(model, tokenizer)``, frozen: the route's model, not a second load."""
        if self.route is None:
            raise UserError(f"stage {self.name!r} needs the teacher's weights: add a 'teacher:' section")
        return self.route.weights(dtype, why=f"stage {self.name!r}")

    @property
    def teacher_model(self) -> Optional[str]:
        """The name the recipe gives the teacher model (students derived from it start there), or None."""
        return self.route.config.model if self.route is not None else None
