"""A photo's query in CLAP space, step by step: its image route through the projection head, the two routes
fused by ``alpha``, and the pull of the moods its faces show. Pure functions: the recommender and the tuning
tool call the same ones."""

from __future__ import annotations

import numpy as np
import torch

from image2mood.models.projection import ProjectionHead
from image2mood.moods import MoodSpace
from image2mood.vectors import l2_normalise

FACE_WEIGHT = 0.5  # how far a clear facial expression pulls the query towards its mood


def project(head: ProjectionHead, clip_vector: np.ndarray) -> np.ndarray:
    """A photo's image route: its CLIP vector mapped into CLAP space by the projection head."""
    with torch.inference_mode():
        return head(torch.from_numpy(clip_vector)[None]).numpy()[0]


def fuse(text_route: np.ndarray, image_route: np.ndarray | None,
         alpha: float) -> tuple[np.ndarray, str, float, str | None]:
    """A photo's query from its two routes: (vector, route, the alpha used, a note for the person).

    ``alpha`` weighs the image route; without one (no projection head) the caption route alone serves.
    """
    if image_route is None:
        return text_route, "caption", 0.0, "no projection checkpoint is configured: the caption alone chose the songs"
    route = "caption" if alpha == 0 else "image" if alpha == 1 else "fused"
    return l2_normalise(alpha * image_route + (1 - alpha) * text_route), route, alpha, None


def face_pull(query: np.ndarray, mood_weights: dict[str, float], moods: MoodSpace,
              weight: float = FACE_WEIGHT) -> np.ndarray:
    """The query pulled towards the moods faces show (mood key → how strongly), scaled by ``weight``."""
    if not mood_weights:
        return query
    return l2_normalise(query + weight * sum(w * moods.vector(mood) for mood, w in mood_weights.items()))
