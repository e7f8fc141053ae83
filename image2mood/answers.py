"""The JSON shapes of songs and answers, shared by the API, `recommend --json` and `songs --json`.

One song shape everywhere: ``song_json``. A ranked song adds its score, moods and ``highlight`` (``{start, end,
score}`` in seconds, or null); an answer adds ``highlights_note`` when a song has none (why, and the fix), the
route, the query's moods and (for a photo) the caption as the captioner wrote it, the captions by page language
(``{"en": ..., "ko": ...}``, :mod:`image2mood.captions`), alpha, note, faces, the photo's size and timings.
Where the mood map placed them, the query and each song carry ``valence`` and ``arousal``; a kept
answer carries its ``result_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from image2mood.store.base import Song

if TYPE_CHECKING:  # recommend imports torch; listing songs should not
    from image2mood.recommend import RankedSong, Recommendation


def audio_url(song_id: str) -> str:
    """Where the service streams a song's file (relative to the service's root)."""
    return f"/audio/{song_id}"


def song_json(song: Song) -> dict[str, Any]:
    """One song as users see it: its tags and where to hear it (never its file's path)."""
    return {"id": song.id, "title": song.title, "artist": song.artist, "album": song.album,
            "genre": song.genre, "duration": song.duration, "audio_url": audio_url(song.id)}


def library_song_json(song: Song) -> dict[str, Any]:
    """A song as its owner lists it locally: the song shape plus its file's path."""
    return {**song_json(song), "path": song.path}


def ranked_song_json(ranked: RankedSong) -> dict[str, Any]:
    """A song in an answer: the song shape plus its score, its own moods, its place on the mood map and its
    highlight (null when it has none)."""
    return {**song_json(ranked.song), "score": round(ranked.score, 4),
            "moods": [m.to_json() for m in ranked.moods], **(ranked.point.to_json() if ranked.point else {}),
            "highlight": ranked.highlight.to_json() if ranked.highlight else None}


def highlights_note(songs: list[RankedSong]) -> str | None:
    """Why some songs of an answer have no highlight, and how to get them; None when all have one."""
    return next((ranked.no_highlight for ranked in songs if ranked.no_highlight), None)


def recommendation_json(rec: Recommendation, result_id: str | None = None) -> dict[str, Any]:
    """An answer: route, moods and ranked songs; a photo's answer also has caption, alpha, note, faces, timings."""
    body: dict[str, Any] = {"route": rec.route} if result_id is None else {"result_id": result_id, "route": rec.route}
    if rec.caption is not None:
        body.update(caption=rec.caption, captions=rec.captions, alpha=rec.alpha, note=rec.note,
                    faces=[face.to_json() for face in rec.faces],
                    photo_size=list(rec.photo_size) if rec.photo_size else None, timings_ms=rec.timings_ms)
        if rec.caption_note:
            body["caption_note"] = rec.caption_note
    if rec.point is not None:
        body.update(rec.point.to_json())
    body.update(moods=[m.to_json() for m in rec.moods], songs=[ranked_song_json(s) for s in rec.songs])
    note = highlights_note(rec.songs)
    if note:
        body["highlights_note"] = note
    return body
