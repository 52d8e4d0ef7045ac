"""A tiny randomly initialised BERT classifier and a word-level tokenizer: a fast stand-in for MiniLM."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ["good", "bad", "fine", "awful", "movie", "plot", "actor", "the", "a", "was", "very", "quite", "story",
         "music", "scene", "ending", "cast", "film", "really", "not"]


def build_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT and its tokenizer into ``folder``; loadable by path like any HF model."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    import torch
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    # Seeded: an unseeded draw made two runs of the same pipeline look nondeterministic (different students).
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def separable_texts(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Texts whose class is whether they contain 'good' (1) or 'bad' (0), amid random filler words."""
    rng = random.Random(seed)
    filler = [w for w in WORDS if w not in ("good", "bad")]
    texts, labels = [], []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(filler, 5)
        words.insert(rng.randint(0, 5), "good" if label else "bad")
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels
