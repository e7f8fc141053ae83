"""One thread for every model call: torch's OpenMP slows down when several threads run it.

GNU OpenMP (torch's CPU threading) gives each thread that starts parallel work its own pool of workers
and, once there are more such workers than cores, stops letting them spin at barriers: every small
operation then waits in the kernel. BLIP's decoding is hundreds of small operations, so its caption took
0.42 s on the process's first thread and 0.65 s on any other, and running CLIP beside it made both
slower (measured with full-size models on 2 cores; bench/query.py). So all model work runs on one
thread, the one that loaded the models, one call after another.

A :class:`ModelLane` is inline until a thread calls :meth:`serve`: then calls from other threads are
queued to that thread and wait for their result, and calls on it run at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")
_POLL_S = 0.5  # how often serve() checks whether to stop


class ModelLane:
    """Runs callables on the thread that serves the lane (inline before one does)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[[], object]]] = queue.SimpleQueue()
        self._owner: int | None = None

    def run(self, work: Callable[[], T]) -> T:
        """``work()`` on the lane's thread; its result, or its exception raised here."""
        if self._owner is None or self._owner == threading.get_ident():
            return work()
        done: Future[T] = Future()
        self._jobs.put((done, work))
        return done.result()

    def serve(self, until: Callable[[], bool]) -> None:
        """Run queued calls on this thread until ``until()`` is true (checked at least every 0.5 s)."""
        self._owner = threading.get_ident()
        try:
            while not until():
                try:
                    done, work = self._jobs.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if done.set_running_or_notify_cancel():
                    try:
                        done.set_result(work())
                    except BaseException as exc:  # handed to the caller, whatever it is
                        done.set_exception(exc)
        finally:
            self._owner = None
