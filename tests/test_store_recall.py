"""Search recall with the production settings: never silently trade answers for speed."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe

from image2mood.store import Song, SongStore, StoreInfo, open_store
from image2mood.store.base import EXACT_SEARCH_LIMIT, VECTOR_NAME

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")

DIM = 512
INFO = StoreInfo(clap_model="test/recall", clap_fingerprint="recall", dim=DIM, windowing="6x10.0s",
                 preprocessing="laion-int16/1")


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _clustered(n: int, queries: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """32 clusters around a shared direction (mean pairwise cosine about 0.35, as CLAP libraries show)."""
    shared, centres = _unit(rng.standard_normal(DIM)), _unit(rng.standard_normal((32, DIM)))

    def draw(k: int) -> np.ndarray:
        return _unit(0.55 * shared + 0.6 * centres[rng.integers(0, 32, k)] + 0.02 * rng.standard_normal((k, DIM)))

    return draw(n), draw(queries)


def _fill(store: SongStore, library: np.ndarray) -> None:
    for first in range(0, len(library), 500):
        store.upsert([Song(id=str(uuid.UUID(int=i + 1)), path=f"/m/{i}.mp3", content_hash=str(i), title=str(i),
                           vector=library[i]) for i in range(first, min(first + 500, len(library)))])
    store.optimize()


def _recall(store: SongStore, library: np.ndarray, queries: np.ndarray) -> float:
    found = []
    for query in queries:
        truth = set(np.argsort(-(library @ query))[:10].tolist())
        got = {uuid.UUID(hit.song.id).int - 1 for hit in store.search(query, 10)}
        found.append(len(got & truth) / 10)
    return float(np.mean(found))


@pytest.mark.parametrize("adapter", ["embedded", "server"])
def test_recall_at_10_with_production_settings(adapter: str, tmp_path: Path) -> None:
    library, queries = _clustered(3000, 40, np.random.default_rng(7))
    mean_cosine = float((library[:500] @ library[:500].T).mean())
    assert 0.2 < mean_cosine < 0.6, mean_cosine
    location = str(tmp_path / "store") if adapter == "embedded" else ":memory:"
    with open_store(location, info=INFO) as store:
        assert store.exact_limit == EXACT_SEARCH_LIMIT
        _fill(store, library)
        assert _recall(store, library, queries) >= 0.95


def _scores_without_rescoring(store: SongStore, query: np.ndarray) -> np.ndarray:
    """Scores straight from the quantised codes (the production search rescores them)."""
    request = qe.QueryRequest(limit=10, query=qe.Query.Nearest(query, using=VECTOR_NAME), params=qe.SearchParams(
        quantization=qe.QuantizationSearchParams(rescore=False)))
    return np.array([p.score for p in store._shard.query(request)])


def _assert_codes_searched_and_rescored(store: SongStore, library: np.ndarray, queries: np.ndarray) -> None:
    assert store._shard.info().indexed_vectors_count == len(library)  # every song has its codes
    query = queries[0]
    assert np.abs(_scores_without_rescoring(store, query) - np.sort(library @ query)[::-1][:10]).max() > 1e-4
    rescored = np.array([hit.score for hit in store.search(query, 10)])
    np.testing.assert_allclose(rescored, np.sort(library @ query)[::-1][:10], atol=1e-5)
    assert _recall(store, library, queries) >= 0.95


def test_recall_through_the_quantised_codes(tmp_path: Path) -> None:
    """Above the exact-search limit the store scans 4-bit codes and rescores the best candidates with
    their full vectors: the scores are exact again and recall@10 stays at least 0.95."""
    library, queries = _clustered(6000, 40, np.random.default_rng(8))  # over Qdrant's 10 MB indexing threshold
    with open_store(str(tmp_path / "store"), info=INFO) as store:
        store.exact_limit = 1000
        _fill(store, library)
        _assert_codes_searched_and_rescored(store, library, queries)


def test_a_store_made_with_hnsw_settings_gets_codes(tmp_path: Path) -> None:
    """Stores made by earlier versions (HNSW m 32, no quantisation) take on the codes at their next optimize."""
    library, queries = _clustered(6000, 20, np.random.default_rng(10))
    root = tmp_path / "store"
    with open_store(str(root), info=INFO):
        pass  # writes store.json and a shard with today's settings: replace the shard by an old one
    shutil.rmtree(root / "shard")
    old = qe.EdgeConfig(vectors={VECTOR_NAME: qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)},
                        hnsw_config=qe.HnswIndexConfig(m=32, ef_construct=256, full_scan_threshold=10_000))
    qe.EdgeShard.create(str(root / "shard"), old).close()
    with open_store(str(root), info=INFO) as store:
        store.exact_limit = 1000
        _fill(store, library)
        _assert_codes_searched_and_rescored(store, library, queries)


def test_count_used_for_the_choice_follows_writes(tmp_path: Path) -> None:
    library, _ = _clustered(20, 1, np.random.default_rng(9))
    with open_store(str(tmp_path / "store"), info=INFO) as store:
        _fill(store, library[:10])
        assert store._size() == 10
        _fill(store, library)
        assert store._size() == 20
