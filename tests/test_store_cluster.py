"""A collection made on a Qdrant cluster: its shards, copies and write consistency come from the settings, and
every field a search filters on has a payload index, in both adapters.

qdrant-client's local mode (the stand-in for a server here) keeps neither the sharding parameters nor the
payload indexes (``get_collection`` gives ``shard_number=None`` and an empty ``payload_schema``), so for the
server adapter the calls are recorded on their way into a real local-mode client. The embedded adapter's
indexes are read back from the Qdrant Edge shard itself. A real multi-node cluster is not exercised here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

import image2mood.store.server as server_module
from image2mood.config import Settings
from image2mood.errors import StoreError
from image2mood.store import SongFilter, StoreInfo, open_configured_store, windowing_label
from image2mood.store.base import FLOAT_FIELDS, KEYWORD_FIELDS
from image2mood.store.embedded import EmbeddedStore
from image2mood.store.migrate import open_target
from image2mood.store.server import Layout, ServerStore, _client_filter

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")

INFO = StoreInfo(clap_model="test/clap-tiny", clap_fingerprint="0123456789abcdef", dim=8,
                 windowing=windowing_label(6, 10), preprocessing="laion-int16/1")
EXPECTED_INDEXES = {**{name: models.PayloadSchemaType.KEYWORD for name in KEYWORD_FIELDS},
                    **{name: models.PayloadSchemaType.FLOAT for name in FLOAT_FIELDS}}


class RecordingClient(QdrantClient):
    """A real local-mode client that also notes what each collection was created with."""

    created: dict[str, dict[str, Any]]
    indexes: dict[str, dict[str, Any]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.created, self.indexes = {}, {}

    def create_collection(self, collection_name: str, *args: Any, **kwargs: Any) -> bool:
        self.created[collection_name] = kwargs
        return super().create_collection(collection_name, *args, **kwargs)

    def create_payload_index(self, collection_name: str, field_name: str, *args: Any, **kwargs: Any) -> Any:
        self.indexes.setdefault(collection_name, {})[field_name] = kwargs["field_schema"]
        return super().create_payload_index(collection_name, field_name, *args, **kwargs)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[RecordingClient]:
    """Every client the server store opens by itself, recording."""
    clients: list[RecordingClient] = []

    def opened(*args: Any, **kwargs: Any) -> RecordingClient:
        clients.append(RecordingClient(*args, **kwargs))
        return clients[-1]

    monkeypatch.setattr(server_module, "QdrantClient", opened)
    return clients


def test_the_settings_layout_reaches_the_new_collection(recorded: list[RecordingClient]) -> None:
    settings = Settings(_env_file=None, store=":memory:", collection="catalogue", qdrant_shards=6,
                        qdrant_replication=2, qdrant_write_consistency=2)
    with open_configured_store(settings, INFO) as store:
        assert store.count() == 0
        made = recorded[0].created["catalogue"]
        assert (made["shard_number"], made["replication_factor"], made["write_consistency_factor"]) == (6, 2, 2)
        assert recorded[0].indexes["catalogue"] == EXPECTED_INDEXES
    # An existing collection keeps its own layout: opening it again creates nothing.
    client = RecordingClient(location=":memory:")
    ServerStore(":memory:", info=INFO, client=client, layout=Layout(3, 2, 1)).close()
    client.created.clear()
    ServerStore(":memory:", info=INFO, client=client, layout=Layout(9, 3, 3)).close()
    assert client.created == {}


def test_the_default_layout_is_one_shard_one_copy(recorded: list[RecordingClient]) -> None:
    with open_configured_store(Settings(_env_file=None, store=":memory:"), INFO):
        made = recorded[0].created["songs"]
        assert (made["shard_number"], made["replication_factor"], made["write_consistency_factor"]) == (1, 1, 1)


def test_a_write_consistency_above_the_copies_is_refused(recorded: list[RecordingClient]) -> None:
    settings = Settings(_env_file=None, store=":memory:", qdrant_replication=2, qdrant_write_consistency=3)
    with pytest.raises(StoreError, match="IMAGE2MOOD_QDRANT_WRITE_CONSISTENCY .3. cannot exceed "
                                         "IMAGE2MOOD_QDRANT_REPLICATION .2."):
        open_configured_store(settings, INFO)


def test_a_migration_into_a_cluster_makes_the_target_with_the_layout(
        tmp_path: Path, recorded: list[RecordingClient]) -> None:
    with EmbeddedStore(str(tmp_path / "source"), info=INFO) as source, \
            open_target(":memory:", source, collection="copy", shards=4, replication=2, write_consistency=1):
        made = recorded[0].created["copy"]
        assert (made["shard_number"], made["replication_factor"], made["write_consistency_factor"]) == (4, 2, 1)


def test_every_field_a_search_filters_on_is_indexed(tmp_path: Path) -> None:
    every = SongFilter(artist="a", genre="g", min_duration=1.0, max_duration=2.0, exclude_ids=("x",))
    keys = {c.key for c in _client_filter(every).must or []}
    assert keys == set(EXPECTED_INDEXES)
    with EmbeddedStore(str(tmp_path / "store"), info=INFO) as store:  # read back from the Qdrant Edge shard
        schema = store._shard.info().payload_schema
        assert {name: str(index.data_type).rsplit(".", 1)[-1].upper() for name, index in schema.items()} == {
            name: kind.name for name, kind in EXPECTED_INDEXES.items()}
