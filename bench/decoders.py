"""Decoders, measured: soundfile + Debian's ffmpeg (what image2mood uses) against PyAV (FFmpeg's libraries
in a PyPI wheel), on the indexer's real job: the six evenly spread 10-s windows of a 4-minute song.

Run by hand (needs ``pip install av``, which the project does not depend on):
``.venv/bin/python bench/decoders.py [--repeat 5]``.

Each format (MP3, Ogg Vorbis, M4A/AAC, FLAC) is made once from the same synthesised song
(``bench/index.py``'s) with Debian's ffmpeg. The PyAV path seeks to each window (less the same 0.2-s
margin) and decodes frames until the window's end, then downmixes and resamples with soxr exactly as
:mod:`image2mood.audio` does, so both sides do the same work after decoding; the printed cosine says how
alike their windows are. Times are the median over ``--repeat`` runs, per song, in this process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.index import synth_song  # noqa: E402
from image2mood.audio import decode_windows, window_starts  # noqa: E402

RATE, WINDOW_S, WINDOWS, MARGIN_S = 48000, 10.0, 6, 0.2
FORMATS = {"mp3": ["-c:a", "libmp3lame", "-b:a", "192k"], "ogg": ["-c:a", "libvorbis", "-q:a", "5"],
           "m4a": ["-c:a", "aac", "-b:a", "192k"], "flac": ["-c:a", "flac"]}


def pyav_windows(path: Path) -> list[np.ndarray]:
    """The same windows as decode_windows, decoded by PyAV: seek, decode to the window's end, downmix, resample."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        native = stream.rate
        total = int(float(stream.duration * stream.time_base) * native)
        window = int(WINDOW_S * native)
        margin = int(MARGIN_S * native)
        out = []
        for start in window_starts(total, window, WINDOWS):
            begin, end = max(start - margin, 0), min(start + window + margin, total)
            container.seek(int(begin / native / stream.time_base), stream=stream, backward=True, any_frame=False)
            pieces, first = [], None
            for frame in container.decode(stream):
                at = int(frame.pts * stream.time_base * native)
                samples = _mono(frame)
                if first is None:
                    first = at
                pieces.append(samples)
                if at + len(samples) >= end:
                    break
            if first > begin:
                raise RuntimeError(f"PyAV's seek in {path.name} landed after the window's start")
            block = np.concatenate(pieces)[begin - first: end - first]
            resampled = soxr.resample(block, native, RATE, quality="HQ")
            cut = int(round((start - begin) * RATE / native))
            out.append(resampled[cut: cut + int(WINDOW_S * RATE)])
    return out


def _mono(frame) -> np.ndarray:
    """A frame's samples as float32 mono (the channels' mean), from planar or packed, float or integer."""
    samples = frame.to_ndarray()
    channels = len(frame.layout.channels)
    samples = samples if frame.format.is_planar else samples.reshape(-1, channels).T
    if samples.dtype.kind == "i":
        samples = samples.astype(np.float32) / np.iinfo(samples.dtype).max
    return samples.mean(axis=0, dtype=np.float32)


def median_seconds(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import av

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.mp3"
        synth_song(source, seed=1)
        print(f"load average {os.getloadavg()[0]:.2f}; PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})")
        print(f"{'format':6} {'soundfile+ffmpeg':>17} {'PyAV':>8} {'PyAV/ours':>10} {'min cosine':>11}")
        for name, codec in FORMATS.items():
            song = Path(tmp) / f"song.{name}"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *codec, str(song)], check=True)
            ours = decode_windows(song, sample_rate=RATE, window_seconds=WINDOW_S, max_windows=WINDOWS).windows
            theirs = pyav_windows(song)
            cosine = min(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
                         for a, b in zip(ours, theirs))
            t_ours = median_seconds(lambda: decode_windows(song, sample_rate=RATE, window_seconds=WINDOW_S,
                                                           max_windows=WINDOWS), args.repeat)
            t_av = median_seconds(lambda: pyav_windows(song), args.repeat)
            print(f"{name:6} {t_ours * 1000:15.0f} ms {t_av * 1000:5.0f} ms {t_av / t_ours:9.2f}x {cosine:11.4f}")


if __name__ == "__main__":
    main()
