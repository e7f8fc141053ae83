"""Where the songs live: one :class:`SongStore` interface, an embedded and a server adapter."""

from __future__ import annotations

from image2mood.config import Settings
from image2mood.store.base import Hit, Song, SongFilter, SongStore, StoreInfo, windowing_label

__all__ = ["Hit", "Song", "SongFilter", "SongStore", "StoreInfo", "open_configured_store", "open_store",
           "windowing_label"]


def open_store(
    location: str,
    *,
    info: StoreInfo | None,
    api_key: str | None = None,
    collection: str = "songs",
    create: bool = True,
) -> SongStore:
    """Open (or, with ``info`` and ``create``, make) the store at ``location``.

    ``http://``/``https://`` → a Qdrant server collection; ``:memory:`` → an in-process stand-in for
    a server; anything else → an embedded store folder. With ``info`` the store must have been built
    the same way (else StoreMismatchError); with ``info=None`` it opens as it is and must exist.
    """
    if location == ":memory:" or location.startswith(("http://", "https://")):
        from image2mood.store.server import ServerStore

        return ServerStore(location, info=info, api_key=api_key, collection=collection, create=create)
    from image2mood.store.embedded import EmbeddedStore

    return EmbeddedStore(location, info=info, create=create)


def open_configured_store(settings: Settings, info: StoreInfo | None, create: bool = True) -> SongStore:
    """:func:`open_store` for the store, API key, collection and search settings the settings name."""
    store = open_store(settings.store, info=info, api_key=settings.qdrant_api_key,
                       collection=settings.collection, create=create)
    store.exact_limit = settings.exact_search_limit
    return store
