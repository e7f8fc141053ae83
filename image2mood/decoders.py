"""The two decoders behind :func:`image2mood.audio.decode_windows`, each reading mono float32 samples of
chosen ranges of a file at its native rate:

* **libsndfile** (soundfile) for what it reads: WAV, AIFF, FLAC, Ogg Vorbis/Opus, MP3: seek + read.
* **ffmpeg** for the rest (M4A/AAC/ALAC, WMA, WavPack, APE, Matroska): ffprobe gives the sample rate
  and length, then *one* ffmpeg process decodes every range, each from its own input-seeked copy of
  the file (``-ss START -t LEN -i FILE``), trimmed/padded to the exact length and concatenated on
  stdout. One process per file, not per range: start-up costs about 0.1 s a process, while a full
  decode (the streaming alternative) would cost 0.6 s for a 4-minute song and minutes for a long one.

Both downmix to the mean of the channels. :func:`open_source` picks one per file by content, not by suffix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

from image2mood.errors import AudioDecodeError
from image2mood.files import open_regular

FFMPEG_TIMEOUT_S = 120.0
"""Longest an ffprobe/ffmpeg call may run before the file is reported as undecodable."""

_INSTALL_FFMPEG = "install ffmpeg: bash scripts/setup.sh"
_READ_BUDGET = 1 << 22  # samples (all channels) read from libsndfile at a time: 16 MB however many channels


class Source(Protocol):
    rate: int  # native sample rate
    frames: int  # native length in samples

    def read(self, ranges: list[tuple[int, int]]) -> list[np.ndarray]:
        """Mono float32 native-rate samples for each (first, count); shorter where the audio ends early."""
        ...


@contextmanager
def open_source(path: Path, notes: list[str]) -> Iterator[Source]:
    """libsndfile when it reads the file and finds audio in it, ffmpeg otherwise.

    libsndfile gets a descriptor, not the name: it cannot open names that are not valid UTF-8.
    """
    fd = open_regular(path)
    try:
        try:
            f: sf.SoundFile | None = sf.SoundFile(fd, closefd=False)
        except sf.SoundFileError:
            f = None
        if f is None:
            yield FfmpegSource(path, notes)
            return
        with f:
            yield SoundFileSource(path, f) if f.frames > 0 else FfmpegSource(path, notes)
    finally:
        os.close(fd)


class SoundFileSource:
    def __init__(self, path: Path, f: sf.SoundFile) -> None:
        self.path, self.f = path, f
        self.rate, self.frames = f.samplerate, f.frames
        self._block = max(1, _READ_BUDGET // f.channels)  # frames per read: bounded memory at any channel count

    def read(self, ranges: list[tuple[int, int]]) -> list[np.ndarray]:
        try:
            chunks = []
            for first, count in ranges:
                self.f.seek(first)
                chunks.append(self._mono(count))
            return chunks
        except sf.SoundFileError as e:
            raise AudioDecodeError(f"cannot decode {self.path}: the audio data is corrupt ({e})") from e

    def _mono(self, count: int) -> np.ndarray:
        """Up to ``count`` frames from the current position, downmixed, read a block at a time."""
        parts = []
        while count > 0:
            want = min(count, self._block)
            block = self.f.read(want, dtype="float32", always_2d=True)
            parts.append(_downmix(block))
            if len(block) < want:
                break
            count -= want
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class FfmpegSource:
    """ffprobe for rate and length, then one ffmpeg process for all ranges (see the module docstring)."""

    def __init__(self, path: Path, notes: list[str]) -> None:
        self.path, self.url, self.notes = path, f"file:{path}", notes  # file: keeps ':' or a leading '-' literal
        query = ["-select_streams", "a:0", "-show_entries", "format=duration:stream=sample_rate,duration"]
        probe = json.loads(self._run("ffprobe", "-v", "error", *query, "-of", "json", self.url))
        if not probe.get("streams"):
            raise AudioDecodeError(f"no audio in {path}: it holds no audio stream")
        stream = probe["streams"][0]
        try:
            self.rate = int(stream["sample_rate"])
            self.frames = round(float(probe.get("format", {}).get("duration") or stream["duration"]) * self.rate)
        except (KeyError, TypeError, ValueError, OverflowError):
            self.rate = self.frames = 0
        if self.rate <= 0 or self.frames < 0:
            raise AudioDecodeError(f"cannot decode {path}: ffmpeg cannot tell its sample rate and length")

    def read(self, ranges: list[tuple[int, int]]) -> list[np.ndarray]:
        inputs: list[str] = []
        graph = ""
        for i, (first, count) in enumerate(ranges):
            seconds = count / self.rate + 0.1  # atrim cuts exactly; apad fills where the audio ends early
            inputs += ["-ss", f"{first / self.rate:.6f}", "-t", f"{seconds:.6f}", "-i", self.url]
            graph += (
                f"[{i}:a:0]aresample=rematrix_maxval=1,"  # downmix to the channels' mean (as libsndfile's path)
                f"aformat=sample_fmts=flt:sample_rates={self.rate}:channel_layouts=mono,"
                f"atrim=end_sample={count},apad=whole_len={count}[w{i}];"
            )
        graph += "".join(f"[w{i}]" for i in range(len(ranges))) + f"concat=n={len(ranges)}:v=0:a=1[out]"
        out = self._run(
            "ffmpeg", "-nostdin", "-v", "error", *inputs, "-filter_complex", graph, "-map", "[out]", "-f", "f32le", "-"
        )
        samples = np.frombuffer(out, dtype="<f4").astype(np.float32)
        counts = [count for _, count in ranges]
        if len(samples) != sum(counts):
            raise AudioDecodeError(f"cannot decode {self.path}: ffmpeg stopped early; it is truncated or corrupt")
        return np.split(samples, np.cumsum(counts)[:-1])

    def _run(self, tool: str, *args: str) -> bytes:
        missing = f"cannot decode {self.path}: its format needs {tool}, which is missing; {_INSTALL_FFMPEG}"
        exe = shutil.which(tool)
        if exe is None:
            raise AudioDecodeError(missing)
        try:
            done = subprocess.run([exe, *args], capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise AudioDecodeError(
                f"cannot decode {self.path}: {tool} took over {FFMPEG_TIMEOUT_S:.0f} s; the file may be damaged"
            ) from None
        except OSError as e:
            raise AudioDecodeError(f"{missing} ({e})") from e
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            reason = lines[-1].removeprefix(f"{self.url}: ") if lines else f"exit status {done.returncode}"
            raise AudioDecodeError(f"cannot decode {self.path}: not audio that ffmpeg reads, or corrupt ({reason})")
        self.notes.extend(line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip())
        return done.stdout


def _downmix(block: np.ndarray) -> np.ndarray:
    """The mean of the channels of a ``[frames, channels]`` block, bit for bit ``block.mean(axis=1)`` in
    float32, but a column at a time: numpy's reduction over a short inner axis took 0.17 s for the
    4 minutes of stereo that ``--windows all`` reads, this takes 0.02 s."""
    mono = block[:, 0].copy()
    for channel in range(1, block.shape[1]):
        mono += block[:, channel]
    mono /= np.float32(block.shape[1])
    return mono
