"""Decode music files into deterministic CLAP windows, hash them, find them in folders.

Only the picked windows are ever decoded, so a 2-hour file costs a few MB. Each window's native-rate
samples (plus a 0.2 s margin either side) come from one of two backends, picked per file by content,
not by suffix:

* **libsndfile** (soundfile) for what it reads: WAV, AIFF, FLAC, Ogg Vorbis/Opus, MP3: seek + read.
* **ffmpeg** for the rest (M4A/AAC/ALAC, WMA, WavPack, APE, Matroska): ffprobe gives the sample rate
  and length, then *one* ffmpeg process decodes every window, each from its own input-seeked copy of
  the file (``-ss START -t LEN -i FILE``), trimmed/padded to the exact length and concatenated on
  stdout. One process per file, not per window: start-up costs about 0.1 s a process, while a full
  decode (the streaming alternative) would cost 0.6 s for a 4-minute song and minutes for a long one.

Both downmix to the mean of the channels; soxr (HQ) then resamples every window to the target rate
and the margins are cut off, so window edges carry neither filter transients nor a lossy decoder's
settling after the seek. The same file gives the same samples bit for bit. Window placement is
:func:`window_starts`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import soxr

from image2mood.errors import AudioDecodeError

SUPPORTED_SUFFIXES = frozenset(".aac .aif .aiff .ape .flac .m4a .mka .mp3 .mp4 .oga .ogg .opus .wav .wma .wv".split())
"""Suffixes picked up when walking folders: what libsndfile or ffmpeg decodes."""

SILENCE_PEAK = 1e-3
"""Windows whose peak stays below this (-60 dBFS) count as silence."""

FFMPEG_TIMEOUT_S = 120.0
"""Longest an ffprobe/ffmpeg call may run before the file is reported as undecodable."""

MAX_SAMPLE_RATE = 768_000
"""Highest native sample rate decoded; a header claiming more is refused (its windows would cost GBs)."""

_MARGIN_S = 0.2  # decoded either side of a window, then cut off: room for the resampler's edges and for
# lossy decoders to settle after a seek (libsndfile's MP3 decoding glitches for up to ~0.1 s at low bitrates)
_SHORT_READ_SLACK_S = 0.5  # a window may come up this much short of the claimed end (then zero-padded)
_INSTALL_FFMPEG = "install ffmpeg: bash scripts/setup.sh"
_READ_BUDGET = 1 << 22  # samples (all channels) read from libsndfile at a time: 16 MB however many channels
_MAX_NOTES = 5  # decoder notes kept per file
_STDERR_LOCK = threading.Lock()  # one diversion of fd 2 at a time (see _decoder_notes)


@dataclass(frozen=True)
class DecodedAudio:
    """The windows picked from one file, ready for CLAP."""

    windows: list[np.ndarray]  # float32 mono at the requested rate, each at most one window long
    duration: float  # seconds of the whole file
    silent: bool  # True when the picked windows are (near) digital silence
    notes: tuple[str, ...] = ()  # what the decoder printed about damage it read past, each line once


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
        with _decoder_notes(notes):
            decoded = _decode_file(path, sample_rate, window_seconds, max_windows, notes)
    except AudioDecodeError as e:
        if not notes:
            raise
        raise AudioDecodeError(f"{e}; the decoder said: {' / '.join(_kept(notes))}") from e
    return replace(decoded, notes=_kept(notes))


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


def check_regular_file(path: Path) -> os.stat_result:
    """The ``stat`` of ``path`` if it is a non-empty regular file (symlinks followed), else an
    :class:`AudioDecodeError` that says what it is. Nothing is opened, so a named pipe cannot hang us."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        what = "a symlink that points nowhere" if os.path.lexists(path) else "no such file"
        raise AudioDecodeError(f"cannot decode {path}: {what}") from None
    except OSError as e:
        what = "a symlink loop" if e.errno == errno.ELOOP else (e.strerror or str(e)).lower()
        raise AudioDecodeError(f"cannot decode {path}: {what}") from None
    if not stat.S_ISREG(info.st_mode):
        raise AudioDecodeError(f"cannot decode {path}: {_kind(info.st_mode)}, not a file; skipped")
    if info.st_size == 0:
        raise AudioDecodeError(f"no audio in {path}: the file is empty")
    return info


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def _open_regular(path: Path) -> int:
    """A read-only descriptor of the regular file ``path``: checked before it is opened (a named pipe
    never is), and again after (O_NONBLOCK, then fstat), in case it was replaced meanwhile."""
    check_regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise AudioDecodeError(f"cannot decode {path}: {(e.strerror or str(e)).lower()}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since it was checked
        os.close(fd)
        raise AudioDecodeError(f"cannot decode {path}: not a regular file; skipped")
    return fd


def _decode_file(path: Path, sample_rate: int, window_seconds: float, max_windows: int,
                 notes: list[str]) -> DecodedAudio:
    with _open(path, notes) as source:
        try:
            return _decode(path, source, sample_rate, window_seconds, max_windows)
        except AudioDecodeError:
            # libsndfile calls some real Opus files malformed after a seek; ffmpeg reads them.
            if not (isinstance(source, _SoundFileSource) and source.f.subtype == "OPUS"):
                raise
    return _decode(path, _FfmpegSource(path, notes), sample_rate, window_seconds, max_windows)


@contextmanager
def _decoder_notes(notes: list[str]) -> Iterator[None]:
    """Divert fd 2 to a temporary file meanwhile and add its lines to ``notes``.

    libsndfile's MP3 decoder (mpg123) prints its notes to fd 2 from C, where Python cannot catch
    them otherwise. The diversion is process-wide: what other threads write to fd 2 meanwhile is
    caught too, so Python's own messages should go through :func:`separate_stderr`.
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            notes.extend(line.strip() for line in sink.read().decode(errors="replace").splitlines() if line.strip())


@contextmanager
def separate_stderr() -> Iterator[None]:
    """Point ``sys.stderr`` at a duplicate of fd 2 meanwhile, so that Python's messages (progress
    bars, warnings) keep reaching the terminal while decoding diverts fd 2 (see :func:`decode_windows`)."""
    try:
        on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # None, or a stand-in (a test runner's buffer): not diverted
        on_fd2 = False
    if not on_fd2:
        yield
        return
    sys.stderr.flush()
    with open(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
              errors="backslashreplace") as stream, contextlib.redirect_stderr(stream):
        yield


def _kept(notes: list[str]) -> tuple[str, ...]:
    """Each distinct note once, at most ``_MAX_NOTES`` of them (then how many more)."""
    unique = list(dict.fromkeys(notes))
    if len(unique) > _MAX_NOTES:
        unique[_MAX_NOTES:] = [f"... and {len(unique) - _MAX_NOTES} more notes"]
    return tuple(unique)


def _decode(path: Path, source: _Source, sample_rate: int, window_seconds: float, max_windows: int) -> DecodedAudio:
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
    return DecodedAudio(windows=windows, duration=frames / rate, silent=silent)


def _downmix(block: np.ndarray) -> np.ndarray:
    """The mean of the channels of a ``[frames, channels]`` block, bit for bit ``block.mean(axis=1)`` in
    float32, but a column at a time: numpy's reduction over a short inner axis took 0.17 s for the
    4 minutes of stereo that ``--windows all`` reads, this takes 0.02 s."""
    mono = block[:, 0].copy()
    for channel in range(1, block.shape[1]):
        mono += block[:, channel]
    mono /= np.float32(block.shape[1])
    return mono


def content_hash(path: Path) -> str:
    """SHA-256 hex digest of the regular file's bytes, read in chunks."""
    with open(_open_regular(path), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def iter_audio_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Yield the music files under ``paths``, each once, in a deterministic order.

    Folders are walked recursively in sorted order (a folder's files, then its sub-folders), skipping
    dot-names and following symlinks without looping; only supported suffixes (any case) are yielded
    from folders, whatever they are (a named pipe, a dangling symlink, a symlink loop), so that
    :func:`check_regular_file` can say what is wrong with them. A path given explicitly that is not
    a folder is yielded as it is, so a mis-named or missing file gets a clear error instead of vanishing.
    """
    seen: set[Path] = set()
    for root in map(Path, paths):
        if not root.is_dir():
            candidates: Iterable[Path] = [root]
        else:
            candidates = _walk(root)
        for path in candidates:
            key = Path(os.path.realpath(path))  # unlike Path.resolve, never raises (a symlink loop stays as it is)
            if key not in seen:
                seen.add(key)
                yield path


def _walk(root: Path) -> Iterator[Path]:
    visited: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            dirs.clear()
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                yield Path(folder, name)


class _Source(Protocol):
    rate: int  # native sample rate
    frames: int  # native length in samples

    def read(self, ranges: list[tuple[int, int]]) -> list[np.ndarray]:
        """Mono float32 native-rate samples for each (first, count); shorter where the audio ends early."""
        ...


@contextmanager
def _open(path: Path, notes: list[str]) -> Iterator[_Source]:
    """libsndfile when it reads the file and finds audio in it, ffmpeg otherwise.

    libsndfile gets a descriptor, not the name: it cannot open names that are not valid UTF-8.
    """
    fd = _open_regular(path)
    try:
        try:
            f: sf.SoundFile | None = sf.SoundFile(fd, closefd=False)
        except sf.SoundFileError:
            f = None
        if f is None:
            yield _FfmpegSource(path, notes)
            return
        with f:
            yield _SoundFileSource(path, f) if f.frames > 0 else _FfmpegSource(path, notes)
    finally:
        os.close(fd)


class _SoundFileSource:
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


class _FfmpegSource:
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


def _exact(samples: np.ndarray, length: int) -> np.ndarray:
    """A float32 copy of ``samples`` cut or zero-padded to ``length``."""
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(samples))] = samples[:length]
    return out
