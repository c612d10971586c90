"""Interpreter exit: stop what is still running before Python finalizes (C++ threads must not
reach for a finalizing interpreter). Importing this module registers the handler; herald's
__init__ imports it before the durable module, whose own handler must run first (atexit runs
last in, first out)."""
from __future__ import annotations

import atexit

from ._bus import live_buses
from ._log import log_exception, logger
from ._loop import live_runners
from ._subscribers import live_subscriber_registries
from ._transports import live_zmq
from ._worker import WorkerState, live_workers


def _shutdown_at_exit() -> None:
    for worker in list(live_workers):
        if worker.state in (WorkerState.RUNNING, WorkerState.STARTING, WorkerState.ERROR,
                            WorkerState.STOPPING):
            try:
                logger.info("herald: stopping worker '%s' at interpreter exit", worker.name)
                worker.stop()
            except BaseException as exc:  # noqa: BLE001 - exit must go on
                log_exception(f"herald: stopping worker '{worker.name}' at exit failed", exc)
    for sub in list(live_zmq):
        try:
            sub.stop()
        except BaseException:  # noqa: BLE001
            pass
    for registry in list(live_subscriber_registries):
        try:
            registry.stop_all(1.0)
        except BaseException:  # noqa: BLE001
            pass
    for bus in list(live_buses):
        try:
            bus.close(1.0)
        except BaseException:  # noqa: BLE001
            pass
    for runner in list(live_runners):
        runner.close(1.0)


atexit.register(_shutdown_at_exit)
