"""Reduced precision where the hardware does it fast: bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, and
int8 weights, on a CPU, for the models that answer a photo a few rows at a time.

``IMAGE2MOOD_PRECISION``: ``auto`` (bf16 where fast, else fp32; on a CPU, BLIP, CLAP's text tower and the
NLLB translator with int8 Linear weights), ``fp32``, ``bf16`` (bf16 everywhere) or ``int8`` (fp32, with int8
Linear weights for those and for CLAP's audio tower). The tests check that each keeps the models' outputs
within a stated cosine of fp32 (tests/test_perf_paths.py, tests/test_precision_int8.py), and that int8 keeps
each row's output independent of its batch (tests/test_int8_linear.py).

Why ``auto`` leaves CLAP's audio tower in bf16, not int8, on a CPU with AMX: measured on the full-size
HTSAT-tiny (bench/README.md, issue 26), 8 windows on one thread took 0.58 s of CPU in bf16, 1.40–1.55 s with
dynamic int8 Linear layers (the other operations fp32) and 1.9 s in fp32. Matrix products are only a quarter
of the bf16 tower's time; the rest is copies, softmax, adds and GELU, which int8 does not touch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "int8"]
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
_TINY = torch.finfo(torch.float32).tiny
_FEW_ROWS = 64  # below, |x|'s row maximum in fewer calls; above, in fewer passes over memory (the same values)
# [-1, 1] as fbgemm's dynamic product quantises it (7-bit activations, reduce_range): 127 steps, zero at 64
_ROW_SCALE, _ROW_ZERO_POINT = 2 / 127, 64


@cache
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (torch's own capability, else Linux's cpuinfo flags)."""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    if "AMX" in capability or "BF16" in capability:
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def uses_bf16(precision: Precision, device: torch.device) -> bool:
    """Whether a model on ``device`` runs in bf16 under this setting."""
    if precision == "auto":
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16())
    return precision == "bf16"


def uses_int8_weights(precision: Precision, device: torch.device) -> bool:
    """Whether BLIP (vision tower and decoder), CLAP's text tower and the NLLB translator run their Linear layers
    with int8 weights (:class:`Int8Linear`: CPU only). They see one photo's few hundred rows, or a token's
    one, at a time, where int8's matrix products outrun bf16's: BLIP's vision tower 1.2–1.3× bf16's speed for
    one photo or eight, CLAP's text tower 1.3–1.4× for one caption, BLIP's decoder twice (bench/README.md)."""
    return device.type == "cpu" and precision in ("auto", "int8")


def uses_int8_audio(precision: Precision, device: torch.device) -> bool:
    """Whether CLAP's audio tower runs its Linear layers with int8 weights: under ``int8`` on a CPU only (1.3×
    fp32's speed where the CPU lacks fast bf16; bf16, where it has it, is 2.5× faster still)."""
    return device.type == "cpu" and precision == "int8"


class Int8Linear(torch.nn.Module):
    """A ``Linear`` layer with int8 weights (per output channel) whose activations are quantised row by row, so
    a row's output never depends on the rows that share its batch: a photo's caption and vectors are the same
    alone or beside others. fbgemm's dynamic int8 product quantises its whole input with one scale; here each
    row is first divided by its own largest magnitude, quantised at the one fixed scale of [-1, 1] (fbgemm's
    7-bit activations), and multiplied back afterwards. Where the engine has no fixed-scale product (fbgemm
    has; qnnpack, on ARM, has not), two anchor rows (+1 and -1) make the dynamic product choose that scale:
    the same outputs, bit for bit, at 10-35 µs more a call (bench/README.md, ninth round).

    ``per_sample``: for inputs (samples, tokens, features) whose samples always have the same tokens (BLIP's
    vision tower: a photo's patches), one scale per sample instead, one product per sample: what the sample
    gets alone, without the row scaling's passes over memory."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, per_sample: bool = False) -> None:
        """``weight``: qint8, quantised per output channel (:meth:`from_linear`)."""
        super().__init__()
        self.per_sample = per_sample
        self._packed = torch.ops.quantized.linear_prepack(weight, bias if per_sample else None)
        self.out_features, self.in_features = weight.shape
        self.register_buffer("bias", bias)
        anchors = torch.zeros(2, self.in_features)
        anchors[0, 0], anchors[1, 0] = 1.0, -1.0
        self.register_buffer("_anchors", anchors)
        self.fixed_scale = not per_sample and _engine_has_fixed_scale_product(torch.backends.quantized.engine)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, per_sample: bool = False) -> Int8Linear:
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(1) / 127).clamp_min(_TINY).double()
        with warnings.catch_warnings():  # torch marks its quantised tensors as deprecated; fbgemm still runs them
            warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
            quantised = torch.quantize_per_channel(weight, scales, torch.zeros_like(scales, dtype=torch.long), 0,
                                                   torch.qint8)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(linear.out_features)
        return cls(quantised, bias, per_sample)

    @classmethod
    def stacked(cls, layers: Sequence[Int8Linear]) -> Int8Linear:
        """One layer whose output is ``layers``' outputs side by side, each exactly as that layer gives it (the
        weights keep their channels' scales, the rows scale alike): one call instead of several."""
        weights = [torch.ops.quantized.linear_unpack(layer._packed)[0] for layer in layers]
        joined = torch._make_per_channel_quantized_tensor(
            torch.cat([weight.int_repr() for weight in weights]),
            torch.cat([weight.q_per_channel_scales() for weight in weights]),
            torch.cat([weight.q_per_channel_zero_points() for weight in weights]), 0)
        return cls(joined, torch.cat([layer.bias for layer in layers]), layers[0].per_sample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_sample:
            samples = x.reshape(-1, *x.shape[-2:])
            products = [torch.ops.quantized.linear_dynamic(sample, self._packed, True) for sample in samples]
            joined = products[0] if len(products) == 1 else torch.stack(products)  # one photo: no copy
            return joined.view(*x.shape[:-1], self.out_features)
        rows = x.reshape(-1, self.in_features)
        peak = (rows.abs().amax(1, keepdim=True) if rows.shape[0] <= _FEW_ROWS
                else torch.maximum(rows.amax(1, keepdim=True), rows.amin(1, keepdim=True).neg_()))
        scaled = rows / peak.clamp_min_(_TINY)
        if self.fixed_scale:
            product = _fixed_scale_product(scaled, self._packed)
        else:
            product = torch.ops.quantized.linear_dynamic(torch.cat((scaled, self._anchors)), self._packed, True)[:-2]
        return torch.addcmul(self.bias, product, peak).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _fixed_scale_product(scaled: torch.Tensor, packed: torch.ScriptObject) -> torch.Tensor:
    """``scaled`` (rows within [-1, 1]) times the packed int8 weights, the rows quantised at [-1, 1]'s scale."""
    return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(scaled, _ROW_SCALE, _ROW_ZERO_POINT,
                                                                             packed)


@cache
def _engine_has_fixed_scale_product(engine: str) -> bool:
    """Whether this torch multiplies weights packed by the quantised ``engine`` (the one in use, which packs
    every layer built meanwhile) at a given input scale: tried once per engine, on a 1 × 1 layer."""
    weight = torch.quantize_per_tensor(torch.ones(1, 1), 1.0, 0, torch.qint8)
    try:
        _fixed_scale_product(torch.zeros(1, 1), torch.ops.quantized.linear_prepack(weight, None))
    except (AttributeError, RuntimeError, NotImplementedError):  # no such operator, or not for this engine
        return False
    return True


def int8_linears(module: torch.nn.Module, per_sample: bool = False) -> torch.nn.Module:
    """``module``, in place and in fp32, with every ``Linear`` layer an :class:`Int8Linear` (each fp32 weight
    freed as its layer converts)."""
    module.float()
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if type(child) is torch.nn.Linear:  # not subclasses: MultiheadAttention reads its out_proj's weight
                setattr(parent, name, Int8Linear.from_linear(child, per_sample))
    return module


def stacked_linears(layers: Sequence[torch.nn.Module]) -> torch.nn.Module:
    """One layer for several ``Linear`` or :class:`Int8Linear` layers that read the same input: their outputs
    side by side, in one call (its weights take no gradient)."""
    if all(isinstance(layer, Int8Linear) for layer in layers):
        return Int8Linear.stacked(layers)
    first = layers[0]
    joined = torch.nn.Linear(first.in_features, sum(layer.out_features for layer in layers),
                             bias=first.bias is not None, device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        joined.weight.copy_(torch.cat([layer.weight for layer in layers]))
        if joined.bias is not None:
            joined.bias.copy_(torch.cat([layer.bias for layer in layers]))
    return joined.requires_grad_(False)
