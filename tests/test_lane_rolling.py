"""Continuous batching on the model lane (:meth:`ModelLane.join`): items join work under way between its steps,
each is answered as soon as it finishes, other calls run between steps, and a failing step fails only the
items it held."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor

import pytest

from image2mood.models.lane import ModelLane
from test_lane_batching import _Served


class Countdown:
    """Rolling work: item ``n`` finishes after ``n`` steps, answering ``n * 10``; records what happens."""

    def __init__(self, log: list[tuple[str, int]], fail_at: int | None = None,
                 permits: threading.Semaphore | None = None) -> None:
        self.left: dict[Hashable, int] = {}
        self.answers: dict[Hashable, int] = {}
        self.log, self.fail_at, self.steps, self.permits = log, fail_at, 0, permits

    def join(self, items: list[int]) -> list[Hashable]:
        self.log.append(("join", len(items)))
        keys = [object() for _ in items]
        for key, n in zip(keys, items, strict=True):
            self.left[key], self.answers[key] = n, n * 10
        return keys

    def step(self) -> dict[Hashable, int]:
        if self.permits is not None:  # each step waits for the test to allow it
            self.permits.acquire()
        self.steps += 1
        if self.steps == self.fail_at:
            raise RuntimeError("step failed")
        self.log.append(("step", len(self.left)))
        for key in self.left:
            self.left[key] -= 1
        finished = {key: self.answers[key] for key, n in self.left.items() if n == 0}
        for key, answer in finished.items():
            del self.left[key]
            self.log.append(("done", answer))
        return finished


def _queued(lane: ModelLane, count: int) -> None:
    while lane._jobs.qsize() < count:
        pass


def test_items_join_work_under_way_and_are_answered_as_they_finish() -> None:
    log: list[tuple[str, int]] = []
    permits = threading.Semaphore(0)
    work = Countdown(log, permits=permits)

    def join(n: int) -> int:
        return lane.join("count", n, lambda: work)

    with _Served() as lane, ThreadPoolExecutor(4) as callers:
        long = callers.submit(join, 6)
        permits.release(2)
        while len(log) < 3:  # joined, stepped twice, waiting in its third step
            pass
        plain = callers.submit(lane.run, lambda: log.append(("run", 0)))
        short = [callers.submit(join, n) for n in (1, 2)]
        _queued(lane, 3)
        permits.release(100)
        assert plain.result() is None and [s.result() for s in short] == [10, 20] and long.result() == 60
    assert [n for kind, n in log if kind == "done"] == [10, 20, 60]  # the short ones did not wait for the long one
    assert log[:4] == [("join", 1), ("step", 1), ("step", 1), ("step", 1)]
    assert log[4:7] == [("run", 0), ("join", 2), ("step", 3)]  # between two steps: the call, then both join
    assert sum(n for kind, n in log if kind == "step") == 6 + 1 + 2  # each item stepped until it finished


def test_a_failing_step_fails_the_items_under_way_and_the_next_join_starts_afresh() -> None:
    log: list[tuple[str, int]] = []
    made: list[Countdown] = []

    def start() -> Countdown:
        made.append(Countdown(log, fail_at=2 if not made else None))
        return made[-1]

    with _Served() as lane:
        with pytest.raises(RuntimeError, match="step failed"):
            lane.join("count", 3, start)
        assert lane.join("count", 2, start) == 20
        assert lane._owner is not None  # answered by the lane, which still serves
    assert len(made) == 2


def test_the_work_under_way_holds_at_most_max_batch_items(monkeypatch: pytest.MonkeyPatch) -> None:
    import image2mood.models.lane as lane_module

    monkeypatch.setattr(lane_module, "MAX_BATCH", 2)
    log: list[tuple[str, int]] = []
    work = Countdown(log)
    gate = threading.Event()
    with _Served() as lane, ThreadPoolExecutor(3) as callers:
        blocker = threading.Thread(target=lane.run, args=(gate.wait,))
        blocker.start()
        answers = [callers.submit(lane.join, "count", n, lambda: work) for n in (2, 2, 1)]
        _queued(lane, 3)
        gate.set()
        assert [a.result() for a in answers] == [20, 20, 10]
        blocker.join()
    assert max(n for kind, n in log if kind == "step") == 2
    assert log[:5] == [("join", 2), ("step", 2), ("step", 2), ("done", 20), ("done", 20)] and log[5] == ("join", 1)


def test_a_join_on_an_unserved_lane_runs_inline_to_its_end() -> None:
    log: list[tuple[str, int]] = []
    assert ModelLane().join("count", 3, lambda: Countdown(log)) == 30
    assert log == [("join", 1), ("step", 1), ("step", 1), ("step", 1), ("done", 30)]


def test_items_under_way_when_the_lane_stops_hear_so() -> None:
    from concurrent.futures import Future

    log: list[tuple[str, int]] = []
    permits, answer = threading.Semaphore(0), Future()
    served = _Served()
    lane = served.__enter__()

    def call() -> None:  # a daemon: were the caller never told, the test fails rather than hangs
        try:
            answer.set_result(lane.join("count", 5, lambda: Countdown(log, permits=permits)))
        except BaseException as exc:
            answer.set_exception(exc)

    threading.Thread(target=call, daemon=True).start()
    while not log:
        pass
    served._stop.set()  # the lane stops after the step it is in
    permits.release(100)
    served._thread.join()
    with pytest.raises(RuntimeError, match="the model lane stopped"):
        answer.result(timeout=10)
    assert ("step", 1) in log and ("done", 50) not in log
