"""CLAP's audio tower through transformers' ``ClapModel`` vs ours (image2mood/models/htsat.py): wall seconds
for 8 windows (p50 of several rounds, alternating), and each window vector's cosine to transformers' in fp32,
on the full-size random HTSAT-tiny; both take the same log-mel.

Run by hand (never in CI): ``.venv/bin/python bench/clap_tower.py [--models DIR] [--rounds N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from query import full_models

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers import torchvision)

import numpy as np
import torch
from transformers import ClapModel

from image2mood.models.clap import ClapEncoder, laion_quantise
from image2mood.models.resolve import ResolvedModel
from image2mood.vectors import l2_normalise


class TransformersTower:
    """transformers' ``ClapModel`` audio tower in ``dtype``, on ``encoder``'s log-mel."""

    def __init__(self, encoder: ClapEncoder, dtype: torch.dtype) -> None:
        self.encoder, self.dtype = encoder, dtype
        self.model = ClapModel.from_pretrained(encoder.resolved.folder).eval()
        self.model.audio_model.to(dtype)
        self.model.audio_projection.to(dtype)

    @torch.inference_mode()
    def encode_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        features = self.encoder.log_mel([laion_quantise(w) for w in windows]).to(self.dtype)
        longer = torch.zeros((len(windows), 1), dtype=torch.bool)
        out = self.model.get_audio_features(input_features=features, is_longer=longer).pooler_output
        return l2_normalise(out.float().numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(args.threads)
    folder = full_models(args.models) / "clap"
    resolved = ResolvedModel("clap", str(folder), folder)
    ours = {precision: ClapEncoder(resolved, precision=precision) for precision in ("bf16", "fp32")}
    encoders = {"bf16 transformers": TransformersTower(ours["bf16"], torch.bfloat16), "bf16 ours": ours["bf16"],
                "fp32 transformers": TransformersTower(ours["fp32"], torch.float32), "fp32 ours": ours["fp32"]}
    rng, t = np.random.default_rng(0), np.arange(encoders["bf16 ours"].window_samples) / 48_000
    windows = [(0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
               for i in range(8)]
    vectors = {name: encoder.encode_windows(windows) for name, encoder in encoders.items()}  # also warms up
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(args.rounds):  # round-robin: a busy moment hits all alike
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode_windows(windows)
            seconds[name].append(time.perf_counter() - started)
    print(f"8 windows, {args.threads} threads, wall s p50 of {args.rounds}; load {os.getloadavg()}")
    reference = vectors["fp32 transformers"]
    for name in encoders:
        p50, base = statistics.median(seconds[name]), statistics.median(seconds[name.split()[0] + " transformers"])
        cosine = float(np.sum(reference * vectors[name], axis=1).min())
        print(f"  {name:<18} {p50:6.3f} s  {base / p50:4.2f}x  min cosine to fp32 {cosine:.6f}")


if __name__ == "__main__":
    main()
