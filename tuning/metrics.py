"""Ranking metrics (tie-aware), bootstrap intervals, paired comparisons, and the library's health.

Ties: songs with equal scores have no order of their own (the store may return them either way), so
every ranking metric is the expected value over all orders of each tied group (McSherry & Najork,
"Computing information retrieval performance measures efficiently in the presence of tied scores").
Without ties these are the textbook definitions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
import math
from math import comb, log2

import numpy as np

TIE_DECIMALS = 6  # scores equal to this many decimals are a tie
BOOTSTRAP_SAMPLES = 2000
HUB_SHARE = 0.5  # a song in the top K of at least this share of the queries is a hub


def tie_groups(scores: Sequence[float]) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of equal scores in a ranking (best first)."""
    rounded = np.round(np.asarray(scores, dtype=np.float64), TIE_DECIMALS)
    groups, start = [], 0
    for i in range(1, len(rounded) + 1):
        if i == len(rounded) or rounded[i] != rounded[start]:
            groups.append((start, i))
            start = i
    return groups


def expected_hits(relevant: Sequence[bool], scores: Sequence[float], k: int) -> float:
    """Relevant songs expected in the top ``k``: a tied group cut by ``k`` counts pro rata."""
    rel = np.asarray(relevant, dtype=bool)
    hits = 0.0
    for start, end in tie_groups(scores):
        if start >= k:
            break
        hits += rel[start:end].sum() * (min(end, k) - start) / (end - start)
    return float(hits)


def precision_at_k(relevant: Sequence[bool], scores: Sequence[float], k: int) -> float:
    """Share of the top ``k`` that is relevant (a list shorter than ``k`` still divides by ``k``)."""
    return expected_hits(relevant, scores, k) / k


def recall_at_k(relevant: Sequence[bool], scores: Sequence[float], k: int, n_relevant: int) -> float | None:
    """Share of all ``n_relevant`` relevant songs found in the top ``k``; None when none exist."""
    return None if n_relevant == 0 else expected_hits(relevant, scores, k) / n_relevant


def reciprocal_rank(relevant: Sequence[bool], scores: Sequence[float]) -> float:
    """1 / rank of the first relevant song (0 if none); expected over the orders of its tied group.

    In a tied group at ranks s+1 … s+n holding r relevant songs, the first relevant one is at rank
    s+j with probability C(n-j, r-1) / C(n, r).
    """
    rel = np.asarray(relevant, dtype=bool)
    for start, end in tie_groups(scores):
        r, n = int(rel[start:end].sum()), end - start
        if r:
            return sum(comb(n - j, r - 1) / comb(n, r) / (start + j) for j in range(1, n - r + 2))
    return 0.0


def ndcg_at_k(relevant: Sequence[bool], scores: Sequence[float], k: int, n_relevant: int) -> float | None:
    """Binary-gain nDCG@k; a tied group's positions each get the group's mean gain."""
    if n_relevant == 0:
        return None
    rel = np.asarray(relevant, dtype=float)
    dcg = 0.0
    for start, end in tie_groups(scores):
        if start >= k:
            break
        discount = sum(1 / log2(p + 2) for p in range(start, min(end, k)))
        dcg += rel[start:end].mean() * discount
    ideal = sum(1 / log2(p + 2) for p in range(min(k, n_relevant)))
    return dcg / ideal


@dataclass(frozen=True)
class Interval:
    """A mean over queries with its bootstrap 95 % interval."""

    mean: float
    low: float
    high: float
    n: int

    def to_json(self) -> dict[str, float | int | None]:
        return {key: _rounded(value) for key, value in asdict(self).items()}


def _rounded(value: object) -> object:
    """A float for JSON: 6 decimals, NaN (undefined) as None."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def _resample_indices(n: int, samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def bootstrap(values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> Interval:
    """The mean of per-query values and a percentile bootstrap 95 % interval (queries resampled)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    means = v[_resample_indices(v.size, samples, seed)].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(v.mean()), float(low), float(high), int(v.size))


@dataclass(frozen=True)
class Comparison:
    """B minus A over the same queries, with the interval of the mean difference."""

    difference: Interval
    verdict: str  # "no difference", "B better", "B worse"

    @property
    def significant(self) -> bool:
        return self.verdict != "no difference"

    def to_json(self) -> dict[str, object]:
        return {"difference": self.difference.to_json(), "verdict": self.verdict, "significant": self.significant}


def paired(a: Sequence[float], b: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> Comparison:
    """Paired bootstrap of ``b - a`` per query; an interval that holds 0 is "no difference"."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs the same queries on both sides ({len(a)} vs {len(b)})")
    diff = bootstrap(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64), samples, seed)
    if diff.n == 0 or diff.low <= 0 <= diff.high:
        verdict = "no difference"
    else:
        verdict = "B better" if diff.mean > 0 else "B worse"
    return Comparison(diff, verdict)


# ---------------------------------------------------------------- library health


def mean_pairwise_cosine(vectors: np.ndarray) -> float:
    """Mean cosine between distinct L2-normalised vectors; a collapsed encoder shows above ~0.8."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    total = np.asarray(vectors, dtype=np.float64).sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))  # sum over i != j of v_i·v_j, unit vectors


@dataclass(frozen=True)
class Health:
    """How the library and the results look, independent of any relevance judgement."""

    songs: int
    mean_pairwise_cosine: float
    score_std: float  # per query, the std of its cosine to every song; mean over queries
    top_gap: float  # per query, score of the 1st minus the k-th result; mean over queries
    artist_concentration: float  # per query, the largest share of its top k held by one artist; mean
    top_artists: list[tuple[str, float]]  # artists with the largest share of all results
    coverage: float  # share of the library that appears in any top k
    hubness_skew: float  # skewness of how often each song appears in a top k (0: even; high: hubs)
    hubs: list[tuple[str, float]]  # songs in the top k of at least HUB_SHARE of the queries

    def to_json(self) -> dict[str, object]:
        return {key: _rounded(value) for key, value in asdict(self).items()}


def library_health(library: np.ndarray, queries: np.ndarray, results: Sequence[Sequence[str]],
                   result_scores: Sequence[Sequence[float]], artists: dict[str, str | None],
                   song_ids: Sequence[str], k: int) -> Health:
    """Health of a library (``library``: its vectors, rows in ``song_ids`` order) under some queries.

    ``results`` are the song ids each query got, best first; ``artists`` maps id → artist.
    """
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(library, dtype=np.float32).T
    tops = [list(r[:k]) for r in results]
    gaps = [s[0] - s[min(k, len(s)) - 1] for s in result_scores if len(s)]
    occurrences = Counter(song for top in tops for song in top)
    counts = np.array([occurrences.get(song, 0) for song in song_ids], dtype=np.float64)
    concentration, everyone = [], Counter()
    for top in tops:
        named = [artists.get(song) for song in top if artists.get(song)]
        everyone.update(named)
        if top:
            concentration.append(max(Counter(named).values(), default=0) / len(top))
    total_results = sum(len(top) for top in tops) or 1
    n_queries = max(len(tops), 1)
    return Health(
        songs=len(song_ids),
        mean_pairwise_cosine=mean_pairwise_cosine(library),
        score_std=float(scores.std(axis=1).mean()) if scores.size else float("nan"),
        top_gap=float(np.mean(gaps)) if gaps else float("nan"),
        artist_concentration=float(np.mean(concentration)) if concentration else float("nan"),
        top_artists=[(name, round(count / total_results, 4)) for name, count in everyone.most_common(5)],
        coverage=float((counts > 0).mean()) if counts.size else float("nan"),
        hubness_skew=_skewness(counts),
        hubs=sorted(((song, round(c / n_queries, 4)) for song, c in occurrences.items()
                     if c / n_queries >= HUB_SHARE and c >= 2), key=lambda item: -item[1]),
    )


def _skewness(values: np.ndarray) -> float:
    if values.size < 3 or values.std() == 0:
        return 0.0
    centred = values - values.mean()
    return float((centred ** 3).mean() / values.std() ** 3)
