"""The model lane's parts alone, a photo at a time and eight together: ms a photo for CLIP, BLIP's caption
(its vision tower, the join and 20 decoding steps) and CLAP's text tower, and the ratio of their sums: the most
eight concurrent clients can gain over one (`concurrency.py`) when the lane is never idle.

    .venv/bin/python bench/lane_parts.py [--runs 5] [--models DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from caption import p50_ms
from query import full_models, photo

from image2mood.config import Settings
from image2mood.images import load_configured_photo
from image2mood.models import factory


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    args = parser.parse_args()
    settings = Settings(_env_file=None, models=full_models(args.models), store=tempfile.mkdtemp())
    clip, captioner, clap = (factory.image_encoder(settings), factory.captioner(settings),
                             factory.clap_encoder(settings))
    photos = [load_configured_photo(photo(seed), "photo.jpg", settings) for seed in range(8)]
    print(f"load {os.getloadavg()[0]:.2f}, {torch.get_num_threads()} threads")
    totals = {}
    for count in (1, 8):
        batch, texts = photos[:count], [f"a photo of people by the sea at sunset, number {i}" for i in range(count)]

        def caption() -> None:
            rows, finished = captioner.rows(), {}
            rows.join(batch)
            while len(finished) < count:
                finished.update(rows.step())

        parts = {"CLIP": p50_ms(lambda: clip.encode_images(batch), args.runs),
                 "BLIP vision tower": p50_ms(lambda: captioner.features(batch), args.runs),
                 "caption (vision tower, join, steps)": p50_ms(caption, args.runs),
                 "CLAP text tower": p50_ms(lambda: clap.encode_text(texts), args.runs)}
        totals[count] = (parts["CLIP"] + parts["caption (vision tower, join, steps)"] + parts["CLAP text tower"]) / count
        print(f"{count} photo(s), ms a photo: " + ", ".join(f"{name} {ms / count:.1f}" for name, ms in parts.items())
              + f"; in all {totals[count]:.1f}")
    print(f"eight together against one at a time: {totals[1] / totals[8]:.2f}x; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
