"""`songs --map`: the whole library on the valence × arousal plane, drawn with matplotlib (Agg, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from image2mood.errors import Image2MoodError
from image2mood.moodmap import MapPoint
from image2mood.moods import Mood

LABELLED_SONGS = 40  # a larger library shows its songs as dots only
HANGUL_FONTS = ("NanumGothic", "Noto Sans CJK KR", "Noto Sans KR", "UnDotum")  # Korean titles and mood words


def plot_library(path: Path, songs: Sequence[tuple[str, MapPoint]], moods: Sequence[tuple[Mood, MapPoint]]) -> None:
    """Write a PNG: each song a dot (labelled when there are few), the mood words where the map puts them."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    installed = {font.name for font in font_manager.fontManager.ttflist}
    hangul = [name for name in HANGUL_FONTS if name in installed]
    with plt.rc_context({"font.family": ["DejaVu Sans", *hangul]}):
        _draw(plt, path, songs, moods, korean=bool(hangul))


def _draw(plt, path: Path, songs: Sequence[tuple[str, MapPoint]], moods: Sequence[tuple[Mood, MapPoint]],
          korean: bool) -> None:
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    try:
        ax.axhline(0, color="0.8", linewidth=1)
        ax.axvline(0, color="0.8", linewidth=1)
        if songs:
            xy = np.array([[p.valence, p.arousal] for _, p in songs])
            ax.scatter(xy[:, 0], xy[:, 1], s=36, alpha=0.8, color="tab:blue", label=f"{len(songs)} songs")
            if len(songs) <= LABELLED_SONGS:
                for label, point in songs:
                    ax.annotate(label, (point.valence, point.arousal), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
        for mood, point in moods:
            word = f"{mood.en} · {mood.ko}" if korean else mood.en
            ax.annotate(word, (point.valence, point.arousal), fontsize=9, color="tab:red", ha="center")
        ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal",
               xlabel="valence (unpleasant → pleasant)", ylabel="arousal (calm → excited)",
               title="image2mood: the library's mood map")
        if songs:
            ax.legend(loc="lower right")
        fig.savefig(path, format="png")
    except OSError as exc:
        raise Image2MoodError(f"cannot write the map {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
