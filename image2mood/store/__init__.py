"""Where the songs live: one :class:`SongStore` interface, an embedded and a server adapter."""

from __future__ import annotations

from image2mood.config import Settings
from image2mood.store.base import Hit, Song, SongFilter, SongStore
from image2mood.store.identity import Access, StoreInfo, windowing_label

__all__ = ["Access", "Hit", "Song", "SongFilter", "SongStore", "StoreInfo", "cluster_layout", "open_configured_store",
           "open_store", "windowing_label"]


def open_store(
    location: str,
    *,
    info: StoreInfo | None,
    api_key: str | None = None,
    collection: str = "songs",
    create: bool = True,
    access: Access = "write",
    shards: int = 1,
    replication: int = 1,
    write_consistency: int = 1,
) -> SongStore:
    """Open (or, with ``info`` and ``create``, make) the store at ``location``.

    ``http://``/``https://`` → a Qdrant server collection; ``:memory:`` → an in-process stand-in for
    a server; anything else → an embedded store folder. With ``info`` the store must have been built
    by the same CLAP weights, and for ``access="write"`` with the same windowing (else
    StoreMismatchError, see :meth:`SongStore.check`); with ``info=None`` it opens as it is and must exist.
    ``shards``, ``replication``, ``write_consistency``: the layout of a server collection made here
    (see :class:`image2mood.store.server.Layout`); an embedded store is one shard.
    """
    if location == ":memory:" or location.startswith(("http://", "https://")):
        from image2mood.store.server import Layout, ServerStore

        return ServerStore(location, info=info, api_key=api_key, collection=collection, create=create,
                           access=access, layout=Layout(shards, replication, write_consistency))
    from image2mood.store.embedded import EmbeddedStore

    return EmbeddedStore(location, info=info, create=create, access=access)


def cluster_layout(settings: Settings) -> dict[str, int]:
    """:func:`open_store`'s layout keywords from IMAGE2MOOD_QDRANT_SHARDS, _REPLICATION and _WRITE_CONSISTENCY."""
    return {"shards": settings.qdrant_shards, "replication": settings.qdrant_replication,
            "write_consistency": settings.qdrant_write_consistency}


def open_configured_store(settings: Settings, info: StoreInfo | None, create: bool = True,
                          access: Access = "write") -> SongStore:
    """:func:`open_store` for the store, API key, collection, cluster layout and search settings the settings name."""
    store = open_store(settings.store, info=info, api_key=settings.qdrant_api_key,
                       collection=settings.collection, create=create, access=access, **cluster_layout(settings))
    store.exact_limit = settings.exact_search_limit
    return store
