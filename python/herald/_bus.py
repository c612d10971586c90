"""The in-process `EventBus`: glob-pattern subscriptions, a mailbox each, a dispatcher pool."""
from __future__ import annotations

import asyncio
import weakref
from typing import Any, Callable, Iterable, Optional, TypeVar, Union, overload

from . import _herald
from ._herald import DomainEvent, Subscription
from ._loop import LoopRunner, wait_for_room
from ._types import JSONDict

_Handler = TypeVar("_Handler", bound=Callable[[DomainEvent], Any])

live_buses: "weakref.WeakSet[EventBus]" = weakref.WeakSet()
"""Every bus alive, so that interpreter exit can close them before Python finalizes."""


class EventBus:
    """In-process publish/subscribe with glob patterns (``*`` one token, ``#``/``**`` zero or
    more). Each subscription has its own bounded mailbox; a dispatcher pool runs each one's
    events in publish order. Handlers may be ``async def``. Thread safe; a context manager
    (close() on exit).

    With ``inline=True`` there is no pool: publish() runs the matching handlers itself, on the
    calling thread and without releasing the GIL (a synchronous emitter, the fastest path from
    Python to Python).

    ``idle_spin`` (seconds, default 0) is the pool's wait strategy: above 0, a dispatcher that
    drained a subscription's mailbox watches it that long for the next event instead of
    sleeping at once (lower latency for a steady stream, at the cost of CPU and of throughput
    under saturation; see BusOptions::idle_spin)."""

    _native: _herald._EventBus
    _runner: LoopRunner
    _owned: bool

    def __init__(self, dispatcher_threads: Optional[int] = None, *, inline: bool = False,
                 batch_size: int = 64, name: str = "bus", idle_spin: float = 0.0) -> None:
        self._native = _herald._EventBus(dispatcher_threads or 0, inline, batch_size, name, idle_spin)
        self._runner = LoopRunner(name)
        self._owned = True
        self._bind_publish()
        live_buses.add(self)

    @classmethod
    def _wrap(cls, native: _herald._EventBus, runner: LoopRunner) -> EventBus:
        bus = cls.__new__(cls)
        bus._native, bus._runner, bus._owned = native, runner, False
        bus._bind_publish()
        return bus

    def _bind_publish(self) -> None:
        # publish() is the per-event call: the instance gets the native function itself, which
        # saves a Python frame per event. A subclass that overrides publish keeps its override
        # (and reaches the native function through super().publish).
        self._publish = self._native.publish_function()
        if type(self).publish is EventBus.publish:
            self.publish = self._publish  # type: ignore[assignment]

    @overload
    def subscribe(self, patterns: Union[str, Iterable[str]], handler: Callable[[DomainEvent], Any], *,
                  name: str = "", capacity: int = 10_000, overflow: str = "block",
                  block_timeout: float = 5.0, slow_threshold: float = 0.0) -> Subscription: ...

    @overload
    def subscribe(self, patterns: Union[str, Iterable[str]], handler: None = None, *,
                  name: str = "", capacity: int = 10_000, overflow: str = "block",
                  block_timeout: float = 5.0, slow_threshold: float = 0.0) -> Callable[[_Handler], _Handler]: ...

    def subscribe(self, patterns: Union[str, Iterable[str]], handler: Optional[Callable[[DomainEvent], Any]] = None,
                  *, name: str = "", capacity: int = 10_000, overflow: str = "block",
                  block_timeout: float = 5.0, slow_threshold: float = 0.0
                  ) -> Union[Subscription, Callable[[_Handler], _Handler]]:
        """Calls `handler(event)` for every event matching any of `patterns` (once per event).
        Returns a Subscription (``.unsubscribe()``); dropping it keeps the subscription. Without
        `handler`, returns a decorator. Raises PatternError for an invalid pattern."""
        if handler is None:
            def decorator(fn: _Handler) -> _Handler:
                self.subscribe(patterns, fn, name=name, capacity=capacity, overflow=overflow,
                               block_timeout=block_timeout, slow_threshold=slow_threshold)
                return fn
            return decorator
        if not isinstance(patterns, str):
            patterns = list(patterns)
        runner = self._runner
        try:
            loop: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and self._owned:
            runner = LoopRunner(name or "subscription", loop=loop, parent=self._runner)
        return self._native.subscribe(patterns, handler, runner, name, capacity, overflow,
                                      block_timeout, slow_threshold)

    def publish(self, event_name: str, payload: Optional[Any] = None, *,
                metadata: Optional[JSONDict] = None) -> DomainEvent:
        """Builds the event (EventNameError for a bad name, TypeError naming the key path of a
        value that is not JSON serialisable) and routes it; returns it. On an inline bus every
        Python handler gets this same DomainEvent object (treat its payload dict as read-only)."""
        return self._publish(event_name, payload, metadata=metadata)

    async def publish_async(self, event_name: str, payload: Optional[Any] = None, *,
                            metadata: Optional[JSONDict] = None, timeout: float = 5.0) -> DomainEvent:
        """publish() for coroutines: while a matching ``block`` subscription's mailbox is full,
        awaits room (yielding to the loop, so async handlers on it keep running) instead of
        blocking the thread; after `timeout` seconds the event is published anyway and a still
        full ``block`` mailbox drops it (counted, like a block timeout).

        A plain publish() from an event loop's thread never blocks either: a full ``block``
        mailbox takes the event beyond its capacity (``overcommitted`` in stats, with a
        warning), because waiting there could wait for the loop itself."""
        has_room = self._native.has_room
        if await wait_for_room(lambda: has_room(event_name), timeout):
            return self._publish(event_name, payload, metadata=metadata)
        return self._native.publish_dropping(event_name, payload, metadata)

    def publish_event(self, event: DomainEvent) -> JSONDict:
        return self._native.publish_event(event)

    def drain(self, timeout: float = 5.0) -> bool:
        """Waits until every queued event has been handled; False on timeout."""
        return self._native.drain(timeout)

    def close(self, timeout: float = 5.0) -> JSONDict:
        """Refuses new events, drains within `timeout`, stops the dispatchers. Idempotent.

        From a coroutine, prefer ``await aclose()``: a blocking close() there blocks the loop
        that async handlers run on, so a handler still awaiting on it is cancelled (counted
        failed, logged) rather than left to wait for a loop that waits for it."""
        report = self._native.close(timeout)
        if self._owned:
            self._runner.close()
        return report

    async def aclose(self, timeout: float = 5.0) -> JSONDict:
        """close() for coroutines: the loop keeps running while the bus drains, so async
        handlers on it finish."""
        return await asyncio.get_running_loop().run_in_executor(None, self.close, timeout)

    @property
    def closed(self) -> bool:
        return self._native.closed

    @property
    def dispatcher_threads(self) -> int:
        return self._native.dispatcher_threads

    @property
    def pending(self) -> int:
        return self._native.pending

    def stats(self) -> JSONDict:
        return self._native.stats()

    def __enter__(self) -> EventBus:
        return self

    async def __aenter__(self) -> EventBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __exit__(self, *exc: object) -> None:
        self.close()
