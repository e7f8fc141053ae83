"""Reduced precision where the hardware does it fast: bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, and
int8 weights, on a CPU, for the models that answer a photo a few rows at a time.

``IMAGE2MOOD_PRECISION``: ``auto`` (bf16 where fast, else fp32; on a CPU, BLIP, CLAP's text tower and the
NLLB translator with int8 Linear weights), ``fp32``, ``bf16`` (bf16 everywhere) or ``int8`` (fp32, with int8
Linear weights for those and for CLAP's audio tower). The tests check that each keeps the models' outputs
within a stated cosine of fp32 (tests/test_perf_paths.py, tests/test_precision_int8.py).

Why ``auto`` leaves CLAP's audio tower in bf16, not int8, on a CPU with AMX: measured on the full-size
HTSAT-tiny (bench/README.md, issue 26), 8 windows on one thread took 0.58 s of CPU in bf16, 1.40–1.55 s with
dynamic int8 Linear layers (the other operations fp32) and 1.9 s in fp32. Matrix products are only a quarter
of the bf16 tower's time; the rest is copies, softmax, adds and GELU, which int8 does not touch.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "int8"]
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


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
    with int8 weights (dynamic quantisation: CPU only). They see one photo's few hundred rows, or a token's
    one, at a time, where int8's matrix products outrun bf16's: BLIP's vision tower 1.2–1.3× bf16's speed for
    one photo or eight, CLAP's text tower 1.3–1.4× for one caption, BLIP's decoder twice (bench/README.md)."""
    return device.type == "cpu" and precision in ("auto", "int8")


def uses_int8_audio(precision: Precision, device: torch.device) -> bool:
    """Whether CLAP's audio tower runs its Linear layers with int8 weights: under ``int8`` on a CPU only (1.3×
    fp32's speed where the CPU lacks fast bf16; bf16, where it has it, is 2.5× faster still)."""
    return device.type == "cpu" and precision == "int8"


def int8_linears(module: torch.nn.Module) -> torch.nn.Module:
    """``module``, in place, with every ``Linear`` layer dynamically quantised: int8 weights, activations
    quantised per call (in place: no second copy of the weights while it converts)."""
    with warnings.catch_warnings():  # torch marks its eager quantisation API as deprecated; it still works
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        return torch.ao.quantization.quantize_dynamic(module.float(), {torch.nn.Linear}, torch.qint8, inplace=True)
