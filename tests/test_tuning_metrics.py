"""Every tuning metric against values worked out by hand on a fixed ranking with ties."""

from __future__ import annotations

import itertools
from math import log2

import numpy as np
import pytest

from tuning import metrics

# Ranks:        1     2     3     4     5     6     7
SCORES = [0.90, 0.80, 0.80, 0.80, 0.50, 0.40, 0.40]
RELEVANT = [False, True, False, False, True, False, True]
N_RELEVANT = 4  # one relevant song was not retrieved at all


def test_tie_groups() -> None:
    assert metrics.tie_groups(SCORES) == [(0, 1), (1, 4), (4, 5), (5, 7)]
    assert metrics.tie_groups([0.5, 0.5000000001, 0.4]) == [(0, 2), (2, 3)]  # equal to 6 decimals
    assert metrics.tie_groups([]) == []


def test_precision_and_recall_count_a_cut_tie_pro_rata() -> None:
    # @3: ranks 2-4 tie and hold 1 relevant; 2 of their 3 places are above the cut: 2/3 of a hit.
    assert metrics.precision_at_k(RELEVANT, SCORES, 3) == pytest.approx((2 / 3) / 3)
    assert metrics.recall_at_k(RELEVANT, SCORES, 3, N_RELEVANT) == pytest.approx((2 / 3) / 4)
    # @5: the whole tie (1 hit) plus rank 5 (a hit).
    assert metrics.precision_at_k(RELEVANT, SCORES, 5) == pytest.approx(2 / 5)
    assert metrics.recall_at_k(RELEVANT, SCORES, 5, N_RELEVANT) == pytest.approx(2 / 4)
    # @6: ranks 6-7 tie with 1 hit, 1 of 2 places inside: half a hit.
    assert metrics.precision_at_k(RELEVANT, SCORES, 6) == pytest.approx(2.5 / 6)
    # a list shorter than k still divides by k; no relevant songs: recall undefined
    assert metrics.precision_at_k(RELEVANT, SCORES, 10) == pytest.approx(3 / 10)
    assert metrics.recall_at_k(RELEVANT, SCORES, 5, 0) is None


def test_reciprocal_rank_is_expected_over_the_tied_order() -> None:
    # First relevant is in the tie at ranks 2-4 (1 of 3): rank 2, 3 or 4, each with probability 1/3.
    assert metrics.reciprocal_rank(RELEVANT, SCORES) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    # 4 tied songs, 2 relevant: first relevant at rank 1 w.p. 3/6, rank 2 w.p. 2/6, rank 3 w.p. 1/6.
    assert metrics.reciprocal_rank([True, False, True, False], [0.5] * 4) == pytest.approx(
        3 / 6 + (2 / 6) / 2 + (1 / 6) / 3)
    assert metrics.reciprocal_rank([False, False], [0.9, 0.8]) == 0.0
    assert metrics.reciprocal_rank([False, True], [0.9, 0.8]) == 0.5  # no ties: the textbook value


def test_ndcg_gives_tied_places_their_mean_gain() -> None:
    # @5: rank 1 gain 0; ranks 2-4 share 1 hit (mean gain 1/3); rank 5 gain 1.
    dcg = (1 / 3) * (1 / log2(3) + 1 / log2(4) + 1 / log2(5)) + 1 / log2(6)
    ideal = 1 + 1 / log2(3) + 1 / log2(4) + 1 / log2(5)  # 4 relevant songs, all at the top
    assert metrics.ndcg_at_k(RELEVANT, SCORES, 5, N_RELEVANT) == pytest.approx(dcg / ideal)
    # @3 cuts the tie after 2 of its places
    dcg3 = (1 / 3) * (1 / log2(3) + 1 / log2(4))
    ideal3 = 1 + 1 / log2(3) + 1 / log2(4)
    assert metrics.ndcg_at_k(RELEVANT, SCORES, 3, N_RELEVANT) == pytest.approx(dcg3 / ideal3)
    assert metrics.ndcg_at_k([True, True], [0.9, 0.8], 2, 2) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(RELEVANT, SCORES, 5, 0) is None


def test_label_level_precision_counts_songs_sharing_a_label() -> None:
    query = {"calm", "night"}
    song_labels = [{"calm"}, {"dance"}, {"night", "rain"}, set(), {"party"}]
    scores = [0.9, 0.8, 0.7, 0.7, 0.6]
    hits = [bool(labels & query) for labels in song_labels]  # [T, F, T, F, F]
    assert metrics.precision_at_k(hits, scores, 3) == pytest.approx((1 + 0 + 0.5) / 3)  # rank 3-4 tie: 1 hit, 1 place
    assert metrics.precision_at_k(hits, scores, 5) == pytest.approx(2 / 5)


def _orders(scores: list[float]):
    """Every order of the songs that keeps the score order (ties permuted)."""
    groups = [list(range(s, e)) for s, e in metrics.tie_groups(scores)]
    for perm in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [i for group in perm for i in group]


def test_tie_aware_values_equal_the_mean_over_every_order_of_the_ties() -> None:
    untied = [float(len(SCORES) - i) for i in range(len(SCORES))]  # distinct scores: plain textbook metrics
    for k in (1, 3, 5, 6):
        orders = list(_orders(SCORES))
        per_order = [[RELEVANT[i] for i in order] for order in orders]
        assert metrics.precision_at_k(RELEVANT, SCORES, k) == pytest.approx(
            np.mean([metrics.precision_at_k(r, untied, k) for r in per_order]))
        assert metrics.ndcg_at_k(RELEVANT, SCORES, k, N_RELEVANT) == pytest.approx(
            np.mean([metrics.ndcg_at_k(r, untied, k, N_RELEVANT) for r in per_order]))
    assert metrics.reciprocal_rank(RELEVANT, SCORES) == pytest.approx(
        np.mean([metrics.reciprocal_rank([RELEVANT[i] for i in o], untied) for o in _orders(SCORES)]))


def test_bootstrap_interval_and_paired_verdicts() -> None:
    constant = metrics.bootstrap([0.5] * 20)
    assert (constant.mean, constant.low, constant.high, constant.n) == (0.5, 0.5, 0.5, 20)
    values = np.random.default_rng(1).uniform(0, 1, 200)
    interval = metrics.bootstrap(values)
    assert interval.low < values.mean() < interval.high
    assert interval.high - interval.low < 0.15  # ~ ±1.96·0.29/√200 ≈ ±0.04
    assert metrics.bootstrap(values) == interval  # seeded: the same numbers every run
    assert metrics.bootstrap([]).n == 0 and metrics.bootstrap([]).to_json()["mean"] is None

    same = metrics.paired(values, values)
    assert same.verdict == "no difference" and not same.significant
    better = metrics.paired(values, values + 0.5)
    assert better.verdict == "B better" and better.difference.mean == pytest.approx(0.5)
    noisy = metrics.paired(values, values + np.random.default_rng(2).normal(0, 0.3, 200) + 0.001)
    assert noisy.verdict == "no difference"  # a difference well inside its interval
    assert metrics.paired([1.0, 1.0, 0.9], [0.0, 0.1, 0.0]).verdict == "B worse"
    with pytest.raises(ValueError):
        metrics.paired([1.0], [1.0, 2.0])


def test_mean_pairwise_cosine() -> None:
    e1, e2 = np.eye(3)[0], np.eye(3)[1]
    # pairs: (e1, e1) = 1, (e1, e2) = 0 twice → 1/3
    assert metrics.mean_pairwise_cosine(np.stack([e1, e1, e2])) == pytest.approx(1 / 3)
    assert metrics.mean_pairwise_cosine(np.stack([e1] * 5)) == pytest.approx(1.0)  # collapsed
    assert np.isnan(metrics.mean_pairwise_cosine(np.stack([e1])))


def test_library_health_by_hand() -> None:
    ids = ["a", "b", "c", "d"]
    library = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0]], dtype=np.float32)
    results = [["a", "b"], ["b", "a"]]
    scores = [[1.0, 0.0], [0.8, 0.6]]
    artists = {"a": "Ana", "b": "Ana", "c": "Ben", "d": None}
    health = metrics.library_health(library, queries, results, scores, artists, ids, k=2)
    assert health.songs == 4
    assert health.mean_pairwise_cosine == pytest.approx(0.0)
    # query scores over the library: [1,0,0,0] (std √3/4) and [.6,.8,0,0] (mean .35, std √0.1225... )
    q2 = np.array([0.6, 0.8, 0, 0])
    assert health.score_std == pytest.approx((np.sqrt(3) / 4 + q2.std()) / 2, rel=1e-5)
    assert health.top_gap == pytest.approx(((1.0 - 0.0) + (0.8 - 0.6)) / 2)
    assert health.artist_concentration == pytest.approx(1.0)  # both lists are all Ana
    assert health.top_artists == [("Ana", 1.0)]
    assert health.coverage == pytest.approx(0.5)  # a and b of four songs
    assert dict(health.hubs) == {"a": 1.0, "b": 1.0}  # in the top 2 of every query
    # occurrences [2, 2, 0, 0]: symmetric, skew 0
    assert health.hubness_skew == pytest.approx(0.0)
    assert health.to_json()["hubs"] == [("a", 1.0), ("b", 1.0)]


def test_boundaries_found_by_mutation_testing() -> None:
    """Each line kills a mutant that survived the tests above (docs/testing.md)."""
    assert metrics.tie_groups([0.5, 0.5 + 4e-7, 0.4]) == [(0, 2), (2, 3)]  # equal to 6 decimals is a tie
    values = np.random.default_rng(3).uniform(0, 1, 50)
    interval = metrics.bootstrap(values)
    means = values[np.random.default_rng(0).integers(0, 50, size=(2000, 50))].mean(axis=1)
    assert (interval.low, interval.high) == tuple(np.percentile(means, [2.5, 97.5]))  # 2000 samples, 95 %
    assert metrics.Interval(0.1234567, 0.0, 1.0, 3).to_json()["mean"] == 0.123457  # 6 decimals in JSON
    with pytest.raises(AttributeError):
        interval.mean = 0.0  # frozen: a report cannot change a figure after the fact
    assert metrics.paired([0.0], [1.0]).verdict == "B better"  # one query is still a comparison
    assert metrics.paired([], []).verdict == "no difference"
    assert set(metrics.paired(values, values).to_json()) == {"difference", "verdict", "significant"}
    with pytest.raises(ValueError, match=r"same queries on both sides \(1 vs 2\)"):
        metrics.paired([1.0], [1.0, 2.0])


def _health(results: list[list[str]], artists: dict[str, str | None] | None = None) -> metrics.Health:
    ids = ["a", "b", "c", "d", "e"]
    queries = np.eye(5, dtype=np.float32)[: len(results)]
    return metrics.library_health(np.eye(5, dtype=np.float32), queries, results, [[1.0, 0.5]] * len(results),
                                  artists or {}, ids, k=2)


def test_library_health_hubs_coverage_and_skew_on_an_uneven_library() -> None:
    """Cases added after mutation testing: a hub share of exactly HUB_SHARE, songs seen twice but by
    under half the queries, a skewed spread, rounding and the number of artists listed."""
    uneven = _health([["a", "b"], ["a", "c"], ["b", "d"], ["c", "a"]])  # a 3, b 2, c 2, d 1, e 0 of 4 queries
    assert uneven.hubs == [("a", 0.75), ("b", 0.5), ("c", 0.5)]  # 0.5 is a hub; the biggest first
    assert uneven.coverage == pytest.approx(0.8)
    assert uneven.hubness_skew == pytest.approx(-0.288 / 1.04 ** 1.5)  # counts [3, 2, 2, 1, 0] by hand
    few = _health([["a", "b"], ["a", "c"], ["a", "d"], ["b", "a"], ["c", "e"]])  # b and c: 2 of 5 queries
    assert few.hubs == [("a", 0.8)]
    assert _health([["a", "b"], ["a", "c"], ["d", "e"]]).hubs == [("a", 0.6667)]  # 4 decimals
    assert metrics.mean_pairwise_cosine(np.array([[1.0, 0.0], [0.6, 0.8]])) == pytest.approx(0.6)  # two suffice
    assert metrics._skewness(np.array([0.0, 0.0, 3.0])) == pytest.approx(2 / 2 ** 1.5)  # three values suffice
    assert metrics._skewness(np.array([1.0, 2.0])) == 0.0 and metrics._skewness(np.full(4, 2.0)) == 0.0
    artists = {s: f"artist {s}" for s in "abcde"}
    named = _health([["a", "b"], ["c", "d"], ["e", "a"]], artists)
    assert len(named.top_artists) == 5 and named.top_artists[0] == ("artist a", 0.3333)
    assert _health([["d", "e"]], {"a": "Ana"}).artist_concentration == 0.0  # no named artist in the list
    empty = metrics.library_health(np.eye(5, dtype=np.float32), np.zeros((0, 5), np.float32), [], [], {},
                                   ["a", "b", "c", "d", "e"], k=2)
    assert np.isnan(empty.score_std) and np.isnan(empty.top_gap) and np.isnan(empty.artist_concentration)
    assert empty.coverage == 0.0 and empty.hubs == [] and empty.top_artists == []
    nothing = metrics.library_health(np.zeros((0, 5), np.float32), np.zeros((0, 5), np.float32), [], [], {}, [], k=2)
    assert nothing.songs == 0 and np.isnan(nothing.coverage)
