"""The JSON shapes of songs and answers, shared by the API, `recommend --json` and `songs --json`.

One song shape everywhere: ``song_json``. A ranked song adds its score and moods; an answer adds the
route, the query's moods and (for a photo) the caption, alpha, note, face and timings.
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
    """A song in an answer: the song shape plus its score and its own moods."""
    return {**song_json(ranked.song), "score": round(ranked.score, 4),
            "moods": [m.to_json() for m in ranked.moods]}


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    """An answer: route, moods and ranked songs; a photo's answer also has caption, alpha, note, face, timings."""
    body: dict[str, Any] = {"route": rec.route}
    if rec.caption is not None:
        body.update(caption=rec.caption, alpha=rec.alpha, note=rec.note,
                    face=rec.face.to_json() if rec.face else None, timings_ms=rec.timings_ms)
    body.update(moods=[m.to_json() for m in rec.moods], songs=[ranked_song_json(s) for s in rec.songs])
    return body
