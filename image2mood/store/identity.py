"""What built a store's vectors (:class:`StoreInfo`), and whether a configuration may read or write it.

A store knows its CLAP model by a fingerprint of the weights, not by the folder or hub id they were
reached by; the name is kept for people. Readers take songs windowed any way; writers must window as
the store's songs were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from image2mood.errors import Image2MoodError, StoreMismatchError

LEGACY_PREPROCESSING = "raw-float32/0"
"""The audio preprocessing of stores that record none: windows went to the log-mel as decoded."""


Access = Literal["read", "write"]
"""Why a store is opened: to read it (search, list, serve: songs windowed any way will do) or to write
songs into it (index, a migration's target: they must be windowed as the store's are)."""


@dataclass(frozen=True)
class StoreInfo:
    """What built the vectors in a store; vectors built otherwise cannot be mixed with them."""

    clap_model: str
    """The CLAP model as configured when the store was made (a folder or hub id): shown, and compared
    only when a fingerprint is missing."""
    clap_fingerprint: str | None
    """The CLAP weights' :func:`~image2mood.models.fingerprint.model_fingerprint`, which the same weights
    keep wherever they lie; None in a record written before it was recorded."""
    dim: int
    windowing: str
    preprocessing: str
    """How audio windows were prepared for CLAP (e.g. ``"laion-int16/1"``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreInfo:
        """Read a recorded info; an older record lacks the fingerprint (None) or the preprocessing (the legacy one)."""
        fingerprint = data.get("clap_fingerprint")
        return cls(clap_model=str(data["clap_model"]),
                   clap_fingerprint=None if fingerprint is None else str(fingerprint),
                   dim=int(data["dim"]), windowing=str(data["windowing"]),
                   preprocessing=str(data.get("preprocessing", LEGACY_PREPROCESSING)))

    def describe(self) -> str:
        weights = f"weights {self.clap_fingerprint}" if self.clap_fingerprint else "weights not recorded"
        return (f"CLAP model {self.clap_model!r} ({weights}, dim {self.dim}, windowing {self.windowing}, "
                f"audio preprocessing {self.preprocessing})")


def windowing_label(windows_per_song: int, window_seconds: float) -> str:
    """The canonical ``windowing`` string, e.g. ``"6x10.0s"``."""
    return f"{windows_per_song or 'all'}x{float(window_seconds)}s"


def check_info(location: str, recorded: StoreInfo, wanted: StoreInfo | None, access: Access) -> StoreInfo:
    """Check what the configuration would build (``wanted``) against what built the store (``recorded``);
    return the record the store keeps: ``recorded``, or for a writer an old record with the fingerprint added.

    Raises StoreMismatchError, with the fix, for other CLAP weights (by fingerprint: a model moved or
    reached by another name is the same), another dimension or preprocessing, or, for a writer only,
    another windowing (a reader's queries do not depend on how the songs were windowed).
    """
    if wanted is None or wanted == recorded:
        return recorded
    same_weights, unknown = _same_weights(recorded, wanted)
    differs = (same_weights is False or recorded.dim != wanted.dim
               or (access == "write" and recorded.windowing != wanted.windowing))
    reindex = "Re-index the library into a new store: `image2mood index MUSIC_DIR --store NEW`"
    if not differs and same_weights is None:
        raise StoreMismatchError(
            f"the store at {location} records its CLAP model by name only ({recorded.clap_model!r}, as image2mood "
            f"did before it recorded a fingerprint of the weights), and that name finds no model here ({unknown}), "
            f"so whether the configured {wanted.clap_model!r} has the same weights cannot be told. Run "
            f"`image2mood index` once with IMAGE2MOOD_CLAP_MODEL={recorded.clap_model} where that model is (it "
            f"records the fingerprint; the store then opens with the same weights anywhere), or re-index the "
            f"library into a new store: `image2mood index MUSIC_DIR --store NEW`.")
    if not differs and recorded.preprocessing == wanted.preprocessing:
        if access == "write" and recorded.clap_fingerprint is None:
            return replace(recorded, clap_fingerprint=wanted.clap_fingerprint)
        return recorded
    if not differs:
        fix = (f"this version of image2mood prepares audio as {wanted.preprocessing}, as LAION-CLAP does "
               f"(clipped to ±1 and rounded through int16). {reindex}, or remove the old store and index "
               "again into its place.")
    else:
        fix = (f"{reindex}, or set IMAGE2MOOD_CLAP_MODEL (and IMAGE2MOOD_WINDOWS_PER_SONG / "
               "IMAGE2MOOD_WINDOW_SECONDS) back to what built it.")
    raise StoreMismatchError(
        f"the store at {location} was built with {recorded.describe()}, but the configuration now says "
        f"{wanted.describe()}; its vectors cannot be mixed. {fix}"
    )


def _same_weights(recorded: StoreInfo, wanted: StoreInfo) -> tuple[bool | None, str]:
    """Whether the same CLAP weights made both, by fingerprint; a side without one (an old record) by the
    fingerprint of the model its name finds here. (None, why) when that name finds none."""
    if recorded.clap_fingerprint and wanted.clap_fingerprint:
        return recorded.clap_fingerprint == wanted.clap_fingerprint, ""
    if recorded.clap_model == wanted.clap_model:
        return True, ""
    try:
        return weights_fingerprint(recorded) == weights_fingerprint(wanted), ""
    except (Image2MoodError, OSError) as exc:
        return None, getattr(exc, "reason", None) or str(exc)


def weights_fingerprint(info: StoreInfo) -> str:
    """The CLAP weights' fingerprint ``info`` records, or for an old record, that of the model its name
    finds here (never downloaded; ModelNotFoundError when it finds none)."""
    if info.clap_fingerprint:
        return info.clap_fingerprint
    from image2mood.models.fingerprint import spec_fingerprint  # no hub client for stores that need none

    return spec_fingerprint("clap", info.clap_model)
