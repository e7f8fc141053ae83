"""waitress's request threads, and one more kept for ``GET /api/health``.

A request waits for a free thread of waitress's pool, so a health check behind eight slow uploads waited
for one of them to end (54 s behind eight decode bombs, 1.3 s behind 32 clients). Health checks (Docker's,
a load balancer's, the page's) get a thread of their own: they answer while every other thread is busy,
and a flood of them takes no thread from the uploads.
"""

from __future__ import annotations

from waitress.task import ThreadedTaskDispatcher

HEALTH = frozenset({("GET", "/api/health"), ("HEAD", "/api/health")})


class HealthLaneDispatcher(ThreadedTaskDispatcher):
    """waitress's dispatcher with ``threads`` threads for requests and one for health checks.

    waitress hands it a connection whose first request is complete (``create_server(_dispatcher=...)``)."""

    def __init__(self, threads: int) -> None:
        super().__init__()
        self.health = ThreadedTaskDispatcher()
        self.health.set_thread_count(1)
        self.set_thread_count(threads)

    def add_task(self, task: object) -> None:
        if is_health_check(task):
            self.health.add_task(task)
        else:
            super().add_task(task)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        self.health.shutdown(cancel_pending, timeout)
        return super().shutdown(cancel_pending, timeout)


def is_health_check(task: object) -> bool:
    """Whether a waitress connection's next request is a well-formed health check."""
    requests = getattr(task, "requests", None)
    if not requests:
        return False
    request = requests[0]
    return request.error is None and (getattr(request, "command", None), getattr(request, "path", None)) in HEALTH
