"""BLIP through transformers: a short greedy caption per photo.

Two settings trade a little fidelity for speed. ``image_size`` (``IMAGE2MOOD_CAPTION_IMAGE_SIZE``, default
224) is the side the photo is resized to, or the model's own where that is smaller: BLIP-base was trained
at 384, and its vision tower takes other sizes by interpolating its position embeddings; 224 px costs
about a third of the vision compute.
``precision`` (``IMAGE2MOOD_PRECISION``, :mod:`~image2mood.models.precision`) keeps the vision tower's weights
in bf16 where the hardware is fast at it, and on a CPU the text decoder's linear layers in int8 (dynamic
quantisation). Decoding reads every weight once a token, so fewer bytes a weight is the speed: int8
decoded about twice as fast as bf16 and four times as fast as fp32 here (bf16 autocast, which casts fp32
weights at every step, was slower than fp32). The decoder's embeddings and norms stay fp32.
"""

from __future__ import annotations

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers and open_clip import torchvision)

import warnings
from collections.abc import Sequence

import torch
from PIL import Image
from transformers import BlipForConditionalGeneration, BlipProcessor

from image2mood.captions import caption_language
from image2mood.models.loading import checked_tokenizer, load_or_explain
from image2mood.models.precision import Precision, uses_bf16, uses_int8_decoder
from image2mood.models.resolve import ResolvedModel


class Captioner:
    """``BlipForConditionalGeneration`` with its processor; greedy decoding, few tokens."""

    def __init__(self, resolved: ResolvedModel, device: str = "cpu", max_new_tokens: int = 20,
                 image_size: int | None = 224, precision: Precision = "auto") -> None:
        folder = resolved.folder
        self.name = resolved.spec
        self.device = torch.device(device)
        self.max_new_tokens = max_new_tokens
        self.language = caption_language(folder)  # an NLLB code: eng_Latn unless `train blip --caption-language`
        self.model = load_or_explain(
            resolved, lambda: BlipForConditionalGeneration.from_pretrained(folder)
        ).eval().to(self.device)
        self.processor = load_or_explain(resolved, lambda: BlipProcessor.from_pretrained(folder))
        checked_tokenizer(resolved, self.processor.tokenizer, self.model.config.text_config.vocab_size)
        native = int(self.model.config.vision_config.image_size)
        self.image_size = min(image_size, native) if image_size else native  # 0 or None: the model's own
        self.interpolate = self.image_size != native
        self.bf16 = uses_bf16(precision, self.device)
        self.dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.model = self.model.to(self.dtype)
        self.int8_decoder = uses_int8_decoder(precision, self.device)
        if self.int8_decoder:
            with warnings.catch_warnings():  # torch marks its eager quantisation API as deprecated; it still works
                warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
                self.model.text_decoder = torch.ao.quantization.quantize_dynamic(
                    self.model.text_decoder.float(), {torch.nn.Linear}, torch.qint8)
            if self.bf16:  # the decoder reads the image features in fp32
                self.model.vision_model.register_forward_hook(_features_in_fp32)

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The vision tower's input for RGB images, at :attr:`image_size`."""
        size = {"height": self.image_size, "width": self.image_size}
        pixels = self.processor(images=list(images), size=size, return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """One caption per RGB image."""
        ids = self.model.generate(
            pixel_values=self.pixels(images), max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
            interpolate_pos_encoding=self.interpolate,
        )
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]


def _features_in_fp32(module: torch.nn.Module, inputs: object, output: object) -> object:
    """A forward hook: the vision tower's (bf16) outputs as fp32, for the fp32/int8 text decoder."""
    output.last_hidden_state = output.last_hidden_state.float()  # type: ignore[attr-defined]
    output.pooler_output = output.pooler_output.float()  # type: ignore[attr-defined]
    return output
