"""Reduced precision where the hardware does it fast: bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, and
int8 weights for BLIP's text decoder on a CPU.

``IMAGE2MOOD_PRECISION``: ``auto`` (bf16 where fast, else fp32; on a CPU, BLIP's decoder in int8), ``fp32``,
``bf16`` (bf16 everywhere) or ``int8`` (fp32, BLIP's decoder in int8). The tests check that each keeps the
models' outputs within a stated cosine of fp32 (tests/test_perf_paths.py).
"""

from __future__ import annotations

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


def uses_int8_decoder(precision: Precision, device: torch.device) -> bool:
    """Whether BLIP's text decoder runs with int8 weights (dynamic quantisation: CPU only)."""
    return device.type == "cpu" and precision in ("auto", "int8")
