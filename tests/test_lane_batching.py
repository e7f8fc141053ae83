"""Dynamic batching on the model lane: calls of one model that arrive together run as one batch, each caller
gets its own item's answer, and photos answered side by side equal the same photos answered one at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from image2mood.config import Settings
from image2mood.models.lane import ModelLane
from image2mood.recommend import Recommender
from media_images import write_photo


class _Served:
    """A lane served by a thread of its own for the test's duration."""

    def __init__(self) -> None:
        self.lane, self._stop = ModelLane(), threading.Event()
        self._thread = threading.Thread(target=self.lane.serve, args=(self._stop.is_set,))

    def __enter__(self) -> ModelLane:
        self._thread.start()
        while self.lane._owner is None:
            pass
        return self.lane

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_calls_arriving_together_run_as_one_batch_each_getting_its_answer() -> None:
    batches: list[list[int]] = []
    gate = threading.Event()

    def square(items: list[int]) -> list[int]:
        batches.append(list(items))
        return [i * i for i in items]

    with _Served() as lane:
        blocker = threading.Thread(target=lane.run, args=(gate.wait,))  # holds the lane while the calls queue
        blocker.start()
        with ThreadPoolExecutor(6) as callers:
            answers = [callers.submit(lane.batch, "square", n, square) for n in range(6)]
            while lane._jobs.qsize() < 6:
                pass
            gate.set()
            assert [a.result() for a in answers] == [n * n for n in range(6)]
        blocker.join()
        assert sorted(batches[0]) == list(range(6))  # one batch of all six
        assert lane.batch("square", 7, square) == 49 and batches[-1] == [7]  # alone: a batch of one
        with pytest.raises(ZeroDivisionError):
            lane.batch("div", 0, lambda items: [1 / i for i in items])  # raised in the caller's thread
        assert lane.run(lambda: lane.batch("square", 3, square)) == 9  # nested on the lane: inline


def test_other_work_queued_during_a_batch_still_runs_in_order() -> None:
    order: list[str] = []
    gate = threading.Event()
    with _Served() as lane:
        blocker = threading.Thread(target=lane.run, args=(gate.wait,))
        blocker.start()
        with ThreadPoolExecutor(3) as callers:
            first = callers.submit(lane.batch, "a", 1, lambda items: [order.append(f"a{len(items)}")] * len(items))
            while lane._jobs.qsize() < 1:
                pass
            other = callers.submit(lane.run, lambda: order.append("run"))
            while lane._jobs.qsize() < 2:
                pass
            second = callers.submit(lane.batch, "a", 2, lambda items: [order.append(f"a{len(items)}")] * len(items))
            while lane._jobs.qsize() < 3:
                pass
            gate.set()
            first.result(), other.result(), second.result()
        blocker.join()
    assert order == ["a2", "run"]  # the two "a" calls together, the plain call after them


def test_a_batch_waits_for_company_only_while_another_request_is_under_way(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import image2mood.models.lane as lane_module

    monkeypatch.setattr(lane_module, "BATCH_WAIT_S", 5.0)  # far above what any step here takes
    batches: list[list[int]] = []

    def record(items: list[int]) -> list[int]:
        batches.append(list(items))
        return items

    with _Served() as lane, ThreadPoolExecutor(2) as callers:
        started = time.monotonic()
        with lane.request():  # one request alone: its batch runs at once
            assert callers.submit(lane.batch, "a", 1, record).result() == 1
        assert time.monotonic() - started < 2.5
        with lane.request(), lane.request():  # two under way: the first call waits for the second
            first = callers.submit(lane.batch, "a", 2, record)
            while lane._jobs.qsize() or not first.running():
                pass
            time.sleep(0.2)
            second = callers.submit(lane.batch, "a", 3, record)
            assert (first.result(), second.result()) == (2, 3)
    assert batches == [[1], [2, 3]]


def test_a_small_batch_lets_other_work_go_first_and_later_calls_of_its_model_join_it() -> None:
    """Six requests under way, two of their "a" calls queued before other work: the two let it run first, and a
    third "a" call that arrives meanwhile joins them (a batch of the two, then one, would cost twice)."""
    from contextlib import ExitStack

    batches: list[list[int]] = []
    order: list[str] = []
    gate = threading.Event()

    def record(items: list[int]) -> list[int]:
        batches.append(list(items))
        order.append("a")
        return items

    with _Served() as lane, ThreadPoolExecutor(4) as callers, ExitStack() as under_way:
        for _ in range(6):
            under_way.enter_context(lane.request())
        blocker = threading.Thread(target=lane.run, args=(gate.wait,))
        blocker.start()
        first = callers.submit(lane.batch, "a", 1, record)
        while lane._jobs.qsize() < 1:
            pass
        second = callers.submit(lane.batch, "a", 2, record)
        while lane._jobs.qsize() < 2:
            pass

        def other_work() -> None:  # meanwhile another request's call of "a" arrives
            order.append("run")
            third = callers.submit(lane.batch, "a", 3, record)
            while lane._jobs.qsize() < 1:
                pass
            other_work.third = third  # type: ignore[attr-defined]

        plain = callers.submit(lane.run, other_work)
        while lane._jobs.qsize() < 3:
            pass
        gate.set()
        assert (first.result(), second.result(), plain.result(), other_work.third.result()) == (1, 2, None, 3)
        blocker.join()
    assert order == ["run", "a"] and batches == [[1, 2, 3]]


def test_two_small_batches_do_not_pass_the_turn_back_and_forth(monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from contextlib import ExitStack

    import image2mood.models.lane as lane_module

    monkeypatch.setattr(lane_module, "MAX_DEFER_S", 5.0)
    gate = threading.Event()
    with _Served() as lane, ThreadPoolExecutor(2) as callers, ExitStack() as under_way:
        for _ in range(6):
            under_way.enter_context(lane.request())
        blocker = threading.Thread(target=lane.run, args=(gate.wait,))
        blocker.start()
        calls = []
        for n, kind in enumerate("ab"):
            calls.append(callers.submit(lane.batch, kind, n, lambda items: items))
            while lane._jobs.qsize() < n + 1:
                pass
        started = time.monotonic()
        gate.set()
        assert [call.result() for call in calls] == [0, 1]
        assert time.monotonic() - started < 2.5  # one goes behind the other once, then both run
        blocker.join()


def _library(settings: Settings) -> None:
    """30 random songs in the settings' store, so that answers have songs to rank."""
    import uuid

    from image2mood.library import store_info
    from image2mood.models import factory
    from image2mood.store import open_store
    from image2mood.store.base import Song

    encoder = factory.clap_encoder(settings)
    vectors = np.random.default_rng(3).standard_normal((30, encoder.dim)).astype(np.float32)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        store.upsert([Song(id=str(uuid.UUID(int=i + 1)), path=f"/m/{i}.mp3", content_hash=str(i), title=f"s{i}",
                           duration=200.0, vector=v / np.linalg.norm(v)) for i, v in enumerate(vectors)])


def test_photos_answered_side_by_side_equal_the_same_photos_one_at_a_time(tmp_path: Path, settings: Settings,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from image2mood.models import factory

    _library(settings)
    photos = [Image.open(write_photo(tmp_path / f"p{i}.jpg", color=(200, 40 + 50 * i, 90 - 20 * i))).convert("RGB")
              for i in range(4)]
    alone = Recommender.open(settings)
    singles = [alone.for_photo(photo) for photo in photos]
    alone.store.close()
    captioner, sizes = factory.captioner(settings), []
    real_features = captioner.features  # each batch of photos that joins the captions under way
    monkeypatch.setattr(captioner, "features", lambda images: sizes.append(len(images)) or real_features(images))
    with _Served() as lane:
        together_recommender = Recommender.open(settings, lane)
        gate = threading.Event()
        blocker = threading.Thread(target=lane.run, args=(gate.wait,))  # the photos arrive while the lane is busy
        blocker.start()
        with ThreadPoolExecutor(4) as clients:
            answers = [clients.submit(together_recommender.for_photo, photo) for photo in photos]
            while lane._jobs.qsize() < 4:
                pass
            gate.set()
            together = [a.result() for a in answers]
        blocker.join()
        together_recommender.store.close()
    assert max(sizes) > 1  # captions really ran batched
    for one, both in zip(singles, together, strict=True):
        assert one.caption == both.caption
        assert np.allclose(one.vector, both.vector, atol=1e-3)
        assert [s.song.id for s in one.songs] == [s.song.id for s in both.songs] and one.songs


def test_batches_hold_one_model_and_at_most_max_batch_and_the_rest_keeps_its_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Queued b1, a1, X, a2, a3, b2 (X a plain call), two to a batch: b's batch takes b2 past the others, then a's
    batch a1 and a2, then X, which was queued before a3, then a3 alone."""
    import image2mood.models.lane as lane_module

    monkeypatch.setattr(lane_module, "MAX_BATCH", 2)
    order: list[str] = []
    gate = threading.Event()

    def work(kind: str) -> Callable[[list[int]], list[int]]:
        return lambda items: order.append(f"{kind}{items}") or items

    with _Served() as lane, ThreadPoolExecutor(6) as callers:
        blocker = threading.Thread(target=lane.run, args=(gate.wait,))
        blocker.start()
        calls = []
        for queued, (kind, n) in enumerate([("b", 1), ("a", 1), ("X", 0), ("a", 2), ("a", 3), ("b", 2)]):
            call = ((lambda: order.append("X")) if kind == "X" else None)
            calls.append(callers.submit(lane.run, call) if call else callers.submit(lane.batch, kind, n, work(kind)))
            while lane._jobs.qsize() < queued + 1:
                pass
        gate.set()
        [call.result() for call in calls]
        blocker.join()
    assert order == ["b[1, 2]", "a[1, 2]", "X", "a[3]"]
