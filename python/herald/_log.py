"""The ``herald`` logger, rate-limited logging of user code's exceptions, the native log level.

Thread safe: C++ threads log exceptions from hooks and handlers through `log_exception`."""
from __future__ import annotations

import logging
import os
import threading
import time

from . import _herald

logger = logging.getLogger("herald")


class _RateLimit:
    """At most `burst` messages per `window` seconds; counts what it suppressed. Thread safe."""

    def __init__(self, burst: int, window: float) -> None:
        self._burst, self._window = burst, window
        self._lock = threading.Lock()
        self._start, self._count, self._suppressed = 0.0, 0, 0

    def allow(self) -> tuple[bool, int]:
        with self._lock:
            now = time.monotonic()
            if now - self._start >= self._window:
                self._start, self._count = now, 0
            self._count += 1
            if self._count > self._burst:
                self._suppressed += 1
                return False, 0
            suppressed, self._suppressed = self._suppressed, 0
            return True, suppressed


_exception_log_limit = _RateLimit(burst=20, window=1.0)


def log_exception(message: str, exc: BaseException) -> None:
    """Logs an exception raised by user code on a C++ thread (with traceback, rate limited)."""
    allowed, suppressed = _exception_log_limit.allow()
    if not allowed:
        return
    note = f" ({suppressed} similar errors suppressed)" if suppressed else ""
    if isinstance(exc, BaseException):
        logger.error("%s: %s: %s%s", message, type(exc).__name__, exc, note,
                     exc_info=(type(exc), exc, exc.__traceback__))
    else:  # the native side may hand over any object
        logger.error("%s: %r%s", message, exc, note)


def set_native_log_level(level: str) -> None:
    """Level of the C++ engine's own log on stderr: trace, debug, info, warning, error, critical
    or off. The default for Python programs is "warning" (env HERALD_LOG_LEVEL overrides)."""
    _herald.set_native_log_level(level.lower())


set_native_log_level(os.environ.get("HERALD_LOG_LEVEL", "warning"))
