"""Each answered song's highlight: the part of it, ``IMAGE2MOOD_HIGHLIGHT_SECONDS`` long, closest to the query.

A song's window vectors (:data:`~image2mood.store.base.WINDOWS_NAME`) say how close each of its windows is to
the query (cosine). A candidate clip of the highlight's length is scored by the mean of the windows it covers,
each weighted by the seconds of it the clip covers: over adjacent windows, the mean similarity of the run of
windows the clip spans. Candidates start where a window starts or end where one ends (clamped inside the song),
so the best window, or run of windows, is always among them; the best score wins, the earliest on a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from image2mood.store.base import NO_WINDOWS_LAYOUT, NO_WINDOWS_SONGS, Song, SongStore
from image2mood.vectors import l2_normalise


@dataclass(frozen=True)
class Highlight:
    """Where a song's best part lies (seconds from its start) and its mean cosine similarity to the query."""

    start: float
    end: float
    score: float

    def to_json(self) -> dict[str, float]:
        return {"start": round(self.start, 2), "end": round(self.end, 2), "score": round(self.score, 4)}

    @classmethod
    def from_json(cls, body: Any) -> Highlight | None:
        """A highlight as :meth:`to_json` wrote it; None for anything else (a kept answer from before highlights)."""
        try:
            return cls(float(body["start"]), float(body["end"]), float(body["score"]))
        except (TypeError, KeyError, ValueError):
            return None


def clock(seconds: float) -> str:
    """A highlight's edge as people read it, ``m:ss``, rounded half up as the page shows it."""
    minutes, rest = divmod(int(seconds + 0.5), 60)
    return f"{minutes}:{rest:02d}"


def best_part(windows: np.ndarray, starts: Sequence[float], window_seconds: float, duration: float,
              query: np.ndarray, seconds: float) -> Highlight:
    """The ``seconds``-long clip of a song whose windows (vectors ``windows``, starting at ``starts``, each
    ``window_seconds`` long) are closest to ``query`` on average (see the module docstring); inside
    ``duration`` (unknown, 0: up to the last window's end), all of a song shorter than ``seconds``."""
    first = np.asarray(starts, dtype=np.float64)
    last = first + window_seconds
    song_end = duration if duration > 0 else float(last.max())
    length = min(seconds, song_end)
    similarity = l2_normalise(np.asarray(windows, dtype=np.float32)) @ l2_normalise(query).astype(np.float32)
    candidates = np.unique(np.clip(np.concatenate([first, last - length]), 0.0, song_end - length))
    covered = np.clip(np.minimum(candidates[:, None] + length, last) - np.maximum(candidates[:, None], first),
                      0.0, None)  # seconds of each window each candidate covers
    weight = covered.sum(axis=1)
    scores = np.where(weight > 0, covered @ similarity / np.maximum(weight, 1e-9), -np.inf)
    best = int(np.argmax(scores))  # the first maximum: the earliest clip on a tie
    start = float(candidates[best])
    return Highlight(start=start, end=start + length, score=float(scores[best]))


def highlights(store: SongStore, songs: Sequence[Song], query: np.ndarray,
               seconds: float) -> list[Highlight | None]:
    """Each song's highlight for ``query``, its window vectors read in one call; None for a song without them."""
    windows = store.window_vectors([song.id for song in songs])
    return [None if song.id not in windows or not song.window_seconds else
            best_part(windows[song.id], song.window_starts or (), song.window_seconds, song.duration, query, seconds)
            for song in songs]


def missing_reason(store: SongStore) -> str:
    """Why a song of ``store`` has no highlight, and how to get one."""
    return NO_WINDOWS_SONGS if store.has_windows else NO_WINDOWS_LAYOUT
