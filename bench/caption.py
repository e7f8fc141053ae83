"""The caption alone: full-size random BLIP (bench/full_models.py), one 1920×1080 photo at the service's
224 px and precision, p50 of ``--runs``; transformers' ``generate`` and :func:`image2mood.models.blip.greedy`
alternating in one process, with a check that both give the same tokens.

    .venv/bin/python bench/caption.py [--runs 10] [--models DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from image2mood.models.blip import Captioner
from image2mood.models.blip_rows import greedy
from image2mood.models.resolve import ResolvedModel
from query import full_models


def p50_ms(step: Callable[[], object], runs: int) -> float:
    """Median wall time of ``step`` in ms, after one warm-up call."""
    step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    args = parser.parse_args()
    folder = full_models(args.models) / "blip"
    blip = Captioner(ResolvedModel("blip", str(folder), folder))
    photo = Image.fromarray((np.random.default_rng(0).random((1080, 1920, 3)) * 255).astype(np.uint8))

    def features() -> torch.Tensor:
        return blip.model.vision_model(pixel_values=blip.pixels([photo]), interpolate_pos_encoding=blip.interpolate)[0]

    def generate() -> torch.Tensor:
        return blip.model.generate(pixel_values=blip.pixels([photo]), max_new_tokens=blip.max_new_tokens,
                                   do_sample=False, num_beams=1, interpolate_pos_encoding=blip.interpolate)

    def loop() -> torch.Tensor:
        return greedy(blip.model.text_decoder, features(), blip.max_new_tokens)

    assert torch.equal(generate(), loop()), "the loop's tokens differ from generate's"
    print(f"load {os.getloadavg()[0]:.2f}, {torch.get_num_threads()} threads, {blip.max_new_tokens} tokens, "
          f"{blip.image_size} px, bf16 {blip.bf16}, int8 vision tower and decoder {blip.int8}")
    for _ in range(2):
        print(f"generate {p50_ms(generate, args.runs):.0f} ms  loop {p50_ms(loop, args.runs):.0f} ms  "
              f"(vision tower and pixels {p50_ms(features, args.runs):.0f} ms)")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
