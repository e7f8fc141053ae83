"""HTSAT's window attention: one ``scaled_dot_product_attention`` call over all the windows against
image2mood's chunked one (``image2mood.models.swin._attend``), on each stage's shapes for 8 CLAP windows of
the full-size HTSAT-tiny, in bf16 on one thread: ms a call (p50 of the rounds, the two alternating) and the
largest difference from an fp32 reference.

Run by hand (never in CI): ``.venv/bin/python bench/attention.py [--rounds N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from image2mood.models.swin import _attend

# Per stage of HTSAT-tiny for 8 windows (a 64×64 token grid, 8×8-token windows, head size 24):
# (name, windows a sample, heads, whether a block of it is shifted)
STAGES = [("stage 1", 64, 4, True), ("stage 2", 16, 8, True), ("stage 3", 4, 16, True), ("stage 4", 1, 32, False)]
SAMPLES, TOKENS, SIZE = 8, 64, 24


def _ms(work: Callable[[], torch.Tensor], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{SAMPLES} windows' attention, bf16, {args.threads} thread(s), ms a call (p50 of {args.rounds})")
    print(f"  {'':<8} {'one SDPA call':>14} {'chunked':>9}  gain  max |diff| to fp32 (SDPA, chunked)")
    for name, windows, heads, shifted in STAGES:
        rows = SAMPLES * windows
        stacked = torch.randn(rows, TOKENS, 3, heads, SIZE, dtype=torch.bfloat16)
        query, key, value = stacked.permute(2, 0, 3, 1, 4).unbind(0)  # strided views, as in a block
        mask = torch.randn(windows if shifted else 1, heads, TOKENS, TOKENS, dtype=torch.bfloat16)
        whole = mask.repeat(SAMPLES, 1, 1, 1) if shifted else mask  # SDPA needs every window's mask
        scale = SIZE ** -0.5

        def sdpa() -> torch.Tensor:
            return F.scaled_dot_product_attention(query, key, value, attn_mask=whole).transpose(1, 2)

        def chunked() -> torch.Tensor:
            return _attend(query, key, value, mask, scale, windows)

        reference = F.scaled_dot_product_attention(query.float(), key.float(), value.float(),
                                                   attn_mask=whole.float()).transpose(1, 2)
        errors = [float((work().float() - reference).abs().max()) for work in (sdpa, chunked)]
        times: dict[str, list[float]] = {"sdpa": [], "chunked": []}
        for _ in range(2):  # warm-up
            sdpa(), chunked()
        for _ in range(args.rounds):  # alternating: a busy moment hits both
            times["sdpa"] += _ms(sdpa, 1)
            times["chunked"] += _ms(chunked, 1)
        old, new = statistics.median(times["sdpa"]), statistics.median(times["chunked"])
        print(f"  {name:<8} {old:14.2f} {new:9.2f}  {old / new:4.2f}x  {errors[0]:.4f}, {errors[1]:.4f}")


if __name__ == "__main__":
    main()
