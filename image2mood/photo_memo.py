"""What the models made of recent photos (caption, CLIP vector, faces), remembered by the photo's pixels.

The same photo sent again (a retry, another ``top`` or ``alpha``, a shared link opened twice) skips
BLIP, CLIP and the face models; the fusion and the search still run, so the answer follows the options
and the store as they are now. A memo belongs to one :class:`~image2mood.recommend.Recommender`, whose
models are fixed for its life, so the pixels are the key, with the client that sent them: a hit is
seen (its timings are 0, its answer comes sooner), so one client must not hit on another's photo.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from PIL import Image

T = TypeVar("T")
PHOTOS_REMEMBERED = 32
KEY_STRIP_ROWS = 64


def photo_key(image: Image.Image, client: str = "") -> str:
    """A digest of the decoded photo and who sent it: the client, the photo's mode, size and pixels, read in
    strips of rows (a copy of the whole photo would double the memory its decode was allowed)."""
    digest = hashlib.blake2b(f"{client}\0{image.mode}:{image.size}".encode(), digest_size=20)
    width, height = image.size
    for top in range(0, height, KEY_STRIP_ROWS):
        digest.update(image.crop((0, top, width, min(height, top + KEY_STRIP_ROWS))).tobytes())
    return digest.hexdigest()


class PhotoMemo:
    """A least-recently-used memory of per-photo model outputs, safe to use from several threads."""

    def __init__(self, photos: int = PHOTOS_REMEMBERED) -> None:
        self.photos = photos
        self._parts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, part: str, make: Callable[[], T]) -> T:
        """The remembered ``part`` of the photo ``key``, else ``make()``'s result, remembered."""
        with self._lock:
            parts = self._parts.get(key)
            if parts is not None and part in parts:
                self._parts.move_to_end(key)
                return parts[part]
        value = make()  # outside the lock: other photos are not held up by this one's models
        with self._lock:
            self._parts.setdefault(key, {})[part] = value
            self._parts.move_to_end(key)
            while len(self._parts) > self.photos:
                self._parts.popitem(last=False)
        return value
