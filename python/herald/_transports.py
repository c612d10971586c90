"""ZeroMQ between processes: `ZmqPublisher` (native) sends events, `ZmqSubscriber` receives them
into an EventBus or a running Worker's bus."""
from __future__ import annotations

import weakref
from typing import Iterable, Optional, Union

from . import _herald
from ._bus import EventBus
from ._herald import ZmqPublisher
from ._types import JSONDict
from ._worker import Worker

__all__ = ["ZmqPublisher", "ZmqSubscriber"]

live_zmq: "weakref.WeakSet[ZmqSubscriber]" = weakref.WeakSet()
"""Every ZeroMQ subscriber alive, so that interpreter exit can stop them."""


class ZmqSubscriber:
    """Receives events published over ZeroMQ (e.g. by ``herald publish`` or a worker's zeromq
    transport) into an EventBus or a running Worker's bus, where subscribers see them like local
    events. A context manager (start/stop). Thread safe (the native subscriber owns its socket
    on its own thread)."""

    def __init__(self, endpoints: Union[str, Iterable[str]], patterns: Union[str, Iterable[str]] = ("#",),
                 bus: Union[EventBus, Worker, None] = None, *, bind: bool = False,
                 dedup_capacity: int = 10_000, rcvhwm: int = 10_000, name: str = "zmq-subscriber",
                 curve_secret_key: str = "", curve_server_key: str = "",
                 curve_allow: Optional[Iterable[str]] = None) -> None:
        if isinstance(bus, Worker):
            bus = bus.bus
        if not isinstance(bus, EventBus):
            raise TypeError("ZmqSubscriber needs bus=EventBus or a started Worker")
        self.bus = bus
        endpoints = endpoints if isinstance(endpoints, str) else list(endpoints)
        patterns = patterns if isinstance(patterns, str) else list(patterns)
        self._native = _herald._ZmqSubscriber(endpoints, patterns, bus._native, bind, dedup_capacity, rcvhwm, name,
                                              curve_secret_key, curve_server_key, curve_allow)
        live_zmq.add(self)

    def start(self) -> ZmqSubscriber:
        self._native.start()
        return self

    def stop(self) -> None:
        self._native.stop()

    def stats(self) -> JSONDict:
        return self._native.stats()

    @property
    def received(self) -> int:
        return self._native.received

    @property
    def delivered(self) -> int:
        return self._native.delivered

    @property
    def gaps(self) -> int:
        return self._native.gaps

    @property
    def endpoints(self) -> list[str]:
        return self._native.endpoints

    @property
    def subscriber_id(self) -> str:
        return self._native.subscriber_id

    def __enter__(self) -> ZmqSubscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
