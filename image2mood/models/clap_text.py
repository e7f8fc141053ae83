"""CLAP's text tower through transformers' ``ClapTextModelWithProjection``, read from the whole model's folder."""

from __future__ import annotations

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers import torchvision)

from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, ClapTextModelWithProjection

from image2mood.models.loading import checked_tokenizer, load_or_explain
from image2mood.models.precision import Precision, int8_linears, uses_bf16, uses_int8_weights
from image2mood.models.resolve import ResolvedModel
from image2mood.vectors import l2_normalise

TEXT_TOKENS = 77  # LAION-CLAP's training length for texts


class _TextHalf(ClapTextModelWithProjection):
    """The text half of a ``ClapModel`` checkpoint: its audio half and logit scales are left unread, unreported."""

    _keys_to_ignore_on_load_unexpected = [r"^audio_", r"^logit_scale"]


class TextTower:
    """Texts into CLAP's joint space: the tokenizer and the text tower with its projection."""

    def __init__(self, resolved: ResolvedModel, device: torch.device, precision: Precision) -> None:
        """On a CPU the tower's Linear layers take int8 weights (:func:`~image2mood.models.precision.uses_int8_weights`:
        one caption 28 → 20 ms against bf16), else bf16 where fast."""
        folder = resolved.folder
        with torch.inference_mode(False):  # plain weights, whatever mode the caller is in: converted in place below
            model = load_or_explain(resolved, lambda: _TextHalf.from_pretrained(folder)).eval().to(device)
            model.requires_grad_(False)
            if uses_int8_weights(precision, device):
                int8_linears(model)
            elif uses_bf16(precision, device):
                model.to(torch.bfloat16)
        self.model, self.device = model, device
        self.tokenizer = checked_tokenizer(
            resolved, load_or_explain(resolved, lambda: AutoTokenizer.from_pretrained(folder)), model.config.vocab_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised vector per text."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt",
                                max_length=min(TEXT_TOKENS, self.tokenizer.model_max_length))
        out = self.model(input_ids=tokens["input_ids"].to(self.device),
                         attention_mask=tokens["attention_mask"].to(self.device))
        return l2_normalise(out.text_embeds.float().cpu().numpy())
