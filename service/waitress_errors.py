"""waitress's own error answers (a 413 for a body over the limit, a 400 for a malformed request), which
never reach the app, with the security headers every answer of the app carries (:mod:`service.app`)."""

from __future__ import annotations

from typing import Any

import waitress
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from service.app import SECURITY_HEADERS


class _SecureErrorTask(ErrorTask):
    def execute(self) -> None:
        self.response_headers.extend(SECURITY_HEADERS.items())  # before the body: writing it sends the headers
        super().execute()


class _SecureChannel(HTTPChannel):
    error_task_class = _SecureErrorTask


def create_server(app: Any, **options: Any) -> Any:
    """``waitress.create_server(app, **options)``, its own error answers carrying the security headers."""
    listeners: dict[int, Any] = {}  # every listening socket's server registers itself here
    server = waitress.create_server(app, map=listeners, **options)
    for listener in listeners.values():
        listener.channel_class = _SecureChannel
    return server
