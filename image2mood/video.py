"""A video to post: a photo with a clip of a song, as an MP4 that phones and social sites play.

ffmpeg renders it: H.264 (libx264 ``ultrafast``, ``-tune stillimage``, yuv420p, 25 fps) and AAC, with
``+faststart``, a gentle fade in and out of picture and sound, and optionally a slow zoom (8 % over the
clip: a per-frame ``scale``, then a centre ``crop``; about 1 s more for a 15-s story, ``bench/video.py``).
The photo is fitted whole into the frame over a blurred, darkened copy of itself that fills the rest,
composed here with Pillow and handed to ffmpeg as raw pixels on its stdin: it is never written to disk. ffmpeg writes the MP4 into a private temporary folder (mode 0700)
that is deleted when the call returns; its time (:data:`RENDER_TIMEOUT_S`) and the file's size
(:data:`MAX_VIDEO_BYTES`, ffmpeg's ``-fs``) are bounded.

Which part of the song: the answer's ``highlight`` (``{"start", "end", "score"}``, seconds) when it has
one; otherwise (a store without window vectors, or an answer kept before highlights) :func:`clip_for`
takes IMAGE2MOOD_HIGHLIGHT_SECONDS from the middle of the song, and refuses a song shorter than that.
A file shorter than its clip (changed since it was indexed) is refused too: :class:`ClipTooLongError`.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter

from image2mood.decoders import open_source
from image2mood.errors import AudioDecodeError, Image2MoodError
from image2mood.paths import local_path
from image2mood.store.base import Song
from image2mood.subsonic import server_song_id

FORMATS: dict[str, tuple[int, int]] = {"story": (1080, 1920), "square": (1080, 1080), "wide": (1920, 1080)}
"""The video formats and their (width, height): a phone story or reel, a square post, a landscape video."""
DEFAULT_FORMAT = "story"
FPS = 25
FADE_S = 0.5
ZOOM = 0.08  # how much larger the picture is at the clip's end than at its start
RENDER_TIMEOUT_S = 120.0
MAX_VIDEO_BYTES = 64 << 20
SLACK_S = 0.05  # a clip may end this much past the song's last sample (rounding of stored durations)
_INSTALL_FFMPEG = "install ffmpeg: bash scripts/setup.sh"


class VideoError(Image2MoodError):
    """A video could not be rendered (ffmpeg missing or failing, the song's file gone or unreadable)."""


class ClipTooLongError(VideoError):
    """The song is shorter than the clip asked of it."""


class RenderError(VideoError):
    """ffmpeg is missing, failed, ran too long or wrote too much, or the song's file is gone or unreadable:
    nothing the person asking can fix (the message may name the file)."""


@dataclass(frozen=True)
class Clip:
    start: float  # seconds into the song
    duration: float  # seconds


def answer_clip(song: Song, said: Mapping[str, Any], seconds: float) -> tuple[Path, Clip]:
    """The file and the clip of ``song`` as an answer gave it (``said``: its highlight, when it has one).
    A song on a music server has no file here: a :class:`VideoError`."""
    if server_song_id(song.path) is not None:
        raise VideoError(f"{song_name(song)} is on the music server, and videos are made from files on this "
                         "machine; choose a song from a folder indexed with `image2mood index MUSIC_DIR`")
    return local_path(song.path), clip_for({**said, "title": song.title}, song.duration, seconds)


def song_name(song: Song) -> str:
    """A song as error messages name it: its title and id (never its file's path)."""
    return f"“{song.title}” (song {song.id})"


def clip_for(song: Mapping[str, Any], duration: float, seconds: float) -> Clip:
    """The part of a song a video plays: its answer's ``highlight`` when there is one, else ``seconds``
    from the middle of the song (``duration`` long). A song shorter than that is a :class:`ClipTooLongError`."""
    highlight = song.get("highlight")
    if highlight:
        start, end = float(highlight["start"]), float(highlight["end"])
        return Clip(start, end - start)
    if duration + SLACK_S < seconds:
        raise ClipTooLongError(_too_short(_name(song), duration, seconds))
    return Clip(max(0.0, (duration - seconds) / 2), seconds)


def render(photo: Image.Image, audio_path: Path, clip: Clip, out_path: Path, *, fmt: str = DEFAULT_FORMAT,
           zoom: bool = False, name: str | None = None) -> None:
    """Write the video of ``photo`` with ``clip`` of the song at ``audio_path`` to ``out_path`` (MP4).

    ``name`` is what error messages call the song (default: its file). Raises :class:`VideoError` (the
    song's file is missing or unreadable, ffmpeg is missing, fails, runs too long or writes too much),
    :class:`ClipTooLongError` (the clip ends after the song), ValueError for an unknown ``fmt``.
    """
    with _rendered(photo, audio_path, clip, fmt, zoom, name or str(audio_path)) as mp4:
        shutil.move(mp4, out_path)  # a failed render leaves nothing at out_path


def render_bytes(photo: Image.Image, audio_path: Path, clip: Clip, *, fmt: str = DEFAULT_FORMAT,
                 zoom: bool = False, name: str | None = None) -> bytes:
    """:func:`render`, returning the MP4's bytes; nothing is left on disk."""
    with _rendered(photo, audio_path, clip, fmt, zoom, name or str(audio_path)) as mp4:
        return mp4.read_bytes()


@contextmanager
def _rendered(photo: Image.Image, audio_path: Path, clip: Clip, fmt: str, zoom: bool, name: str) -> Iterator[Path]:
    """The MP4, in a private temporary folder (mode 0700: this user's alone) deleted on leaving."""
    folder = Path(tempfile.mkdtemp(prefix="image2mood-video-"))
    try:
        yield _render_in(folder, photo, audio_path, clip, fmt, zoom, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def compose(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The video's picture: ``photo`` fitted whole and centred in ``size``, over a blurred, darkened copy of
    itself scaled to cover the frame. Where it sits: :func:`photo_box`."""
    width, height = size
    cover = max(width / photo.width, height / photo.height)
    tiny = (max(1, round(photo.width * cover / 16)), max(1, round(photo.height * cover / 16)))
    small = photo.convert("RGB").resize(tiny, Image.Resampling.BILINEAR)  # blur a small copy: cheap at any size
    small = ImageEnhance.Brightness(small.filter(ImageFilter.GaussianBlur(2))).enhance(0.6)
    full = (max(width, math.ceil(photo.width * cover)), max(height, math.ceil(photo.height * cover)))
    frame = small.resize(full, Image.Resampling.BILINEAR)
    left, top = (full[0] - width) // 2, (full[1] - height) // 2
    frame = frame.crop((left, top, left + width, top + height))
    box = photo_box(photo.size, size)
    fitted = photo.convert("RGB").resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS,
                                         reducing_gap=3.0)
    frame.paste(fitted, box[:2])
    return frame


def photo_box(photo_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where :func:`compose` puts the photo in a frame of ``size``: (left, top, right, bottom)."""
    (pw, ph), (width, height) = photo_size, size
    scale = min(width / pw, height / ph)
    w, h = max(1, round(pw * scale)), max(1, round(ph * scale))
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def _render_in(folder: Path, photo: Image.Image, audio_path: Path, clip: Clip, fmt: str, zoom: bool,
               name: str) -> Path:
    if fmt not in FORMATS:
        raise ValueError(f"unknown video format {fmt!r}: use one of {', '.join(FORMATS)}")
    if clip.duration <= 2 * FADE_S or clip.start < 0:
        raise VideoError(f"the clip of {name} ({clip.start:g} s + {clip.duration:g} s) is not a clip; "
                         f"a video needs more than {2 * FADE_S:g} s of the song")
    length = _song_length(audio_path, name)
    if clip.start + clip.duration > length + SLACK_S:
        raise ClipTooLongError(f"the file of {name} is {length:.1f} s long, shorter than its clip "
                               f"({clip.start:g}–{clip.start + clip.duration:g} s): it changed since it was indexed; "
                               "re-index it (`image2mood index MUSIC_DIR`) or choose another song")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RenderError(f"cannot make a video of {name}: ffmpeg is missing; {_INSTALL_FFMPEG}")
    size = FORMATS[fmt]
    frame = compose(photo, size).tobytes()
    out = folder / "video.mp4"
    command = [ffmpeg, "-nostdin", "-v", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{size[0]}x{size[1]}", "-framerate", str(FPS),
               "-i", "pipe:0",
               "-ss", f"{clip.start:.3f}", "-t", f"{clip.duration:.3f}", "-i", f"file:{audio_path}",
               "-filter_complex", _graph(size, clip.duration, zoom), "-map", "[v]", "-map", "[a]",
               "-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage", "-pix_fmt", "yuv420p",
               "-r", str(FPS), "-c:a", "aac", "-b:a", "160k", "-ac", "2",
               "-t", f"{clip.duration:.3f}", "-movflags", "+faststart", "-fs", str(MAX_VIDEO_BYTES), str(out)]
    try:
        done = subprocess.run(command, input=frame, capture_output=True, timeout=RENDER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"the video of {name} took over {RENDER_TIMEOUT_S:g} s and was stopped; "
                         "try a shorter clip or a smaller format") from None
    except OSError as e:
        raise RenderError(f"cannot make a video of {name}: ffmpeg did not run ({e}); {_INSTALL_FFMPEG}") from e
    if done.returncode != 0 or not out.is_file():
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise RenderError(f"ffmpeg could not make the video of {name} ({lines[-1] if lines else done.returncode}); "
                         "the song's file may be damaged: re-index it or choose another song")
    if out.stat().st_size >= MAX_VIDEO_BYTES:
        raise RenderError(f"the video of {name} grew past {MAX_VIDEO_BYTES / (1 << 20):g} MB and was stopped; "
                         "choose a shorter clip")
    return out


def _graph(size: tuple[int, int], seconds: float, zoom: bool) -> str:
    """The filter graph: the one frame held for the clip (zoomed slowly, when asked), faded in and out,
    and the clip's sound faded the same."""
    width, height = size
    fades = f"fade=t=in:d={FADE_S},fade=t=out:st={seconds - FADE_S:.3f}:d={FADE_S}"
    video = f"[0:v]tpad=stop_mode=clone:stop_duration={seconds:.3f},"
    if zoom:  # even sizes, grown with time, cut back to the frame around its centre
        grow = f"(1+{ZOOM}*t/{seconds:.3f})"
        video += (f"scale=w='trunc({width}*{grow}/2)*2':h='trunc({height}*{grow}/2)*2':eval=frame,"
                  f"crop={width}:{height},")
    video += f"format=yuv420p,{fades}[v]"
    audio = f"[1:a:0]afade=t=in:d={FADE_S},afade=t=out:st={seconds - FADE_S:.3f}:d={FADE_S}[a]"
    return f"{video};{audio}"


def _song_length(path: Path, name: str) -> float:
    """The song's length in seconds, read from its file (the store's may be stale)."""
    if not os.path.exists(path):
        raise RenderError(f"the file of {name} is gone; re-index the library (`image2mood index MUSIC_DIR`)")
    notes: list[str] = []
    try:
        with open_source(path, notes) as source:
            return source.frames / source.rate
    except AudioDecodeError as e:
        raise RenderError(f"cannot make a video of {name}: {e}") from e


def _name(song: Mapping[str, Any]) -> str:
    title = song.get("title") or song.get("id") or "the song"
    return f"“{title}”"


def _too_short(name: str, length: float, seconds: float) -> str:
    return (f"{name} is {length:.1f} s long, too short for a {seconds:g}-s clip; choose a longer song, or a "
            "shorter clip (IMAGE2MOOD_HIGHLIGHT_SECONDS)")
