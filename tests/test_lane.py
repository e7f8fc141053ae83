"""The model lane: calls from any thread run on the thread that serves it, one after another."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from image2mood.models.lane import ModelLane


def test_inline_until_served_then_on_the_serving_thread_only() -> None:
    lane = ModelLane()
    assert lane.run(threading.get_ident) == threading.get_ident()  # nobody serves: inline

    stop = threading.Event()
    server = threading.Thread(target=lane.serve, args=(stop.is_set,))
    server.start()
    try:
        while lane._owner is None:
            pass
        running: list[int] = []

        def job(n: int) -> tuple[int, int]:
            running.append(n)
            assert len(running) == 1  # never two at once
            running.remove(n)
            return n, threading.get_ident()

        with ThreadPoolExecutor(8) as callers:
            results = list(callers.map(lambda n: lane.run(lambda: job(n)), range(40)))
        assert [n for n, _ in results] == list(range(40))
        assert {ident for _, ident in results} == {server.ident}
        with pytest.raises(ZeroDivisionError):
            lane.run(lambda: 1 / 0)  # raised in the caller's thread
        assert lane.run(lambda: lane.run(threading.get_ident)) == server.ident  # nested: no deadlock
    finally:
        stop.set()
        server.join()
    assert lane.run(threading.get_ident) == threading.get_ident()  # inline again once served no more
