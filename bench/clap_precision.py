"""CLAP's audio tower in fp32, bf16 and int8 (``IMAGE2MOOD_PRECISION``): CPU seconds for 8 windows on one
thread, and each window vector's cosine to fp32, on the full-size random HTSAT-tiny and on a converted
LAION-CLAP music checkpoint look-alike (HTSAT-base, random weights in the released layout, converted as
tests/test_clap_convert.py does).

Run by hand (never in CI): ``.venv/bin/python bench/clap_precision.py [--models DIR] [--no-converted]``.

CPU seconds (``time.process_time``, one torch thread), not wall time: on a crowded machine they measure the
tower's own work. The floor of issue 26: every window vector within cosine 0.999 of fp32.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from query import full_models

from image2mood.models.clap import ClapEncoder
from image2mood.models.resolve import ResolvedModel

FLOOR = 0.999
ROOT = Path(__file__).resolve().parent.parent


def converted_checkpoint(work: Path) -> Path:
    """The tests' LAION-CLAP music look-alike (tests/fixtures' key list, random weights), converted."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_clap_convert import _laion_state, _save  # noqa: PLC0415  (the tests' own fixture builders)

    from image2mood.models.clap_convert import convert_laion_clap
    from image2mood.models.tiny import write_tiny_clap

    write_tiny_clap(work / "tokenizer")
    generator = torch.Generator().manual_seed(0)
    state = _laion_state(lambda shape, dtype: torch.randn(shape, generator=generator) * 0.05
                         if dtype.is_floating_point else torch.randint(0, 64, shape, generator=generator))
    state["audio_branch.bn0.running_var"].abs_().add_(0.5)
    checkpoint = _save(work / "music.pt", state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_laion_clap(checkpoint, work / "clap", audio_model="HTSAT-base", tokenizer_source=work / "tokenizer")


def compare(folder: Path, rounds: int = 3) -> None:
    resolved = ResolvedModel("clap", str(folder), folder)
    encoders = {name: ClapEncoder(resolved, precision=name) for name in ("fp32", "bf16", "int8")}
    rng, t = np.random.default_rng(0), np.arange(encoders["fp32"].window_samples) / 48_000
    windows = [(0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
               for i in range(8)]
    vectors = {name: encoder.encode_windows(windows) for name, encoder in encoders.items()}  # also warms up
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):  # round-robin, so a busy moment hits all three alike
        for name, encoder in encoders.items():
            started = time.process_time()
            encoder.encode_windows(windows)
            seconds[name].append(time.process_time() - started)
    print(f"{folder}: 8 windows, one thread, CPU seconds (min of {rounds}) and lowest window cosine to fp32")
    for name in encoders:
        cosine = float(np.sum(vectors["fp32"] * vectors[name], axis=1).min())
        print(f"  {name:<5} {min(seconds[name]):6.3f} s  {min(seconds['fp32']) / min(seconds[name]):4.2f}x fp32  "
              f"cosine {cosine:.5f}  {'ok' if cosine >= FLOOR else 'BELOW'} (floor {FLOOR})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    parser.add_argument("--no-converted", action="store_true", help="leave out the converted LAION-CLAP look-alike")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()}")
    compare(full_models(args.models) / "clap")
    if not args.no_converted:
        compare(converted_checkpoint(Path(tempfile.mkdtemp(prefix="bench-clap-precision-"))))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
