"""Decode music files into deterministic CLAP windows.

Only the picked windows are ever decoded, so a 2-hour file costs a few MB. Each window's native-rate
samples (plus a 0.2 s margin either side) come from one of two decoders (:mod:`image2mood.decoders`),
picked per file by content, not by suffix: libsndfile, or ffmpeg for what it cannot read. soxr (HQ) then
resamples every window to the target rate and the margins are cut off, so window edges carry neither
filter transients nor a lossy decoder's settling after a seek. The same file gives the same samples bit
for bit. Window placement is :func:`window_starts`; which files are music, :mod:`image2mood.files`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soxr

from image2mood.decoder_notes import decoder_notes, kept
from image2mood.decoders import FfmpegSource, Source, SoundFileSource, open_source
from image2mood.errors import AudioDecodeError
from image2mood.files import check_regular_file

SILENCE_PEAK = 1e-3
"""Windows whose peak stays below this (-60 dBFS) count as silence."""

MAX_SAMPLE_RATE = 768_000
"""Highest native sample rate decoded; a header claiming more is refused (its windows would cost GBs)."""

_MARGIN_S = 0.2  # decoded either side of a window, then cut off: room for the resampler's edges and for
# lossy decoders to settle after a seek (libsndfile's MP3 decoding glitches for up to ~0.1 s at low bitrates)
_SHORT_READ_SLACK_S = 0.5  # a window may come up this much short of the claimed end (then zero-padded)


@dataclass(frozen=True)
class DecodedAudio:
    """The windows picked from one file, ready for CLAP."""

    windows: list[np.ndarray]  # float32 mono at the requested rate, each at most one window long
    duration: float  # seconds of the whole file
    silent: bool  # True when the picked windows are (near) digital silence
    notes: tuple[str, ...] = ()  # what the decoder printed about damage it read past, each line once
    starts: tuple[float, ...] = ()  # each window's start in the file, seconds (as :func:`window_starts` placed it)


def window_starts(total: int, window: int, max_windows: int) -> list[int]:
    """Start samples of the windows for a file of ``total`` samples.

    A file no longer than one window gives one window at 0 (holding the whole file). Otherwise
    ``n = min(max_windows, ceil(total / window))`` windows, the i-th centred on the centre of the i-th
    of n equal parts of the file and clamped inside it.
    """
    if total <= window:
        return [0]
    n = min(max_windows, -(-total // window))
    return [min(max(((2 * i + 1) * total - n * window) // (2 * n), 0), total - window) for i in range(n)]


def decode_windows(
    path: Path, *, sample_rate: int = 48000, window_seconds: float = 10.0, max_windows: int = 6
) -> DecodedAudio:
    """Decode the evenly spread windows of one music file (see the module docstring).

    Only a regular file is opened (see :func:`check_regular_file`). What the decoders print about
    damage they read past (mpg123's "Illegal Audio-MPEG-Header ... Trying to resync") is caught and
    returned as ``notes`` instead of reaching stderr without the file's name. Raises
    :class:`AudioDecodeError` naming the file for anything that is not decodable audio.
    """
    if sample_rate <= 0 or window_seconds <= 0 or max_windows < 1:
        raise ValueError("sample_rate, window_seconds and max_windows must be positive")
    path = Path(path)
    check_regular_file(path)
    notes: list[str] = []
    try:
        with decoder_notes(notes):
            decoded = _decode_file(path, sample_rate, window_seconds, max_windows, notes)
    except AudioDecodeError as e:
        if not notes:
            raise
        raise AudioDecodeError(f"{e}; the decoder said: {' / '.join(kept(notes))}") from e
    return replace(decoded, notes=kept(notes))


def decode_stream(
    chunks: Iterable[bytes], name: str, *, sample_rate: int = 48000, window_seconds: float = 10.0,
    max_windows: int = 6,
) -> DecodedAudio:
    """:func:`decode_windows` for a song that arrives as bytes (streamed from a music server).

    The bytes go into an anonymous in-memory file (Linux ``memfd``), never onto the disk; both decoders
    open it by its ``/proc`` path, as they would a file. Errors name ``name`` (e.g. the song's URL).
    """
    fd = os.memfd_create("image2mood-song", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as memory:
            for chunk in chunks:
                memory.write(chunk)
        where = f"/proc/{os.getpid()}/fd/{fd}"
        try:
            return decode_windows(Path(where), sample_rate=sample_rate, window_seconds=window_seconds,
                                  max_windows=max_windows)
        except AudioDecodeError as e:
            raise AudioDecodeError(str(e).replace(where, name)) from None
    finally:
        os.close(fd)


def _decode_file(path: Path, sample_rate: int, window_seconds: float, max_windows: int,
                 notes: list[str]) -> DecodedAudio:
    with open_source(path, notes) as source:
        try:
            return _decode(path, source, sample_rate, window_seconds, max_windows)
        except AudioDecodeError:
            # libsndfile calls some real Opus files malformed after a seek; ffmpeg reads them.
            if not (isinstance(source, SoundFileSource) and source.f.subtype == "OPUS"):
                raise
    return _decode(path, FfmpegSource(path, notes), sample_rate, window_seconds, max_windows)


def _decode(path: Path, source: Source, sample_rate: int, window_seconds: float, max_windows: int) -> DecodedAudio:
    """The windows of an opened file (see :func:`decode_windows`)."""
    rate, frames = source.rate, source.frames
    if rate > MAX_SAMPLE_RATE:
        raise AudioDecodeError(f"cannot decode {path}: its header claims {rate} samples a second; it is corrupt")
    total = round(frames * sample_rate / rate)
    if total == 0:
        raise AudioDecodeError(f"no audio in {path}")
    window = min(round(window_seconds * sample_rate), total)
    starts = window_starts(total, window, max_windows)
    margin = round(_MARGIN_S * rate)
    ranges: list[tuple[int, int]] = []  # native (first, count) per window, with a margin either side
    for start in starts:
        first = max(0, start * rate // sample_rate - margin)
        ranges.append((first, min(frames, -(-(start + window) * rate // sample_rate) + margin) - first))
    chunks = source.read(ranges)
    windows: list[np.ndarray] = []
    for start, (first, count), chunk in zip(starts, ranges, chunks, strict=True):
        if len(chunk) < count - margin - _SHORT_READ_SLACK_S * rate:
            raise AudioDecodeError(
                f"cannot decode {path}: the audio stops at {(first + len(chunk)) / rate:.1f} s although the file "
                f"claims {frames / rate:.1f} s; it is truncated or corrupt"
            )
        if not np.isfinite(chunk).all():
            raise AudioDecodeError(f"cannot decode {path}: it holds NaN or infinite samples; it is corrupt")
        if rate != sample_rate:
            chunk = soxr.resample(chunk, rate, sample_rate)
        offset = round(start - first * sample_rate / rate)
        windows.append(_exact(chunk[offset : offset + window], window))
    silent = max(float(np.max(np.abs(w))) for w in windows) < SILENCE_PEAK
    return DecodedAudio(windows=windows, duration=frames / rate, silent=silent,
                        starts=tuple(round(start / sample_rate, 3) for start in starts))


def _exact(samples: np.ndarray, length: int) -> np.ndarray:
    """A float32 copy of ``samples`` cut or zero-padded to ``length``."""
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(samples))] = samples[:length]
    return out
