"""One thread for every model call: torch's OpenMP slows down when several threads run it.

GNU OpenMP (torch's CPU threading) gives each thread that starts parallel work its own pool of workers
and, once there are more such workers than cores, stops letting them spin at barriers: every small
operation then waits in the kernel. BLIP's decoding is hundreds of small operations, so its caption took
0.42 s on the process's first thread and 0.65 s on any other, and running CLIP beside it made both
slower (measured with full-size models on 2 cores; bench/query.py). So all model work runs on one
thread, the one that loaded the models, one call after another.

A :class:`ModelLane` is inline until a thread calls :meth:`serve`: then calls from other threads are
queued to that thread and wait for their result, and calls on it run at once.

Dynamic batching (:meth:`ModelLane.batch`): calls of one model that arrive within :data:`BATCH_WAIT_S` of
each other run as one batch. A batch waits for company only while another request is under way
(:meth:`ModelLane.request`): a lone photo's answer does not pay the wait three times (CLIP, caption, CLAP
text), and calls already queued join the batch either way. A batch holding under half the requests under
way (a photo that fell out of step with the others) lets other waiting work run first, for at most
:data:`MAX_DEFER_S`, so that the others' calls of its model join it: with 8 clients a caption batch of
one, which costs about what a batch of seven does, kept one request out of step for the whole run.

On 2 cores, 8 photos in one batch took 1.08 s to caption against 3.65 s one at a time, CLIP 0.19 s against
0.37 s, CLAP's text tower 0.04 s against 0.20 s (full-size models).

Continuous batching (:meth:`ModelLane.join`): work done in steps, a caption's tokens, takes items between its
steps (:class:`Rolling`). A photo's caption joins those under way at their next token instead of waiting for
them to end and then decoding beside a few others; the lane runs the steps whenever no other call waits, and
hands each item back as soon as it is finished.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
I = TypeVar("I")
_POLL_S = 0.5  # how often serve() checks whether to stop
BATCH_WAIT_S = 0.005  # how long a batch waits for more calls of its model once the lane picks it up
MAX_BATCH = 16
MAX_DEFER_S = 1.0  # the longest a small batch lets other work go first


@dataclass
class _Batched:
    """One item for a batched model call: calls with the same ``kind`` run together through ``work``."""

    kind: str
    item: Any
    work: Callable[[list[Any]], Sequence[Any]]
    since: float = field(default_factory=time.monotonic)
    deferred: bool = False  # let other work go first once already


@dataclass
class _Joining:
    """One item for work done in steps: items with the same ``kind`` join one :class:`Rolling`, made by ``start``."""

    kind: str
    item: Any
    start: Callable[[], Rolling]


class Rolling(Protocol):
    """Work done in steps that items join and leave between steps (a caption decoder)."""

    def join(self, items: list[Any]) -> list[Hashable]:
        """Take ``items``; a key for each, in order."""

    def step(self) -> dict[Hashable, Any]:
        """One step for every item; the answers of the items that finished with it, by key."""


class ModelLane:
    """Runs callables on the thread that serves the lane (inline before one does)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[[], object] | _Batched]] = queue.SimpleQueue()
        self._owner: int | None = None
        self._requests = 0  # requests under way that call the lane (see request())
        self._requests_lock = threading.Lock()
        self._rolling: dict[str, tuple[Rolling, dict[Hashable, Future]]] = {}  # by kind: the work, its callers

    @contextmanager
    def request(self) -> Iterator[None]:
        """Mark a request (a photo's answer) under way: while another one is, batches wait for company."""
        with self._requests_lock:
            self._requests += 1
        try:
            yield
        finally:
            with self._requests_lock:
                self._requests -= 1

    def run(self, work: Callable[[], T]) -> T:
        """``work()`` on the lane's thread; its result, or its exception raised here."""
        if self._owner is None or self._owner == threading.get_ident():
            return work()
        done: Future[T] = Future()
        self._jobs.put((done, work))
        return done.result()

    def batch(self, kind: str, item: I, work: Callable[[list[I]], Sequence[T]]) -> T:
        """``work([item, ...])``'s answer for ``item``, run on the lane's thread together with the other calls
        of the same ``kind`` that arrive meanwhile; ``work`` answers each item in order."""
        if self._owner is None or self._owner == threading.get_ident():
            return work([item])[0]
        done: Future[T] = Future()
        self._jobs.put((done, _Batched(kind, item, work)))
        return done.result()

    def join(self, kind: str, item: I, start: Callable[[], Rolling]) -> T:
        """``item``'s answer from work done in steps: on the lane's thread it joins the items of the same ``kind``
        under way (one :class:`Rolling` per kind, made by ``start``) at their next step."""
        if self._owner is None or self._owner == threading.get_ident():
            rolling = start()
            (key,) = rolling.join([item])
            while True:
                if key in (answers := rolling.step()):
                    return answers[key]
        done: Future[T] = Future()
        self._jobs.put((done, _Joining(kind, item, start)))
        return done.result()

    def serve(self, until: Callable[[], bool]) -> None:
        """Run queued calls on this thread until ``until()`` is true (checked at least every 0.5 s); steps of
        work under way (:meth:`join`) whenever no call waits."""
        self._owner = threading.get_ident()
        held: deque[tuple[Future, Callable[[], object] | _Batched | _Joining]] = deque()  # taken, not yet run
        try:
            while not until():
                stepping = any(callers for _, callers in self._rolling.values())
                try:
                    done, job = held.popleft() if held else (
                        self._jobs.get_nowait() if stepping else self._jobs.get(timeout=_POLL_S))
                except queue.Empty:
                    if stepping:
                        self._step()
                    continue
                if isinstance(job, _Batched):
                    self._run_batch([(done, job)], held)
                elif isinstance(job, _Joining):
                    self._join([(done, job)], held)
                elif done.set_running_or_notify_cancel():
                    _settle(done, job)
        finally:
            self._owner = None
            for _, callers in self._rolling.values():
                for done in callers.values():
                    done.set_exception(RuntimeError("the model lane stopped"))
            self._rolling.clear()

    def _join(self, joining: list[tuple[Future, _Joining]], held: deque) -> None:
        """The calls of ``joining``'s kind held or queued now join its work under way, as many as MAX_BATCH
        allows (a full one takes a step first and leaves them held); others stay held, in order."""
        kind = joining[0][1].kind
        rolling, callers = self._rolling.get(kind) or (joining[0][1].start(), {})
        self._rolling[kind] = (rolling, callers)
        room = MAX_BATCH - len(callers)
        if room <= 0:
            held.extendleft(reversed(joining))
            self._step()
            return
        self._gather(joining, room, 0.0, held)
        joining = [entry for entry in joining if entry[0].set_running_or_notify_cancel()]
        if not joining:
            return
        try:
            keys = rolling.join([job.item for _, job in joining])
        except BaseException as exc:  # handed to every caller that was joining
            for done, _ in joining:
                done.set_exception(exc)
            return
        callers.update(zip(keys, (done for done, _ in joining), strict=True))

    def _step(self) -> None:
        """One step of each work under way; answers to the callers whose items finished."""
        for kind, (rolling, callers) in list(self._rolling.items()):
            if not callers:
                continue
            try:
                answers = rolling.step()
            except BaseException as exc:  # the work is lost: every caller hears why, and the kind starts over
                del self._rolling[kind]
                for done in callers.values():
                    done.set_exception(exc)
                continue
            for key, answer in answers.items():
                callers.pop(key).set_result(answer)

    def _run_batch(self, batch: list[tuple[Future, _Batched]], held: deque) -> None:
        """Gather the calls of ``batch``'s kind (held ones first, then those arriving within BATCH_WAIT_S), run
        them as one; other jobs taken meanwhile wait in ``held``, in order."""
        self._gather(batch, MAX_BATCH, BATCH_WAIT_S if self._requests > 1 else 0.0, held)
        if self._defer(batch, held):
            for _, job in batch:
                job.deferred = True
            held.extend(batch)  # behind the other work
            return
        batch = [entry for entry in batch if entry[0].set_running_or_notify_cancel()]
        try:
            answers = list(batch[0][1].work([job.item for _, job in batch])) if batch else []
        except BaseException as exc:  # handed to every caller of the batch
            for done, _ in batch:
                done.set_exception(exc)
            return
        for (done, _), answer in zip(batch, answers, strict=True):
            done.set_result(answer)

    def _gather(self, taken: list[tuple[Future, Any]], limit: int, wait_s: float, held: deque) -> None:
        """Add to ``taken`` (up to ``limit``) the calls of the same type and kind as its first: held ones first, then
        those queued now or arriving within ``wait_s``; other jobs taken meanwhile wait in ``held``, in order."""
        first, others = taken[0][1], deque()

        def same(job: object) -> bool:
            return type(job) is type(first) and job.kind == first.kind

        while held and len(taken) < limit:
            entry = held.popleft()
            (taken if same(entry[1]) else others).append(entry)
        deadline = time.monotonic() + wait_s
        while len(taken) < limit:
            try:
                left = deadline - time.monotonic()
                entry = self._jobs.get(timeout=left) if left > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            (taken if same(entry[1]) else others).append(entry)
        held.extendleft(reversed(others))

    def _defer(self, batch: list[tuple[Future, _Batched]], held: deque) -> bool:
        """Whether ``batch`` lets other work go first: it holds under half the requests under way, it has waited
        less than MAX_DEFER_S, and work is held that has not itself gone behind others (so two small batches
        never pass the turn back and forth)."""
        if len(batch) * 2 >= self._requests or time.monotonic() - batch[0][1].since >= MAX_DEFER_S:
            return False
        return any(not isinstance(job, _Batched) or not job.deferred for _, job in held)


def _settle(done: Future, work: Callable[[], object]) -> None:
    try:
        done.set_result(work())
    except BaseException as exc:  # handed to the caller, whatever it is
        done.set_exception(exc)
