"""BLIP through transformers: a short greedy caption per photo.

Two settings trade a little fidelity for speed. ``image_size`` (``IMAGE2MOOD_CAPTION_IMAGE_SIZE``, default
224) is the side the photo is resized to, or the model's own where that is smaller: BLIP-base was trained
at 384, and its vision tower takes other sizes by interpolating its position embeddings; 224 px costs
about a third of the vision compute.
``precision`` (``IMAGE2MOOD_PRECISION``, :mod:`~image2mood.models.precision`): on a CPU, the linear layers of
the vision tower and the text decoder in int8 (:class:`~image2mood.models.precision.Int8Linear`: a photo's
caption is the same alone or beside others), elsewhere bf16 where the hardware is fast at it. Decoding reads
every weight once a token, so fewer bytes a weight is the speed: int8 decoded about twice as fast as bf16 and
four times as fast as fp32 here (bf16 autocast, which casts fp32 weights at every step, was slower than fp32);
the vision tower ran 1.2–1.3× bf16's speed for one photo or eight.
Embeddings and norms stay fp32.

Decoding (:mod:`~image2mood.models.blip_rows`) is a lean greedy loop over the decoder's own layers with its
own key/value cache, not transformers' ``generate``: the same operations in the same order, so the same
tokens, without the per-token Python of ``generate`` and the model's module tree (kwargs, masks of zeros,
cache objects). Full-size BLIP, 224 px, 20 tokens, 2 cores (bench/caption.py; 6 Dec 2026, load 0.6-1.0): the
caption took 406 ms p50 with ``generate``, 320 ms with the loop; a key/value cache allocated once and SDPA for
both attentions then took the 20 decoding steps from 287 to 274 ms (alternating, one process, load 1.1). On
the service's model lane, photos join the captions under way at their next step (:class:`CaptionRows`).
"""

from __future__ import annotations

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers and open_clip import torchvision)

from collections.abc import Hashable, Sequence

import torch
from PIL import Image
from torch.nn import functional as F
from transformers import BlipForConditionalGeneration, BlipProcessor

from image2mood.captions import caption_language
from image2mood.models.blip_rows import Rows, greedy
from image2mood.models.loading import checked_tokenizer, load_or_explain
from image2mood.models.precision import Precision, int8_linears, uses_bf16, uses_int8_weights
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
        for layer in self.model.vision_model.encoder.layers:
            layer.self_attn = VisionAttention(layer.self_attn)
        self.int8 = uses_int8_weights(precision, self.device)  # fp32 activations, int8 Linear weights
        self.bf16 = not self.int8 and uses_bf16(precision, self.device)
        self.dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.model = self.model.to(self.dtype)
        if self.int8:
            self.model.vision_model = int8_linears(self.model.vision_model, per_sample=True)  # a photo: 197 patches
            self.model.text_decoder = int8_linears(self.model.text_decoder)

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The vision tower's input for RGB images, at :attr:`image_size`."""
        size = {"height": self.image_size, "width": self.image_size}
        pixels = self.processor(images=list(images), size=size, return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    def features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The vision tower's output for RGB images: what the decoder attends to."""
        return self.model.vision_model(pixel_values=self.pixels(images), interpolate_pos_encoding=self.interpolate)[0]

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """One caption per RGB image, decoded together."""
        return self.texts(greedy(self.model.text_decoder, self.features(images), self.max_new_tokens))

    def texts(self, ids: Sequence[Sequence[int]] | torch.Tensor) -> list[str]:
        """Captions from token ids."""
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def rows(self) -> CaptionRows:
        """Captions decoded with continuous batching, for the model lane (:meth:`ModelLane.join`)."""
        return CaptionRows(self)


class CaptionRows:
    """Photos' captions under way (:class:`~image2mood.models.lane.Rolling`): a photo joins at the next
    decoding step of the others (:mod:`~image2mood.models.blip_rows`)."""

    def __init__(self, captioner: Captioner) -> None:
        self._captioner = captioner
        self._rows = Rows(captioner.model.text_decoder, captioner.max_new_tokens)

    @torch.inference_mode()
    def join(self, images: list[Image.Image]) -> list[Hashable]:
        return self._rows.join(self._captioner.features(images))

    @torch.inference_mode()
    def step(self) -> dict[Hashable, str]:
        finished = self._rows.step()
        return dict(zip(finished, self._captioner.texts(list(finished.values())), strict=True))


class VisionAttention(torch.nn.Module):
    """The vision tower's self-attention (transformers' ``BlipAttention``, same weights) in one
    ``scaled_dot_product_attention`` call instead of its score matrix, softmax and copies: for eight photos
    at 224 px the tower took 39 ms a photo instead of 49, and for one the same 41 (full-size, int8, 2 cores)."""

    def __init__(self, eager: torch.nn.Module) -> None:
        super().__init__()
        self.qkv, self.projection = eager.qkv, eager.projection
        self.heads, self.scale = eager.num_heads, eager.scale

    def forward(self, hidden_states: torch.Tensor, **_: object) -> tuple[torch.Tensor, None]:
        batch, tokens, width = hidden_states.shape
        query, key, value = (self.qkv(hidden_states).reshape(batch, tokens, 3, self.heads, width // self.heads)
                             .permute(2, 0, 3, 1, 4))
        context = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        return self.projection(context.transpose(1, 2).reshape(batch, tokens, width)), None
