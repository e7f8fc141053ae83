"""HTSAT's Swin stages (CLAP's audio tower, :mod:`image2mood.models.htsat`) run in fewer passes over memory than
transformers' ``ClapAudioLayer``, which rolls the tokens, cuts them into windows, attends, puts the windows back and
rolls back (six copies of the activations a block), builds its shift mask on every call and computes the attention
scores in five passes. Here:

- the tokens stay in the window order of the block at hand; the next block's order (its shift) is one gather
  from this one, and the stage's end one gather back to the image's order;
- the attention runs on query, key and value as strided views of the projection's output (no copy), with the
  relative position bias, plus a shifted block's mask, built once per stage and dtype; on a CPU a few samples'
  windows at a time, so that their scores stay in cache;
- query, key and value come from one matrix product; on a CPU (bf16 or fp32) the linear layers run through
  oneDNN with their bias, the GELU and the residual add inside the product, their weights reordered once for it
  (``torch.ops.mkldnn._linear_pointwise``, what ``torch.compile`` emits for them).

A stage is anything with ``side`` (its grid's), ``blocks`` (each with ``window_size``, ``shift_size`` and
transformers' attribute names) and a ``plans`` dict, which :func:`run_stage` fills at the first call of each
dtype and device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

_SHIFT_MASK = -100.0  # transformers' value between tokens of different regions of a shifted window
_CHUNK = 64  # windows a pass of the attention takes (whole samples): 64 × heads × 64² scores, 2–8 MB in bf16
_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def run_stage(stage: Any, x: torch.Tensor) -> torch.Tensor:
    """The stage's blocks on ``x`` ``[batch, tokens, channels]`` (the grid's tokens row by row), in that order again."""
    key = (x.dtype, x.device)
    if key not in stage.plans:
        with torch.inference_mode(False), torch.no_grad():  # plain tensors: usable outside inference mode too
            stage.plans[key] = _make_plan(stage, x.dtype, x.device, x.shape[0] * x.shape[1])
    plan = stage.plans[key]
    for block, order, mask, linears in zip(stage.blocks, plan.orders, plan.masks, plan.linears, strict=True):
        x = _block(block, x.index_select(1, order), mask, linears, plan.windows)
    return x.index_select(1, plan.back)


@dataclass(frozen=True)
class _Plan:
    """A stage's gathers and attention masks for one dtype and device."""

    windows: int  # windows a sample
    orders: tuple[torch.Tensor, ...]  # per block: gather from the previous order (the image's, first) into its own
    back: torch.Tensor  # gather from the last block's order into the image's
    masks: tuple[torch.Tensor, ...]  # per block: [1 (no shift) or windows, heads, tokens, tokens]
    linears: tuple[_Linears, ...]  # per block


class _Linear:
    """``layer(x)``, then the exact GELU if ``gelu``, then ``+ residual``: for a bf16 or fp32 ``nn.Linear`` on a CPU
    one oneDNN call, its weight reordered once for ``rows``-row inputs; else the separate steps."""

    def __init__(self, layer: nn.Module, rows: int, gelu: bool = False) -> None:
        self.layer, self.gelu = layer, gelu
        self.fused = (_ONEDNN and type(layer) is torch.nn.Linear and layer.weight.device.type == "cpu"
                      and layer.weight.dtype in (torch.bfloat16, torch.float32))
        if self.fused:
            self.weight = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), rows)
            self.bias = None if layer.bias is None else layer.bias.detach()

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if not self.fused:
            out = self.layer(x)
            if self.gelu:
                out = F.gelu(out)
            return out if residual is None else out + residual
        flat = x.reshape(-1, x.shape[-1])
        if residual is not None:
            out = torch.ops.mkldnn._linear_pointwise.binary(flat, residual.reshape(flat.shape[0], -1), self.weight,
                                                           self.bias, "add")
        elif self.gelu:
            out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, self.bias, "gelu", [], "none")
        else:
            out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], -1)


@dataclass(frozen=True)
class _Linears:
    """A block's linear layers, ready to call: query-key-value, attention output, MLP in and out."""

    qkv: _Linear
    output: _Linear
    inner: _Linear
    outer: _Linear


def _block(block: Any, x: torch.Tensor, mask: torch.Tensor, linears: _Linears, windows: int) -> torch.Tensor:
    """One Swin block on ``x`` ``[batch, tokens, channels]``, already in its window order."""
    attention = block.attention.self
    batch, length, channels = x.shape
    heads, size = attention.num_attention_heads, attention.attention_head_size
    tokens = length // windows
    stacked = linears.qkv(block.layernorm_before(x)).view(batch * windows, tokens, 3, heads, size)
    query, key, value = stacked.permute(2, 0, 3, 1, 4).unbind(0)  # [windows, heads, tokens, size] views
    context = _attend(query, key, value, mask, size ** -0.5, windows).view(batch, length, channels)
    x = linears.output(context, residual=x)
    return linears.outer(linears.inner(block.layernorm_after(x)), residual=x)


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, scale: float,
            windows: int) -> torch.Tensor:
    """``softmax(query keyᵀ · scale + mask) value`` for ``[samples × windows, heads, tokens, size]`` inputs and a
    sample's mask (``[1 or windows, heads, tokens, tokens]``), returned as ``[samples × windows, tokens, heads,
    size]``. On a CPU whole samples at a time, about ``_CHUNK`` windows, so that a chunk's scores stay in cache:
    1.6–1.7× faster than one ``scaled_dot_product_attention`` call over all the windows (bench/attention.py)."""
    out = query.new_empty(query.shape[0], query.shape[2], query.shape[1], query.shape[3])
    step = windows * max(1, _CHUNK // windows) if query.is_cpu else query.shape[0]
    for start in range(0, query.shape[0], step):
        end = start + step
        scores = torch.matmul(query[start:end], key[start:end].transpose(-1, -2)).mul_(scale)
        scores.view(-1, windows, *scores.shape[1:]).add_(mask)
        out[start:end] = torch.matmul(scores.softmax(-1), value[start:end]).transpose(1, 2)
    return out


def _make_plan(stage: Any, dtype: torch.dtype, device: torch.device, rows: int) -> _Plan:
    side = stage.side
    orders, masks, previous = [], [], None
    for block in stage.blocks:
        source = _window_order(side, block.window_size, block.shift_size).to(device)
        orders.append(source if previous is None else previous[source])
        previous = torch.empty_like(source)
        previous[source] = torch.arange(len(source), device=device)
        masks.append(_mask(block, side, dtype, device))
    windows = (side // stage.blocks[0].window_size) ** 2
    return _Plan(windows, tuple(orders), previous, tuple(masks), tuple(_linears(block, rows) for block in stage.blocks))


def _linears(block: Any, rows: int) -> _Linears:
    attention = block.attention.self
    layers = (attention.query, attention.key, attention.value)
    qkv = _stacked(*layers) if all(type(layer) is torch.nn.Linear for layer in layers) else _Concatenated(*layers)
    return _Linears(_Linear(qkv, rows), _Linear(block.attention.output.dense, rows),
                    _Linear(block.intermediate.dense, rows, gelu=True),
                    _Linear(block.output.dense, rows))


def _window_order(side: int, window: int, shift: int) -> torch.Tensor:
    """For each token in window order (window by window, row by row in each), its index in the ``side × side``
    grid after transformers' cyclic shift by ``-shift`` (``torch.roll``) and ``window_partition``."""
    place = (torch.arange(side) + shift) % side
    return (place.view(side // window, 1, window, 1) * side + place.view(1, side // window, 1, window)).reshape(-1)


def _relative_index(window: int) -> torch.Tensor:
    """transformers' ``relative_position_index``: for each pair of a window's tokens, their offset's row in the
    bias table, ``[tokens, tokens]``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return offsets[..., 0] * (2 * window - 1) + offsets[..., 1]


def _mask(block: Any, side: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The relative position bias, ``[1, heads, tokens, tokens]``, or with a shifted block's region mask added,
    ``[windows, heads, tokens, tokens]``."""
    window, shift = block.window_size, block.shift_size
    tokens = window * window
    table = block.attention.self.relative_position_bias_table.detach().cpu()
    bias = table[_relative_index(window).view(-1)].view(tokens, tokens, -1).permute(2, 0, 1)
    if not shift:
        return bias.to(dtype).unsqueeze(0).contiguous().to(device)
    # transformers' regions of the shifted grid: 0 before the last window, 1 in it up to the shift, 2 after
    place = torch.arange(side)
    regions = (place >= side - window).long() + (place >= side - shift).long()
    grid = regions.view(side // window, 1, window, 1) * 3 + regions.view(1, side // window, 1, window)
    region = grid.reshape(-1, tokens)
    apart = (region.unsqueeze(1) != region.unsqueeze(2)).float() * _SHIFT_MASK  # [windows, tokens, tokens]
    mask = bias.float().unsqueeze(0) + apart.unsqueeze(1)
    return mask.to(dtype).contiguous().to(device)


def _stacked(*layers: torch.nn.Linear) -> torch.nn.Linear:
    """Linear layers on the same input as one (a copy of their weights), outputs side by side."""
    first = layers[0]
    stacked = torch.nn.Linear(first.in_features, sum(layer.out_features for layer in layers),
                              bias=first.bias is not None, device=first.weight.device, dtype=first.weight.dtype)
    stacked.weight.copy_(torch.cat([layer.weight for layer in layers]))
    if stacked.bias is not None:
        stacked.bias.copy_(torch.cat([layer.bias for layer in layers]))
    return stacked.requires_grad_(False)


class _Concatenated(torch.nn.Module):
    """Layers on the same input (int8 ones, which cannot be stacked), outputs side by side."""

    def __init__(self, *layers: torch.nn.Module) -> None:
        super().__init__()
        self.parts = layers  # a plain tuple: not registered, the block owns them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([layer(x) for layer in self.parts], -1)
