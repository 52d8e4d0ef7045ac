"""A tiny random BERT encoder and a word-piece tokenizer that splits words into sub-words (for MiniLM)."""

from __future__ import annotations

from pathlib import Path

WORDS = ["the", "a", "is", "was", "but", "and", "great", "slow", "bad", "fine", "screen", "battery", "life",
         "keyboard", "hard", "drive", "fan", "glass", "price", "lap", "##top", "track", "##pad", "##s", "##'",
         "it", "too", "noisy", "good"]
PUNCT = [",", ".", "!", "(", ")", "'", "-", "?"]


def build_tiny_tagger_base(folder: Path, hidden: int = 32) -> Path:
    """Save a 2-layer BERT (no head) and a fast word-piece tokenizer into ``folder``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *PUNCT]
    core = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    torch.manual_seed(0)  # the same random encoder in every run, so a run of the same code gives the same student
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
