"""`index subsonic`: a music server's songs, embedded through its API with the folder indexer's windows,
tags and durable batches (:meth:`indexer.pipeline.Indexer.index_items`).

Each song's original file is read from the server (:meth:`image2mood.subsonic.SubsonicClient.song_bytes`) into memory and
decoded there (:func:`image2mood.audio.decode_stream`); no copy reaches the disk. A stored server song has the id
uuid5(``subsonic://HOST/ID``), that URI as its path and ``subsonic:ID:VERSION`` as its content hash, the
version being the server's ``changed``/``created`` date and the file's size: a rerun skips the songs whose
version is unchanged. Songs of this server that it no longer lists are removed from the store.
"""

from __future__ import annotations

import uuid
from functools import partial

from image2mood.audio import decode_stream
from image2mood.decoder_notes import separate_stderr
from image2mood.errors import Image2MoodError
from image2mood.library import FileFacts, PreparedSong, window_limit
from image2mood.subsonic import ServerSong, SubsonicClient
from image2mood.tags import Tags
from indexer.pipeline import Indexer, IndexReport, _Failed, _Unchanged


def index_server(indexer: Indexer, client: SubsonicClient) -> IndexReport:
    """Add the server's new and changed songs to the indexer's store and remove the ones it dropped.

    The server is asked for its whole listing first, so a refused login or an unreachable server stops
    the run before anything in the store changes.
    """
    client.ping()
    listed = client.songs()
    with separate_stderr():  # decoding diverts fd 2 to catch its notes; our lines must not go there
        report = indexer.index_items(listed, partial(_look_at, indexer, client))
        report.removed = _prune(indexer, client, listed)
        if report.indexed or report.removed:
            indexer.warn("updating the search index ...")
            indexer.store.optimize()
    return report


def server_facts(client: SubsonicClient, song: ServerSong) -> FileFacts:
    """The stored identity of a server song: its URI, the id derived from it and its version."""
    uri = client.song_uri(song.id)
    return FileFacts(path=uri, id=str(uuid.uuid5(uuid.NAMESPACE_URL, uri)),
                     content_hash=f"subsonic:{song.id}:{song.version}")


def _look_at(indexer: Indexer, client: SubsonicClient, song: ServerSong) -> PreparedSong | _Unchanged | _Failed:
    """Worker-thread part: compare with the store, else stream and decode the song's windows."""
    facts = server_facts(client, song)
    stored = indexer.known.get(facts.id)
    if stored is not None and stored.content_hash == facts.content_hash and not indexer.lacks_windows(stored):
        return _Unchanged(facts)
    settings = indexer.settings
    try:
        audio = decode_stream(client.song_bytes(song.id), str(facts.path), sample_rate=indexer.encoder.sample_rate,
                              window_seconds=settings.window_seconds, max_windows=window_limit(settings))
    except (Image2MoodError, OSError) as exc:
        return _Failed(facts.path, str(exc))
    except Exception as exc:  # a decoder library's own failure: still one song, not the run
        return _Failed(facts.path, f"cannot index {facts.path}: {type(exc).__name__}: {exc}")
    tags = Tags(title=song.title, artist=song.artist, album=song.album, genre=song.genre)
    return PreparedSong(facts=facts, tags=tags, audio=audio)


def _prune(indexer: Indexer, client: SubsonicClient, listed: list[ServerSong]) -> int:
    """Delete the stored songs of this server that its listing no longer holds."""
    prefix = client.song_uri("")
    if not listed:  # an unscanned library or a user without folders, more likely than an emptied server
        indexer.warn(f"the server at {client.url} lists no songs: none of its stored songs was removed")
        return 0
    kept = {server_facts(client, song).id for song in listed}
    gone = sorted((s for s in indexer.known.values() if s.path.startswith(prefix) and s.id not in kept),
                  key=lambda s: s.path)
    for song in gone:
        indexer.warn(f"removing: {song.path} ({song.artist or '?'} - {song.title}; the server no longer lists it)")
    if gone:
        indexer.store.delete([song.id for song in gone])
    return len(gone)
