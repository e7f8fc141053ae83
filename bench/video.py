"""A video to post, timed: a 15-s 1080×1920 story of a photo and a song's clip (image2mood.video.render),
with and without the slow zoom, against the naive ffmpeg command for the same video.

Run by hand: ``.venv/bin/python bench/video.py [--repeat 3]``. The song is ``bench/index.py``'s synthesised
4-minute MP3 (the clip starts at 60 s); the photo a 4032×3024 JPEG, read as the service reads it (longer side
1024). Times are wall-clock medians over ``--repeat`` runs, from the call to the MP4 on disk (composing the
frame, ffmpeg's start, decoding the clip, encoding). The naive command (run once each) is what one writes
first: ``-loop 1`` over a PNG of the photo, scale and pad in ffmpeg, libx264's default preset (medium), and
``zoompan`` for the zoom.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.index import synth_song  # noqa: E402
from image2mood.images import load_photo  # noqa: E402
from image2mood.video import FADE_S, FPS, Clip, render  # noqa: E402

CLIP = Clip(start=60.0, duration=15.0)
WIDTH, HEIGHT = 1080, 1920


def photo_jpeg() -> bytes:
    """A 12-MP phone-sized photo: smooth gradients and some texture."""
    h, w = 3024, 4032
    x, y = np.meshgrid(np.linspace(0, 1, w, dtype=np.float32), np.linspace(0, 1, h, dtype=np.float32))
    texture = np.random.default_rng(0).normal(0, 6, (h, w)).astype(np.float32)
    pixels = np.stack([200 * x + 30 + texture, 160 * y + 40 + texture, 120 * (1 - x) + 60 + texture], axis=-1)
    out = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def naive(photo_png: Path, song: Path, out: Path, zoom: bool) -> None:
    """The first command one writes for the same video."""
    fit = (f"scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=decrease,"
           f"pad={WIDTH}:{HEIGHT}:(ow-iw)/2:(oh-ih)/2")
    frames = round(CLIP.duration * FPS)
    motion = f",zoompan=z='min(zoom+0.0002,1.08)':d={frames}:s={WIDTH}x{HEIGHT}:fps={FPS}" if zoom else ""
    fades = f"fade=t=in:d={FADE_S},fade=t=out:st={CLIP.duration - FADE_S}:d={FADE_S}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-loop", "1", "-framerate", str(FPS), "-i", str(photo_png),
                    "-ss", str(CLIP.start), "-t", str(CLIP.duration), "-i", str(song),
                    "-vf", f"{fit}{motion},format=yuv420p,{fades}", "-c:v", "libx264", "-c:a", "aac",
                    "-t", str(CLIP.duration), "-movflags", "+faststart", str(out)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        song = folder / "song.mp3"
        synth_song(song, seed=1)
        photo = load_photo(photo_jpeg(), name="photo")
        photo.save(folder / "photo.png")
        for zoom in (False, True):
            out = folder / "story.mp4"
            times = [timed(lambda: render(photo, song, CLIP, out, fmt="story", zoom=zoom)) for _ in range(args.repeat)]
            size = out.stat().st_size / 1e6
            baseline = timed(lambda: naive(folder / "photo.png", song, folder / "naive.mp4", zoom))
            naive_size = (folder / "naive.mp4").stat().st_size / 1e6
            label = "zoom" if zoom else "still"
            print(f"story 1080x1920, 15 s, {label}: median {statistics.median(times):.2f} s "
                  f"(min {min(times):.2f}, max {max(times):.2f}), {size:.1f} MB; "
                  f"naive command: {baseline:.2f} s, {naive_size:.1f} MB ({baseline / statistics.median(times):.1f}x)")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
