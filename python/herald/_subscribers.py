"""Subscribers written in Python (`BaseSubscriber`) and the registry that runs them, on its own
bus or on a worker's."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Optional, TypeVar, Union

from . import _herald
from ._bus import EventBus
from ._herald import DomainEvent, Pattern, RegistryError, StateError
from ._hooks import SUBSCRIBER_HOOKS, SubscriberResult, instantiate, overrides, registry_method
from ._loop import LoopRunner
from ._types import JSONDict, MaybeAwaitable

_T = TypeVar("_T")

live_subscriber_registries: "weakref.WeakSet[SubscriberRegistry]" = weakref.WeakSet()
"""Every registry alive, so that interpreter exit can stop those started on their own."""


class BaseSubscriber:
    """Base of Python subscribers. Implement subscribes_to() and handle(); each hook may be
    ``async def``. Per event, one at a time per subscriber and in publish order:
    before_handle (False skips) -> handle -> after_handle(event, result); an exception from any
    goes to on_handle_error(event, error) as the original object.

    Optional class attributes: capacity, overflow ("block", "drop_newest", "drop_oldest"),
    block_timeout and slow_threshold (seconds), failure_threshold and cooldown (circuit breaker).
    """

    subscriber_name: str = ""
    capacity: Optional[int] = None
    overflow: Optional[str] = None
    block_timeout: Optional[float] = None
    slow_threshold: Optional[float] = None
    failure_threshold: Optional[int] = None
    cooldown: Optional[float] = None

    def subscribes_to(self) -> MaybeAwaitable[list[str]]:
        raise NotImplementedError(f"{type(self).__name__}.subscribes_to")

    def handle(self, event: DomainEvent) -> MaybeAwaitable[Union[SubscriberResult, bool, None]]:
        raise NotImplementedError(f"{type(self).__name__}.handle")

    def before_handle(self, event: DomainEvent) -> MaybeAwaitable[Optional[bool]]:
        return True

    def after_handle(self, event: DomainEvent, result: SubscriberResult) -> MaybeAwaitable[None]:
        return None

    def on_handle_error(self, event: DomainEvent, error: BaseException) -> MaybeAwaitable[None]:
        return None

    def on_start(self) -> MaybeAwaitable[None]:
        return None

    def on_stop(self) -> MaybeAwaitable[None]:
        return None

    def health_check(self) -> MaybeAwaitable[bool]:
        return True


class SubscriberRegistry:
    """Named subscribers. Used by a Worker (which starts and stops them on its bus), or on its
    own: ``start_all()`` attaches them to `bus` (an EventBus it creates when none was given).
    Thread safe."""

    _instance: Optional[SubscriberRegistry] = None
    _instance_lock = threading.Lock()

    def __init__(self, bus: Optional[EventBus] = None) -> None:
        self._lock = threading.RLock()
        # name -> (subscriber, adapter)
        self._entries: dict[str, tuple[Any, _herald._SubscriberAdapter]] = {}
        self._bus = bus
        self._own_bus: Optional[EventBus] = None
        self._native: Optional[_herald._SubscriberRegistry] = None  # once started on its own
        self._worker: Optional[_herald._Worker] = None  # the native worker it is attached to
        self._last_worker: Optional[_herald._Worker] = None
        self._runner = LoopRunner("subscribers")
        live_subscriber_registries.add(self)

    @classmethod
    def instance(cls) -> SubscriberRegistry:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @registry_method
    def reset(self) -> None:
        """Stops what it started on its own, detaches from any worker, forgets every subscriber."""
        with self._lock:
            native, self._native = self._native, None
            own_bus, self._own_bus = self._own_bus, None
            self._entries.clear()
            self._worker = self._last_worker = None
            self._runner.delegate(None)
        if native is not None:
            native.stop_all(0.0)
        if own_bus is not None:
            own_bus.close(0.0)

    @staticmethod
    def _options(obj: object) -> JSONDict:
        out = {}
        for key in ("capacity", "overflow", "block_timeout", "slow_threshold", "failure_threshold", "cooldown"):
            value = getattr(obj, key, None)
            if value is not None:
                out[key] = value
        return out

    def register(self, cls_or_instance: _T) -> _T:
        """Registers a subscriber class (instantiated without arguments) or instance; returns the
        argument. Raises RegistryError for a duplicate name, PatternError for a bad pattern. After
        start (standalone or by a worker) the subscriber starts at once."""
        obj = instantiate(cls_or_instance)
        if not getattr(obj, "subscriber_name", None):
            raise RegistryError(f"subscriber {type(obj).__name__} has no subscriber_name")
        adapter = _herald._SubscriberAdapter(obj, self._runner, overrides(obj, BaseSubscriber, SUBSCRIBER_HOOKS),
                                             self._options(obj))
        for pattern in adapter.patterns:
            Pattern(pattern)  # PatternError now, naming the pattern
        with self._lock:
            if adapter.name in self._entries:
                raise RegistryError(f"subscriber '{adapter.name}' is already registered")
            self._entries[adapter.name] = (obj, adapter)
            native, worker = self._native, self._worker
        try:
            if native is not None:
                native.register(adapter)
            elif worker is not None:
                worker.add_subscriber(adapter)
        except BaseException:
            with self._lock:
                self._entries.pop(adapter.name, None)
            raise
        return cls_or_instance

    def get(self, name: str) -> Any:
        with self._lock:
            entry = self._entries.get(name)
        return entry[0] if entry else None

    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    @property
    def bus(self) -> Optional[EventBus]:
        return self._bus or self._own_bus

    def start_all(self) -> int:
        """Starts every subscriber on the registry's bus; returns how many started. Does nothing
        (returns 0) when already started or managed by a worker."""
        with self._lock:
            if self._native is not None or self._worker is not None:
                return 0
            bus = self._bus
            if bus is None:
                bus = self._own_bus = EventBus(name="subscribers")
            self._runner.delegate(bus._runner)
            self._native = _herald._SubscriberRegistry(bus._native)
            adapters = [adapter for _, adapter in self._entries.values()]
            native = self._native
        for adapter in adapters:
            native.register(adapter)
        return native.start_all()

    def stop_all(self, timeout: float = 5.0) -> JSONDict:
        """Drains (up to `timeout` seconds) and stops the subscribers it started on its own."""
        with self._lock:
            native, own_bus = self._native, self._own_bus
        if native is None:
            return {"success": True, "events_drained": 0, "undelivered": 0, "duration_ms": 0}
        report = native.stop_all(timeout)
        if own_bus is not None:
            own_bus.close(timeout)
        return report

    def stats(self) -> JSONDict:
        """{name: {received, handled, failed, dropped, in_flight, ...}}."""
        with self._lock:
            native, worker, names = self._native, self._worker or self._last_worker, list(self._entries)
        if native is not None:
            return native.stats()
        if worker is not None and worker.state not in ("INITIALIZING", "STARTING"):
            try:
                return worker.subscriber_stats()
            except StateError:
                pass
        return {name: {"state": "registered"} for name in names}

    def health(self) -> JSONDict:
        with self._lock:
            native, worker = self._native, self._worker
        if native is not None:
            return native.health()
        if worker is not None:
            subscribers: JSONDict = worker.health().get("subscribers", {})
            return subscribers
        return {"healthy": True, "subscribers": {}}

    # A worker takes the registry over while it runs.
    def _attach(self, worker: _herald._Worker, runner: LoopRunner) -> None:
        with self._lock:
            if self._native is not None:
                raise StateError("subscriber registry already started on its own bus")
            self._worker, self._last_worker = worker, None
            self._runner.delegate(runner)
            adapters = [adapter for _, adapter in self._entries.values()]
        for adapter in adapters:
            worker.add_subscriber(adapter)

    def _detach(self, worker: _herald._Worker) -> None:
        with self._lock:
            if self._worker is worker:
                self._worker = None
                self._last_worker = worker  # stats() keeps showing its final counters
                self._runner.delegate(None)
