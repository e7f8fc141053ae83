"""What a CLAP model folder says about itself, read from its JSON files without importing torch.

The indexer needs a model's sample rate (to decode) and what a store records (name, fingerprint,
dimension, preprocessing) before the model loads, so that decoding runs while torch imports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from image2mood.errors import ModelLoadError
from image2mood.models.fingerprint import model_fingerprint
from image2mood.models.resolve import ResolvedModel

AUDIO_PREPROCESSING = "laion-int16/1"
"""How windows are prepared for the model, as a store records it (see ``clap.laion_quantise``)."""

DEFAULT_DIM = 512  # transformers' ClapConfig default projection, used where config.json is silent
FEATURE_DEFAULTS: dict[str, Any] = {"feature_size": 64, "sampling_rate": 48_000, "hop_length": 480, "max_length_s": 10,
                                    "fft_window_size": 1024, "frequency_min": 0, "frequency_max": 14_000,
                                    "padding": "repeatpad"}
"""transformers' ClapFeatureExtractor defaults, used where the folder's file is silent (a test holds them equal)."""


@dataclass(frozen=True)
class ClapFacts:
    """A CLAP model's identity as a store records it, and the rate its audio is decoded at."""

    name: str
    fingerprint: str
    dim: int
    sample_rate: int
    preprocessing: str = AUDIO_PREPROCESSING


def read_clap_facts(resolved: ResolvedModel) -> ClapFacts:
    """The facts of a resolved CLAP folder; a file that is not JSON is a ModelLoadError naming it."""
    config = read_json(resolved.folder / "config.json")
    features = feature_settings(resolved.folder)
    return ClapFacts(name=resolved.spec, fingerprint=model_fingerprint(resolved),
                     dim=int(config.get("projection_dim", DEFAULT_DIM)),
                     sample_rate=int(features.get("sampling_rate", FEATURE_DEFAULTS["sampling_rate"])))


def feature_settings(folder: Path) -> dict[str, Any]:
    """The settings of the folder's feature extractor, as its file holds them (empty where it has none)."""
    found = read_json(folder / "preprocessor_config.json")
    if not found:  # newer transformers keep the feature extractor's settings in processor_config.json
        found = read_json(folder / "processor_config.json").get("feature_extractor", {})
    return found


def read_json(path: Path) -> dict[str, Any]:
    """A model folder's JSON object (empty where the file is missing); a ModelLoadError names a broken one."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path}: {e}; fetch the CLAP model again") from e
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path} is not a JSON object; fetch the CLAP model again")
    return value
