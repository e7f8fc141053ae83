"""BLIP fine-tuning: ``BlipForConditionalGeneration`` on image–caption pairs, caption cross-entropy
(the loop itself, on one process or several, is :mod:`training.blip_trainer`).

AdamW with gradient accumulation, bf16 autocast where the device supports it, the GPU when there is
one, ``freeze_vision`` to train the text decoder alone. The output folder is a complete captioner
(weights, config, processor), loadable as ``IMAGE2MOOD_BLIP_MODEL=DIR``; beside it
``training-state.pt`` holds the step and the optimiser state, so a resumed run continues from the
saved step. The data order is fixed by the seed and the epoch, so the step alone says where to resume.

BLIP's English WordPiece vocabulary maps most non-Latin words (Hangul among them) to ``[UNK]``:
:func:`token_coverage` measures that for a caption column, :func:`add_missing_tokens` adds the
missing words as tokens (the embeddings are resized to match).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from tokenizers import AddedToken

import image2mood.models._torchvision  # noqa: F401  (the torchvision guard, before transformers' BLIP imports it)
from transformers import BlipForConditionalGeneration, BlipProcessor  # noqa: E402

from training.blip_trainer import (STATE_FILE, BlipTrainer, BlipTrainingConfig, ResumeError,  # noqa: F401
                                   autocast_dtype)


@dataclass(frozen=True)
class Coverage:
    """How much of a caption column a tokenizer spells with known tokens."""

    tokens: int
    unknown: int
    missing_words: Counter

    @property
    def fraction(self) -> float:
        return 1 - self.unknown / self.tokens if self.tokens else 1.0

    def report(self, column: str) -> str:
        line = (f"tokenizer coverage of {column}: {self.fraction:.1%} of {self.tokens} tokens known "
                f"({self.unknown} [UNK])")
        if self.missing_words:
            common = ", ".join(word for word, _ in self.missing_words.most_common(8))
            line += f"; {len(self.missing_words)} words it cannot spell, e.g. {common}"
        return line


def token_coverage(tokenizer, captions: list[str]) -> Coverage:
    """Count the caption tokens that are ``[UNK]``, and the words behind them."""
    unk = tokenizer.unk_token_id
    ids = tokenizer(captions, add_special_tokens=False)["input_ids"]
    tokens, unknown = sum(map(len, ids)), sum(row.count(unk) for row in ids)
    words = Counter(word for caption in captions for word in caption.split())
    spelled = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    missing = Counter({word: words[word] for word, row in zip(words, spelled) if unk in row})
    return Coverage(tokens=tokens, unknown=unknown, missing_words=missing)


def add_missing_tokens(tokenizer, model: BlipForConditionalGeneration, coverage: Coverage, limit: int) -> int:
    """Add the ``limit`` most frequent missing words as whole-word tokens and resize the model's
    embeddings (new rows start at the mean of the old ones); returns how many were added.

    The tokens match the caption text as written (not the tokenizer's normalised form: an uncased
    BERT normaliser decomposes Hangul into jamo), so they decode back to the same characters."""
    words = [word for word, _ in coverage.missing_words.most_common(limit)]
    added = tokenizer.add_tokens([AddedToken(word, single_word=True, normalized=False) for word in words])
    if added:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        model.config.text_config.vocab_size = len(tokenizer)
    return added


def set_image_size(model: BlipForConditionalGeneration, processor: BlipProcessor, size: int) -> None:
    """Make ``size`` the model's own image size: position embeddings interpolated once, config and
    processor updated, so training and later captioning both run at this size."""
    embeddings = model.vision_model.embeddings
    if size == embeddings.image_size:
        return
    if size % embeddings.patch_size:
        raise ValueError(f"--image-size must be a multiple of the patch size {embeddings.patch_size}")
    with torch.no_grad():
        dummy = torch.zeros(1, (size // embeddings.patch_size) ** 2 + 1, embeddings.embed_dim)
        positions = embeddings.interpolate_pos_encoding(dummy, size, size)
    embeddings.position_embedding = torch.nn.Parameter(positions.clone())
    embeddings.image_size = size
    embeddings.num_patches = positions.shape[1] - 1
    embeddings.num_positions = positions.shape[1]
    model.config.vision_config.image_size = size
    processor.image_processor.size = {"height": size, "width": size}
