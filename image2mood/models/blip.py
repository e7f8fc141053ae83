"""BLIP through transformers: a short greedy caption per photo.

Two settings trade a little fidelity for speed. ``image_size`` (``IMAGE2MOOD_CAPTION_IMAGE_SIZE``, default
224) is the side the photo is resized to, or the model's own where that is smaller: BLIP-base was trained
at 384, and its vision tower takes other sizes by interpolating its position embeddings; 224 px costs
about a third of the vision compute.
``precision`` (``IMAGE2MOOD_PRECISION``, :mod:`~image2mood.models.precision`): on a CPU, the linear layers of
the vision tower and the text decoder in int8 (dynamic quantisation), elsewhere bf16 where the hardware is
fast at it. Decoding reads every weight once a token, so fewer bytes a weight is the speed: int8 decoded
about twice as fast as bf16 and four times as fast as fp32 here (bf16 autocast, which casts fp32 weights at
every step, was slower than fp32); the vision tower ran 1.2–1.3× bf16's speed for one photo or eight.
Embeddings and norms stay fp32.

Decoding is :func:`greedy`, a lean loop over the decoder's own layers with its own key/value cache, not
transformers' ``generate``: the same operations in the same order, so the same tokens, without the
per-token Python of ``generate`` and the model's module tree (kwargs, masks of zeros, cache objects).
Full-size BLIP, 224 px, 20 tokens, 2 cores (bench/caption.py; 6 Dec 2026, load 0.6-1.0): the caption
took 406 ms p50 with ``generate``, 320 ms with the loop; a key/value cache allocated once and SDPA for both
attentions then took the 20 decoding steps from 287 to 274 ms (alternating, one process, load 1.1).
"""

from __future__ import annotations

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers and open_clip import torchvision)

from collections.abc import Sequence

import torch
from PIL import Image
from torch.nn import functional as F
from transformers import BlipForConditionalGeneration, BlipProcessor

from image2mood.captions import caption_language
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
        self.int8 = uses_int8_weights(precision, self.device)  # fp32 activations, int8 Linear weights
        self.bf16 = not self.int8 and uses_bf16(precision, self.device)
        self.dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.model = self.model.to(self.dtype)
        if self.int8:
            self.model.vision_model = int8_linears(self.model.vision_model)
            self.model.text_decoder = int8_linears(self.model.text_decoder)

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The vision tower's input for RGB images, at :attr:`image_size`."""
        size = {"height": self.image_size, "width": self.image_size}
        pixels = self.processor(images=list(images), size=size, return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """One caption per RGB image."""
        features = self.model.vision_model(pixel_values=self.pixels(images),
                                           interpolate_pos_encoding=self.interpolate)[0]
        ids = greedy(self.model.text_decoder, features, self.max_new_tokens)
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]


def greedy(decoder: torch.nn.Module, features: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy token ids (``[DEC]`` first) from BLIP's ``BlipTextLMHeadModel`` for the vision tower's
    ``features``: what ``generate(do_sample=False, num_beams=1)`` gives, rows that reached ``[SEP]`` padded.

    Each layer's keys and values go into a cache allocated once for ``max_new_tokens``; the attention over
    them, and over the image's (computed once), is one ``scaled_dot_product_attention`` call."""
    config = decoder.config
    embeddings, layers = decoder.bert.embeddings, decoder.bert.encoder.layer
    batch, device = features.shape[0], features.device
    cross = [(_heads(layer.crossattention.self.key(features), layer.crossattention.self),
              _heads(layer.crossattention.self.value(features), layer.crossattention.self)) for layer in layers]
    attention = layers[0].attention.self
    shape = (batch, attention.num_attention_heads, max_new_tokens, attention.attention_head_size)
    cache = [(features.new_empty(shape), features.new_empty(shape)) for _ in layers]
    ids = torch.full((batch, 1), config.bos_token_id, dtype=torch.long, device=device)
    out, done = [ids], torch.zeros(batch, dtype=torch.bool, device=device)
    for position in range(max_new_tokens):
        where = embeddings.position_ids[:, position:position + 1]
        hidden = embeddings.LayerNorm(embeddings.word_embeddings(ids) + embeddings.position_embeddings(where))
        for layer, (keys, values), image in zip(layers, cache, cross, strict=True):
            attention = layer.attention.self
            keys[:, :, position:position + 1] = _heads(attention.key(hidden), attention)
            values[:, :, position:position + 1] = _heads(attention.value(hidden), attention)
            seen = position + 1
            hidden = _attend(attention, layer.attention.output, hidden, keys[:, :, :seen], values[:, :, :seen])
            hidden = _attend(layer.crossattention.self, layer.crossattention.output, hidden, *image)
            inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(hidden))
            hidden = layer.output.LayerNorm(layer.output.dense(inner) + hidden)
        token = decoder.cls(hidden)[:, -1].argmax(-1)
        ids = torch.where(done, config.pad_token_id, token)[:, None]
        out.append(ids)
        done |= ids[:, 0] == config.sep_token_id
        if bool(done.all()):
            break
    return torch.cat(out, 1)


def _heads(x: torch.Tensor, attention: torch.nn.Module) -> torch.Tensor:
    """(batch, tokens, hidden) → (batch, heads, tokens, head size)."""
    return x.view(x.shape[0], -1, attention.num_attention_heads, attention.attention_head_size).transpose(1, 2)


def _attend(attention: torch.nn.Module, output: torch.nn.Module, hidden: torch.Tensor, keys: torch.Tensor,
            values: torch.Tensor) -> torch.Tensor:
    """One token's attention over ``keys``/``values`` and its output block, as ``BlipTextAttention`` computes
    it (with no mask: every key is visible to the newest token)."""
    query = _heads(attention.query(hidden), attention)
    context = F.scaled_dot_product_attention(query, keys, values).transpose(1, 2).reshape(hidden.shape[0], 1, -1)
    return output.LayerNorm(output.dense(context) + hidden)
