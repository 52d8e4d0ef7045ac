"""LoRA adapters through peft: which layers get them, and wrapping a model so only they (and chosen heads) train."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from protege.core.errors import UserError
from protege.core.section import Section


class LoraConfig(Section):
    """Low-rank adapters instead of full fine-tuning: the base weights stay frozen."""

    r: int = Field(8, ge=1, description="Rank of each adapter.")
    alpha: float = Field(16.0, gt=0, description="Scaling numerator; the update is scaled by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: Optional[list[str]] = Field(
        None, description="Module names to adapt (e.g. [q_proj, v_proj]); None uses peft's default for the "
        "architecture.")
    last_layers: Optional[int] = Field(
        None, ge=1, description="Adapt only the last N decoder layers; the backward pass then stops there (with a "
        "third of the layers a step costs about half as much). All layers if unset.")
    modules_to_save: Optional[list[str]] = Field(
        None, description="Modules trained in full alongside the adapters (e.g. a new classification head). "
        "Classifiers get their head automatically.")


def _task_type(model: Any) -> str | None:
    # peft needs the task type to keep a new classification head trainable and to route generate().
    name = type(model).__name__
    if name.endswith("ForCausalLM"):
        return "CAUSAL_LM"
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if name.endswith("ForTokenClassification"):
        return "TOKEN_CLS"
    return None


def apply_lora(model: Any, config: LoraConfig) -> Any:
    """``model`` wrapped by peft with adapters; only adapter (and ``modules_to_save``) parameters require grad."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    layers = None
    if config.last_layers is not None:
        depth = model.config.num_hidden_layers
        layers = list(range(max(depth - config.last_layers, 0), depth))
    peft_config = PeftLoraConfig(
        r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=config.target_modules,
        modules_to_save=config.modules_to_save, layers_to_transform=layers, task_type=_task_type(model),
    )
    try:
        return get_peft_model(model, peft_config)
    except ValueError as err:
        raise UserError(f"LoRA could not be applied to {type(model).__name__}: {err}. Set lora.target_modules "
                         "to the names of its linear layers (print(model) lists them).") from err
