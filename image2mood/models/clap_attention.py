"""HTSAT's Swin window attention through ``scaled_dot_product_attention``.

transformers' ``ClapAudioSelfAttention`` builds the scores itself (matmul, scale, relative position bias,
shift mask, softmax, matmul): five passes over ``[windows, heads, 64, 64]``. Here one SDPA call does them,
the relative position bias (and a shifted block's mask) as its additive float ``attn_mask``, and the bias is
gathered once per module, in the module's dtype, not on every call.
"""

from __future__ import annotations

import types

import torch
from torch.nn import functional as F
from transformers.models.clap.modeling_clap import ClapAudioSelfAttention


def position_bias(module: ClapAudioSelfAttention) -> torch.Tensor:
    """The module's relative position bias, ``[heads, tokens, tokens]`` (it depends only on the window)."""
    tokens = module.window_size[0] * module.window_size[1]
    table = module.relative_position_bias_table.detach()
    bias = table[module.relative_position_index.view(-1)].view(tokens, tokens, -1)
    return bias.permute(2, 0, 1).contiguous()


def _mask(self: ClapAudioSelfAttention, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Bias plus shift mask, ``[1, per_image × heads, tokens, tokens]``; kept while the shift mask repeats."""
    if attention_mask is None:
        return self._image2mood_bias.unsqueeze(0)
    cached = self._image2mood_mask
    if cached is not None and torch.equal(cached[0], attention_mask):
        return cached[1]
    per_image, tokens = attention_mask.shape[0], attention_mask.shape[1]
    mask = self._image2mood_bias.unsqueeze(0) + attention_mask.unsqueeze(1).to(self._image2mood_bias.dtype)
    mask = mask.view(1, -1, tokens, tokens)
    self._image2mood_mask = (attention_mask.clone(), mask)
    return mask


def sdpa_forward(self: ClapAudioSelfAttention, hidden_states: torch.Tensor,
                 attention_mask: torch.Tensor | None = None,
                 output_attentions: bool | None = False) -> tuple[torch.Tensor]:
    """``ClapAudioSelfAttention.forward`` through SDPA (no attention probabilities: none are asked for).

    The windows are ``images × per_image`` (the shift mask differs between an image's windows): the attention
    runs over ``[images, per_image × heads, tokens, size]``, so the mask broadcasts over the images.
    """
    if output_attentions:
        raise ValueError("the SDPA window attention returns no attention probabilities")
    windows, tokens, channels = hidden_states.shape
    heads, size = self.num_attention_heads, self.attention_head_size
    per_image = 1 if attention_mask is None else attention_mask.shape[0]
    images = windows // per_image
    split = (images, per_image, tokens, heads, size)
    if self._image2mood_qkv is None:  # int8 Linear layers: three calls
        query, key, value = (layer(hidden_states).view(split).transpose(2, 3).reshape(images, -1, tokens, size)
                             for layer in (self.query, self.key, self.value))
    else:  # one matrix product and one copy for all three
        qkv = F.linear(hidden_states, *self._image2mood_qkv).view(images, per_image, tokens, 3, heads, size)
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, images, -1, tokens, size).unbind(0)
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=_mask(self, attention_mask))
    context = context.view(images, per_image, heads, tokens, size).transpose(2, 3)
    return (context.reshape(windows, tokens, channels),)


def _fused_qkv(module: ClapAudioSelfAttention) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Query, key and value's weights (and biases) stacked for one ``F.linear``; ``None`` unless all are Linear."""
    layers = (module.query, module.key, module.value)
    if not all(type(layer) is torch.nn.Linear for layer in layers):
        return None
    weight = torch.cat([layer.weight.detach() for layer in layers])
    bias = None if module.query.bias is None else torch.cat([layer.bias.detach() for layer in layers])
    return weight, bias


def use_sdpa(model: torch.nn.Module) -> int:
    """Swap every ``ClapAudioSelfAttention`` in ``model`` to :func:`sdpa_forward`; returns how many.

    Call it after the model's last dtype or device change: the bias is gathered then, in that dtype.
    """
    swapped = 0
    for module in model.modules():
        if isinstance(module, ClapAudioSelfAttention):
            module._image2mood_bias = position_bias(module)
            module._image2mood_mask = None
            module._image2mood_qkv = _fused_qkv(module)
            module.forward = types.MethodType(sdpa_forward, module)
            swapped += 1
    return swapped
