"""herald: domain-event publish/subscribe for step-based workflows.

The engine is C++ (the ``_herald`` extension); this module is the thin Python layer over it:
base classes for publishers and subscribers, the registries, the worker with its hooks, the
in-process EventBus and the ZeroMQ transports.

Threads and event loops: C++ threads call Python hooks and handlers with the GIL taken for the
call only. A hook or handler may be a plain function or ``async def``; a coroutine runs on the
event loop that was running when the worker (or subscription) started, or on a loop the object
owns (a daemon thread running ``loop.run_forever()``) when started from synchronous code.
"""
from __future__ import annotations

import asyncio
import atexit
import dataclasses
import enum
import functools
import inspect
import logging
import os
import signal
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Optional

from . import _herald
from ._herald import (
    ConfigError,
    DomainEvent,
    EventNameError,
    HandlerFailure,
    HeraldError,
    NativePublisher,
    ParseError,
    Pattern,
    PatternError,
    PayloadSchemaError,
    RegistryError,
    StartupError,
    StateError,
    StepCompletion,
    Subscription,
    TransportError,
    UnknownValueError,
    ValidationError,
    ZmqPublisher,
    curve_keypair,
    is_valid_event_name,
    new_uuid_v7,
    read_curve_public_key,
    read_curve_secret_key,
    validate_event_name,
)

__all__ = [
    "BasePublisher", "BaseSubscriber", "ConfigError", "DomainEvent", "EventBus", "EventNameError",
    "HandlerFailure", "HeraldError", "NativePublisher", "ParseError", "Pattern", "PatternError",
    "PayloadSchemaError", "PublisherRegistry", "RegistryError", "StartupError", "StateError",
    "StepCompletion", "StepEventContext", "SubscriberRegistry", "SubscriberResult", "Subscription",
    "TransportError", "UnknownValueError", "ValidationError", "Worker", "WorkerState",
    "ZmqPublisher", "ZmqSubscriber", "curve_keypair", "is_valid_event_name", "new_uuid_v7",
    "read_curve_public_key", "read_curve_secret_key", "set_native_log_level", "validate_event_name",
]
InProcessDomainEvent = DomainEvent  # tasker-core's name for the event type handed to subscribers
__all__.append("InProcessDomainEvent")

__version__ = "0.1.0"

logger = logging.getLogger("herald")


# ------------------------------------------------------------------------------------------------
# Logging of exceptions raised by user code on C++ threads (with traceback, rate limited).

class _RateLimit:
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


def _log_exception(message: str, exc: BaseException) -> None:
    allowed, suppressed = _exception_log_limit.allow()
    if not allowed:
        return
    note = f" ({suppressed} similar errors suppressed)" if suppressed else ""
    if isinstance(exc, BaseException):
        logger.error("%s: %s: %s%s", message, type(exc).__name__, exc, note,
                     exc_info=(type(exc), exc, exc.__traceback__))
    else:
        logger.error("%s: %r%s", message, exc, note)


# ------------------------------------------------------------------------------------------------
# Event loops for coroutine hooks.

async def _await(awaitable: Any) -> Any:
    return await awaitable


_live_runners: "weakref.WeakSet[_LoopRunner]" = weakref.WeakSet()


class _LoopRunner:
    """Runs the coroutines of hooks called from C++ threads on one event loop.

    The loop is, in order of preference: the delegate's (a registry used by a worker runs on the
    worker's loop), the captured loop (the loop running when the owner started) while it runs,
    the parent's own loop, or a loop this runner owns, started on first use in a daemon thread.
    """

    def __init__(self, name: str, *, loop: Optional[asyncio.AbstractEventLoop] = None,
                 parent: Optional["_LoopRunner"] = None) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._captured: Optional[asyncio.AbstractEventLoop] = None
        self._captured_thread: Optional[int] = None
        self._parent = parent
        self._delegate: Optional[_LoopRunner] = None
        self._owned: Optional[asyncio.AbstractEventLoop] = None
        self._owned_thread: Optional[threading.Thread] = None
        if loop is not None:
            self.capture(loop)
        _live_runners.add(self)

    def capture(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use `loop` (running on the calling thread) for coroutines while it runs."""
        self._captured, self._captured_thread = loop, threading.get_ident()

    def release(self) -> None:
        self._captured = self._captured_thread = None

    def delegate(self, other: Optional["_LoopRunner"]) -> None:
        self._delegate = other

    def _own(self) -> tuple[asyncio.AbstractEventLoop, int]:
        with self._lock:
            if self._owned is None or self._owned.is_closed() or not self._owned_thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        try:
                            pending = asyncio.all_tasks(loop)
                            for task in pending:
                                task.cancel()
                            if pending:
                                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                            loop.run_until_complete(loop.shutdown_asyncgens())
                        finally:
                            loop.close()

                thread = threading.Thread(target=run, name=f"herald-loop-{self._name}", daemon=True)
                thread.start()
                ready.wait()
                self._owned, self._owned_thread = loop, thread
            return self._owned, self._owned_thread.ident

    def resolve(self) -> tuple[asyncio.AbstractEventLoop, int]:
        """The loop coroutines run on now, and its thread id."""
        if self._delegate is not None:
            return self._delegate.resolve()
        loop = self._captured
        if loop is not None and loop.is_running() and not loop.is_closed():
            return loop, self._captured_thread
        if self._parent is not None:
            return self._parent._own()
        return self._own()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.resolve()[0]

    def await_(self, awaitable: Any) -> Any:
        """Runs `awaitable` on the loop and waits for its result (GIL released while waiting)."""
        loop, thread = self.resolve()
        if thread == threading.get_ident():
            # Waiting here would block the very loop that must run the coroutine.
            owner = self._parent or self
            loop, thread = owner._own()
            if thread == threading.get_ident():
                raise RuntimeError("herald: a coroutine hook was called on its own event loop's thread")
            logger.warning("herald: coroutine hook called from the thread of its event loop; running it "
                           "on a loop of its own instead (use `async with` / `await worker.run()`)")
        return asyncio.run_coroutine_threadsafe(_await(awaitable), loop).result()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = self.await_(result)
        return result

    def close(self, timeout: float = 5.0) -> None:
        """Stops the owned loop (if any) and joins its thread."""
        with self._lock:
            loop, thread = self._owned, self._owned_thread
            self._owned = self._owned_thread = None
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)


async def _wait_for_room(has_room: Callable[[], bool], timeout: float) -> bool:
    """Awaits until `has_room()` holds, polling with a backoff (50 µs doubling to 5 ms) that
    yields to the loop between looks, so the handlers that make room can run on it. False when
    `timeout` seconds pass first."""
    if has_room():
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 50e-6
    while True:
        await asyncio.sleep(delay)
        if has_room():
            return True
        if loop.time() >= deadline:
            return False
        delay = min(delay * 2, 5e-3)


def set_native_log_level(level: str) -> None:
    """Level of the C++ engine's own log on stderr: trace, debug, info, warning, error, critical
    or off. The default for Python programs is "warning" (env HERALD_LOG_LEVEL overrides)."""
    _herald.set_native_log_level(level.lower())


set_native_log_level(os.environ.get("HERALD_LOG_LEVEL", "warning"))


class WorkerState(str, enum.Enum):
    """The worker lifecycle: INITIALIZING -> STARTING -> RUNNING -> STOPPING -> STOPPED, and ERROR
    (from STARTING or RUNNING, then on to STOPPING -> STOPPED)."""

    INITIALIZING = "INITIALIZING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"

    def __str__(self) -> str:
        return self.value


# ------------------------------------------------------------------------------------------------
# Values handed to hooks.

@dataclasses.dataclass
class SubscriberResult:
    """What a subscriber's handle() returns. success=False counts the event as failed without an
    exception (message becomes the subscription's last_error). Returning None means success."""

    success: bool = True
    message: str = ""
    data: Any = None

    @classmethod
    def ok(cls, message: str = "", data: Any = None) -> "SubscriberResult":
        return cls(True, message, data)

    @classmethod
    def failure(cls, message: str, data: Any = None) -> "SubscriberResult":
        return cls(False, message, data)


class StepEventContext:
    """What a publisher's hooks see: the step completion's fields plus the event declaration.

    ``event`` is set for before_publish/after_publish, ``error_stage`` for on_publish_error.
    A fresh context is built for every hook call."""

    def __init__(self, completion: dict, declaration: dict) -> None:
        self.completion = completion
        self.declaration = declaration
        self.event: Optional[DomainEvent] = None
        self.error_stage: Optional[str] = None

    step_name = property(lambda self: self.completion.get("step_name", ""))
    namespace = property(lambda self: self.completion.get("namespace", ""))
    task_uuid = property(lambda self: self.completion.get("task_uuid", ""))
    step_uuid = property(lambda self: self.completion.get("step_uuid", ""))
    correlation_id = property(lambda self: self.completion.get("correlation_id", ""))
    success = property(lambda self: bool(self.completion.get("success", False)))
    retryable = property(lambda self: bool(self.completion.get("retryable", False)))
    retry_count = property(lambda self: int(self.completion.get("retry_count", 0)))
    max_retries = property(lambda self: int(self.completion.get("max_retries", 0)))
    result = property(lambda self: self.completion.get("result", {}))
    metadata = property(lambda self: self.completion.get("metadata", {}))
    error = property(lambda self: self.completion.get("error"))
    event_name = property(lambda self: self.declaration.get("name", ""))
    condition = property(lambda self: self.declaration.get("condition", ""))
    delivery_mode = property(lambda self: self.declaration.get("delivery_mode", ""))

    def __repr__(self) -> str:
        return f"StepEventContext(step_name={self.step_name!r}, event_name={self.event_name!r})"


_herald._install_runtime(step_event_context=StepEventContext, subscriber_result=SubscriberResult,
                         log_exception=_log_exception)


# ------------------------------------------------------------------------------------------------
# Publishers and subscribers.

_PUBLISHER_HOOKS = ("should_publish", "transform_payload", "additional_metadata", "before_publish",
                    "after_publish", "on_publish_error")
_SUBSCRIBER_HOOKS = ("before_handle", "after_handle", "on_handle_error", "on_start", "on_stop",
                     "health_check")


def _overrides(obj: Any, base: type, names: Iterable[str]) -> set[str]:
    """The hooks `obj` implements itself (not inherited unchanged from `base`)."""
    out = set()
    cls = type(obj)
    for name in names:
        if name in getattr(obj, "__dict__", {}):
            out.add(name)
            continue
        impl = getattr(cls, name, None)
        if impl is None:
            continue
        if isinstance(obj, base) and getattr(base, name) is impl:
            continue
        out.add(name)
    return out


class BasePublisher:
    """Base of Python publishers. Override what you need; each hook may be ``async def``.

    Order for each declared event whose condition holds: should_publish -> transform_payload ->
    additional_metadata -> (schema check) -> before_publish (ctx.event is the built event;
    False skips it quietly) -> route -> after_publish; on_publish_error(ctx, error) for any
    failure, with the original exception object."""

    publisher_name: str = ""

    def publishes_for(self) -> list[str]:
        return []

    def should_publish(self, ctx: StepEventContext) -> bool:
        return True

    def transform_payload(self, ctx: StepEventContext) -> dict:
        return ctx.result

    def additional_metadata(self, ctx: StepEventContext) -> dict:
        return {}

    def before_publish(self, ctx: StepEventContext) -> bool:
        return True

    def after_publish(self, ctx: StepEventContext, event: DomainEvent) -> None:
        return None

    def on_publish_error(self, ctx: StepEventContext, error: BaseException) -> None:
        return None


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

    def subscribes_to(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__}.subscribes_to")

    def handle(self, event: DomainEvent) -> Optional[SubscriberResult]:
        raise NotImplementedError(f"{type(self).__name__}.handle")

    def before_handle(self, event: DomainEvent) -> bool:
        return True

    def after_handle(self, event: DomainEvent, result: SubscriberResult) -> None:
        return None

    def on_handle_error(self, event: DomainEvent, error: BaseException) -> None:
        return None

    def on_start(self) -> None:
        return None

    def on_stop(self) -> None:
        return None

    def health_check(self) -> bool:
        return True


def _instantiate(cls_or_instance: Any) -> Any:
    return cls_or_instance() if isinstance(cls_or_instance, type) else cls_or_instance


class _registry_method:
    """A method callable on the class (acting on instance()) or on an instance."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        return functools.partial(self._fn, obj if obj is not None else cls.instance())


class PublisherRegistry:
    """Publishers by unique name, plus the built-in generic publisher ("default").

    ``PublisherRegistry.instance()`` is the process-wide default (the C++ engine's own); build
    ``PublisherRegistry()`` for an isolated one. Thread safe."""

    _instance: Optional["PublisherRegistry"] = None
    _instance_lock = threading.Lock()

    def __init__(self, _native: Any = None) -> None:
        self._native = _native if _native is not None else _herald._PublisherRegistry()
        self._runner = _LoopRunner("publishers")

    @classmethod
    def instance(cls) -> "PublisherRegistry":
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(_herald._PublisherRegistry.instance())
            return cls._instance

    @_registry_method
    def reset(self) -> None:
        """Unfreezes and forgets every publisher (for tests)."""
        self._native.unfreeze()
        self._native.clear()

    def register(self, cls_or_instance: Any) -> Any:
        """Registers a publisher class (instantiated without arguments) or instance; returns the
        argument, so it also works as a class decorator. Raises RegistryError for a duplicate
        name, the reserved name "default", or a frozen registry."""
        obj = _instantiate(cls_or_instance)
        if not getattr(obj, "publisher_name", None):
            raise RegistryError(f"publisher {type(obj).__name__} has no publisher_name")
        self._native.register(obj, self._runner, _overrides(obj, BasePublisher, _PUBLISHER_HOOKS))
        return cls_or_instance

    def get(self, name: str) -> Any:
        """The publisher named `name` ("default": the generic one), or None."""
        return self._native.get(name)

    def get_or_default(self, name: str) -> Any:
        return self._native.get_or_default(name)

    def get_strict(self, name: str) -> Any:
        """Raises RegistryError naming `name` and the registered names when unknown."""
        return self._native.get_strict(name)

    def get_for_step(self, step_name: str, declarations: Optional[list[dict]] = None) -> Any:
        """The publisher for a step's events: the one a declaration names, else the first whose
        publishes_for() lists the step, else the generic one."""
        return self._native.get_for_step(step_name, declarations)

    def names(self) -> list[str]:
        return self._native.names()

    def freeze(self) -> None:
        self._native.freeze()

    def unfreeze(self) -> None:
        self._native.unfreeze()

    @property
    def frozen(self) -> bool:
        return self._native.frozen()

    def validate_required(self, names: Iterable[str]) -> None:
        """Raises one RegistryError listing every name that is not registered."""
        self._native.validate_required(list(names))

    def __len__(self) -> int:
        return self._native.size()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._native.contains(name)


class SubscriberRegistry:
    """Named subscribers. Used by a Worker (which starts and stops them on its bus), or on its
    own: ``start_all()`` attaches them to `bus` (an EventBus it creates when none was given).
    Thread safe."""

    _instance: Optional["SubscriberRegistry"] = None
    _instance_lock = threading.Lock()

    def __init__(self, bus: Optional["EventBus"] = None) -> None:
        self._lock = threading.RLock()
        self._entries: dict[str, tuple[Any, Any]] = {}  # name -> (subscriber, adapter)
        self._bus = bus
        self._own_bus: Optional[EventBus] = None
        self._native: Any = None  # _SubscriberRegistry once started on its own
        self._worker: Any = None  # the native worker it is attached to
        self._last_worker: Any = None
        self._runner = _LoopRunner("subscribers")
        _live_subscriber_registries.add(self)

    @classmethod
    def instance(cls) -> "SubscriberRegistry":
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @_registry_method
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
    def _options(obj: Any) -> dict:
        out = {}
        for key in ("capacity", "overflow", "block_timeout", "slow_threshold", "failure_threshold", "cooldown"):
            value = getattr(obj, key, None)
            if value is not None:
                out[key] = value
        return out

    def register(self, cls_or_instance: Any) -> Any:
        """Registers a subscriber class (instantiated without arguments) or instance; returns the
        argument. Raises RegistryError for a duplicate name, PatternError for a bad pattern. After
        start (standalone or by a worker) the subscriber starts at once."""
        obj = _instantiate(cls_or_instance)
        if not getattr(obj, "subscriber_name", None):
            raise RegistryError(f"subscriber {type(obj).__name__} has no subscriber_name")
        adapter = _herald._SubscriberAdapter(obj, self._runner, _overrides(obj, BaseSubscriber, _SUBSCRIBER_HOOKS),
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
    def bus(self) -> Optional["EventBus"]:
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

    def stop_all(self, timeout: float = 5.0) -> dict:
        """Drains (up to `timeout` seconds) and stops the subscribers it started on its own."""
        with self._lock:
            native, own_bus = self._native, self._own_bus
        if native is None:
            return {"success": True, "events_drained": 0, "undelivered": 0, "duration_ms": 0}
        report = native.stop_all(timeout)
        if own_bus is not None:
            own_bus.close(timeout)
        return report

    def stats(self) -> dict:
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

    def health(self) -> dict:
        with self._lock:
            native, worker = self._native, self._worker
        if native is not None:
            return native.health()
        if worker is not None:
            return worker.health().get("subscribers", {})
        return {"healthy": True, "subscribers": {}}

    # A worker takes the registry over while it runs.
    def _attach(self, worker: Any, runner: _LoopRunner) -> None:
        with self._lock:
            if self._native is not None:
                raise StateError("subscriber registry already started on its own bus")
            self._worker, self._last_worker = worker, None
            self._runner.delegate(runner)
            adapters = [adapter for _, adapter in self._entries.values()]
        for adapter in adapters:
            worker.add_subscriber(adapter)

    def _detach(self, worker: Any) -> None:
        with self._lock:
            if self._worker is worker:
                self._worker = None
                self._last_worker = worker  # stats() keeps showing its final counters
                self._runner.delegate(None)


# ------------------------------------------------------------------------------------------------
# The in-process EventBus.

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

    def __init__(self, dispatcher_threads: Optional[int] = None, *, inline: bool = False,
                 batch_size: int = 64, name: str = "bus", idle_spin: float = 0.0) -> None:
        self._native = _herald._EventBus(dispatcher_threads or 0, inline, batch_size, name, idle_spin)
        self._runner = _LoopRunner(name)
        self._owned = True
        self._bind_publish()
        _live_buses.add(self)

    @classmethod
    def _wrap(cls, native: Any, runner: _LoopRunner) -> "EventBus":
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
            self.publish = self._publish

    def subscribe(self, patterns: "str | Iterable[str]", handler: Optional[Callable[[DomainEvent], Any]] = None,
                  *, name: str = "", capacity: int = 10_000, overflow: str = "block",
                  block_timeout: float = 5.0, slow_threshold: float = 0.0) -> Any:
        """Calls `handler(event)` for every event matching any of `patterns` (once per event).
        Returns a Subscription (``.unsubscribe()``); dropping it keeps the subscription. Without
        `handler`, returns a decorator. Raises PatternError for an invalid pattern."""
        if handler is None:
            def decorator(fn: Callable[[DomainEvent], Any]) -> Callable[[DomainEvent], Any]:
                self.subscribe(patterns, fn, name=name, capacity=capacity, overflow=overflow,
                               block_timeout=block_timeout, slow_threshold=slow_threshold)
                return fn
            return decorator
        if not isinstance(patterns, str):
            patterns = list(patterns)
        runner = self._runner
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and self._owned:
            runner = _LoopRunner(name or "subscription", loop=loop, parent=self._runner)
        return self._native.subscribe(patterns, handler, runner, name, capacity, overflow,
                                      block_timeout, slow_threshold)

    def publish(self, event_name: str, payload: Optional[dict] = None, *,
                metadata: Optional[dict] = None) -> DomainEvent:
        """Builds the event (EventNameError for a bad name, TypeError naming the key path of a
        value that is not JSON serialisable) and routes it; returns it. On an inline bus every
        Python handler gets this same DomainEvent object (treat its payload dict as read-only)."""
        return self._publish(event_name, payload, metadata=metadata)

    async def publish_async(self, event_name: str, payload: Optional[dict] = None, *,
                            metadata: Optional[dict] = None, timeout: float = 5.0) -> DomainEvent:
        """publish() for coroutines: while a matching ``block`` subscription's mailbox is full,
        awaits room (yielding to the loop, so async handlers on it keep running) instead of
        blocking the thread; after `timeout` seconds the event is published anyway and a still
        full ``block`` mailbox drops it (counted, like a block timeout).

        A plain publish() from an event loop's thread never blocks either: a full ``block``
        mailbox takes the event beyond its capacity (``overcommitted`` in stats, with a
        warning), because waiting there could wait for the loop itself."""
        has_room = self._native.has_room
        if await _wait_for_room(lambda: has_room(event_name), timeout):
            return self._publish(event_name, payload, metadata=metadata)
        return self._native.publish_dropping(event_name, payload, metadata)

    def publish_event(self, event: DomainEvent) -> dict:
        return self._native.publish_event(event)

    def drain(self, timeout: float = 5.0) -> bool:
        """Waits until every queued event has been handled; False on timeout."""
        return self._native.drain(timeout)

    def close(self, timeout: float = 5.0) -> dict:
        """Refuses new events, drains within `timeout`, stops the dispatchers. Idempotent."""
        report = self._native.close(timeout)
        if self._owned:
            self._runner.close()
        return report

    @property
    def closed(self) -> bool:
        return self._native.closed

    @property
    def dispatcher_threads(self) -> int:
        return self._native.dispatcher_threads

    @property
    def pending(self) -> int:
        return self._native.pending

    def stats(self) -> dict:
        return self._native.stats()

    def __enter__(self) -> "EventBus":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# ZeroMQ.

class ZmqSubscriber:
    """Receives events published over ZeroMQ (e.g. by ``herald publish`` or a worker's zeromq
    transport) into an EventBus or a running Worker's bus, where subscribers see them like local
    events. A context manager (start/stop)."""

    def __init__(self, endpoints: "str | Iterable[str]", patterns: "str | Iterable[str]" = ("#",),
                 bus: "EventBus | Worker | None" = None, *, bind: bool = False,
                 dedup_capacity: int = 10_000, rcvhwm: int = 10_000, name: str = "zmq-subscriber",
                 curve_secret_key: str = "", curve_server_key: str = "",
                 curve_allow: "Iterable[str] | None" = None) -> None:
        if isinstance(bus, Worker):
            bus = bus.bus
        if not isinstance(bus, EventBus):
            raise TypeError("ZmqSubscriber needs bus=EventBus or a started Worker")
        self.bus = bus
        endpoints = endpoints if isinstance(endpoints, str) else list(endpoints)
        patterns = patterns if isinstance(patterns, str) else list(patterns)
        self._native = _herald._ZmqSubscriber(endpoints, patterns, bus._native, bind, dedup_capacity, rcvhwm, name,
                                              curve_secret_key, curve_server_key, curve_allow)
        _live_zmq.add(self)

    def start(self) -> "ZmqSubscriber":
        self._native.start()
        return self

    def stop(self) -> None:
        self._native.stop()

    def stats(self) -> dict:
        return self._native.stats()

    received = property(lambda self: self._native.received)
    delivered = property(lambda self: self._native.delivered)
    gaps = property(lambda self: self._native.gaps)
    endpoints = property(lambda self: self._native.endpoints)
    subscriber_id = property(lambda self: self._native.subscriber_id)

    def __enter__(self) -> "ZmqSubscriber":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------------
# The worker.

class Worker:
    """Hosts publishers and subscribers, takes in step completions and publishes their events.

    ``Worker(config="herald.json")`` (a path or a dict in the configuration file's format) or
    ``Worker(name=..., steps=[...])`` (the file's ``steps`` entries). Without explicit
    registries it uses PublisherRegistry.instance() and SubscriberRegistry.instance().

    Lifecycle: ``start()``/``stop()`` (coroutine hooks then run on a loop the worker owns),
    ``async with worker:`` or ``await worker.run()`` (they run on the running loop; the blocking
    start and stop run in an executor so the loop keeps serving them)."""

    def __init__(self, name: Optional[str] = None, steps: Optional[list[dict]] = None,
                 config: "str | os.PathLike[str] | dict | None" = None,
                 publishers: Optional[PublisherRegistry] = None,
                 subscribers: Optional[SubscriberRegistry] = None, *,
                 dispatcher_threads: Optional[int] = None) -> None:
        self._publishers = publishers if publishers is not None else PublisherRegistry.instance()
        self._subscribers = subscribers if subscribers is not None else SubscriberRegistry.instance()
        self._native = _herald._Worker(config, name, steps, self._publishers._native, dispatcher_threads)
        self._runner = _LoopRunner(f"worker-{self._native.name}")
        self._lock = threading.Lock()
        self._prepared = False
        self._finished = False
        self._startup_failures: dict[str, BaseException] = {}
        self._run_loop: Optional[asyncio.AbstractEventLoop] = None
        self._run_event: Optional[asyncio.Event] = None
        self._stop_requested = False
        _live_workers.add(self)
        self._register_method_hooks()

    # -- subclass-style hooks ----------------------------------------------------------------------
    # A subclass may override on_startup / on_shutdown / on_success / on_error as methods (sync
    # or async; super() calls work and do nothing) and health_check. Each override runs as a
    # hook registered when the worker is created, so before any decorator hook: startup runs the
    # method first, shutdown (reverse order) runs it last. An override that cannot work (wrong
    # parameters, not a function, a hook that has no method form) is a TypeError at class
    # creation.
    _METHOD_HOOKS = {"on_startup": 0, "on_shutdown": 0, "on_success": 1, "on_error": 2}
    _DECORATOR_ONLY = ("on_worker_startup", "on_worker_shutdown", "on_state_change")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls._DECORATOR_ONLY:
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__}.{name}: this hook has no method form; register it with "
                                f"@worker.{name} on an instance")
        for name, arity in {**cls._METHOD_HOOKS, "health_check": 0}.items():
            if name not in cls.__dict__:
                continue
            method = cls.__dict__[name]
            if not inspect.isfunction(method):
                raise TypeError(f"{cls.__name__}.{name} must be a plain method (def or async def), "
                                f"got {type(method).__name__}")
            try:
                inspect.signature(method).bind(None, *([None] * arity))
            except TypeError:
                want = ", ".join(["self"] + ["completion", "error"][:arity])
                raise TypeError(f"{cls.__name__}.{name} must take ({want}): "
                                f"got {inspect.signature(method)}") from None
            if name != "health_check":
                # Keeps `@worker.on_startup` working on instances of the subclass too.
                setattr(cls, name, _HookMethod(method, name))

    def _register_method_hooks(self) -> None:
        cls = type(self)
        for name in self._METHOD_HOOKS:
            if getattr(cls, name) is getattr(Worker, name):
                continue
            label = f"{cls.__name__}.{name}"
            register = getattr(Worker, name)
            register(self, self._wrap(_method_caller(self, name), name, label), name=label)

    @property
    def logger(self) -> logging.Logger:
        """The worker's logger (``herald.worker.<name>``)."""
        return logging.getLogger(f"herald.worker.{self.name}")

    async def health_check(self) -> bool:
        """Override (sync or async) to add a check of your own to health(): False makes the
        worker unhealthy."""
        return True

    # -- hooks ------------------------------------------------------------------------------------
    def _wrap(self, fn: Callable[..., Any], kind: str, label: str) -> Callable[..., Any]:
        # No reference to self: the native worker holds the hook, and a cycle through C++ is
        # invisible to the garbage collector.
        runner, failures, worker_name = self._runner, self._startup_failures, self._native.name

        def hook(*args: Any) -> Any:
            if kind == "on_state_change":
                args = tuple(WorkerState(a) for a in args)
            try:
                return runner.call(fn, *args)
            except BaseException as exc:
                _log_exception(f"worker '{worker_name}': {kind} hook '{label}' failed", exc)
                if kind == "on_startup":
                    failures[label] = exc
                raise

        return hook

    @staticmethod
    def _label(fn: Callable[..., Any], name: Optional[str]) -> str:
        return name or getattr(fn, "__qualname__", None) or repr(fn)

    def _decorator(kind: str, named: bool = False):  # type: ignore[misc]
        def register(self: "Worker", fn: Optional[Callable[..., Any]] = None, *rest: Any,
                     name: Optional[str] = None) -> Any:
            def add(f: Callable[..., Any]) -> Callable[..., Any]:
                label = self._label(f, name)
                wrapped = self._wrap(f, kind, label)
                if named:
                    getattr(self._native, kind)(wrapped, label)
                else:
                    getattr(self._native, kind)(wrapped)
                return f
            if rest or (fn is not None and not callable(fn)):
                # super().on_success(completion) / super().on_error(completion, error) from a
                # subclass's hook method: the base hook does nothing.
                return _NoOpHook()
            return add(fn) if fn is not None else _DecoratorOrBaseHook(add)
        register.__name__ = kind
        return register

    on_startup = _decorator("on_startup", named=True)
    on_startup.__doc__ = "Runs before any completion is processed; raising fails start() (StartupError)."
    on_shutdown = _decorator("on_shutdown", named=True)
    on_shutdown.__doc__ = "Runs when stopping, after the queues drain (reverse order; all run)."
    on_success = _decorator("on_success")
    on_success.__doc__ = "hook(completion) after a completion's events were all published."
    on_error = _decorator("on_error")
    on_error.__doc__ = "hook(completion, error) when publishing a completion hit an error."
    on_worker_startup = _decorator("on_worker_startup")
    on_worker_startup.__doc__ = "Runs on each dispatcher thread as it starts."
    on_worker_shutdown = _decorator("on_worker_shutdown")
    on_worker_shutdown.__doc__ = "Runs on each dispatcher thread before it exits."
    on_state_change = _decorator("on_state_change")
    on_state_change.__doc__ = "hook(from_state, to_state) on every state change."
    del _decorator

    # -- lifecycle --------------------------------------------------------------------------------
    def _prepare(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        with self._lock:
            if self._prepared or self.state != WorkerState.INITIALIZING:
                raise StateError(f"worker '{self.name}' was already started (state {self.state})")
            self._prepared = True
        if loop is not None:
            self._runner.capture(loop)
        self._native.finish_hooks()
        self._publishers._runner.delegate(self._runner)
        self._subscribers._attach(self._native, self._runner)

    def _start_native(self) -> None:
        try:
            self._native.start()
        except StartupError as exc:
            self._release()
            cause = self._startup_failures.get(getattr(exc, "hook", ""))
            if cause is not None:
                raise exc from cause
            raise
        except BaseException:
            self._release()
            raise

    def _stop_native(self, timeout: Optional[float]) -> dict:
        try:
            return self._native.stop(timeout)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        self._subscribers._detach(self._native)
        if self._publishers._runner._delegate is self._runner:
            self._publishers._runner.delegate(None)
        self._runner.close()
        self._runner.release()

    def start(self) -> None:
        """Starts from synchronous code: coroutine hooks run on a loop the worker owns."""
        self._prepare(None)
        self._start_native()

    def stop(self, timeout: Optional[float] = None) -> dict:
        """Graceful stop within `timeout` seconds (default: the configured drain timeout).
        Idempotent. Returns the stop report. Not from the thread of the event loop the worker
        runs its coroutines on (it would wait for that loop): use ``await astop()`` there."""
        captured = self._runner._captured
        if (captured is not None and captured.is_running() and self._runner._captured_thread == threading.get_ident()
                and self.state in (WorkerState.RUNNING, WorkerState.ERROR)):
            raise StateError(f"worker '{self.name}': stop() would block its own event loop; "
                             "use `await worker.astop()` or `async with worker`")
        return self._stop_native(timeout)

    async def astart(self) -> None:
        """Starts with coroutine hooks on the running loop (the blocking start runs in an
        executor)."""
        loop = asyncio.get_running_loop()
        self._prepare(loop)
        await loop.run_in_executor(None, self._start_native)

    async def astop(self, timeout: Optional[float] = None) -> dict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._stop_native, timeout)

    async def __aenter__(self) -> "Worker":
        await self.astart()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.astop()

    def __enter__(self) -> "Worker":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def run(self, *, handle_signals: bool = True) -> dict:
        """Starts (if needed), runs until request_stop(), SIGTERM or SIGINT, then stops
        gracefully and returns the stop report. A second signal exits the process at once."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            self._run_loop, self._run_event = loop, event
            if self._stop_requested:
                event.set()
        signals_seen = []

        def on_signal(sig: int) -> None:
            signals_seen.append(sig)
            if len(signals_seen) > 1:
                logger.error("worker '%s': second signal %s, exiting at once", self.name, sig)
                os._exit(128 + sig)
            logger.info("worker '%s': signal %s, stopping gracefully", self.name, sig)
            event.set()

        # Handlers go in before start, so that a signal during startup is a graceful stop too.
        installed = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, on_signal, sig)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            if self.state == WorkerState.INITIALIZING:
                await self.astart()
            await event.wait()
            return await self.astop()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            with self._lock:
                self._run_loop = self._run_event = None

    def request_stop(self) -> None:
        """Makes a running ``await run()`` stop gracefully. Safe from any thread."""
        with self._lock:
            self._stop_requested = True
            loop, event = self._run_loop, self._run_event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass

    # -- intake and status ------------------------------------------------------------------------
    def complete_step(self, completion: "dict | StepCompletion") -> bool:
        """Hands a step completion to the worker (thread safe). False when it was not accepted
        (not running, or the intake is full past its policy). ValidationError for a bad dict.
        From an event loop's thread it never blocks: a full ``block`` intake takes it beyond
        capacity with a warning (use ``await complete_step_async()`` to wait for room)."""
        return self._native.complete_step(completion)

    def complete_steps(self, completions: "Iterable[dict | StepCompletion]") -> int:
        """complete_step() for many completions at once, in order and under the same rules;
        returns how many were accepted. Converted and handed to the intake in chunks (one
        hand-over, with the GIL released, per chunk), so a long list or a generator costs far
        less per completion than a loop of complete_step(). A bad item raises its
        complete_step() error after the items before it were submitted."""
        return self._native.complete_steps(completions)

    async def complete_step_async(self, completion: "dict | StepCompletion", *,
                                  timeout: Optional[float] = None) -> bool:
        """complete_step() for coroutines: while the intake is full, awaits room (the loop keeps
        running) instead of blocking; after `timeout` seconds (default: the configured
        intake_block_timeout_ms) it gives up and returns False, as a block timeout would."""
        if timeout is None:
            timeout = float(self._native.config()["intake_block_timeout"])  # seconds
        if await _wait_for_room(self._native.intake_has_room, timeout):
            return self._native.complete_step(completion)
        return self._native.complete_step(completion, may_wait=False)

    def drain(self, timeout: float = 5.0) -> bool:
        """Waits until every accepted completion was published and every event handled."""
        return self._native.drain(timeout)

    @property
    def state(self) -> WorkerState:
        return WorkerState(self._native.state)

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def bus(self) -> EventBus:
        """The worker's EventBus (StateError before start)."""
        return EventBus._wrap(self._native.bus(), self._runner)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop coroutine hooks run on."""
        return self._runner.loop

    @property
    def publishers(self) -> PublisherRegistry:
        return self._publishers

    @property
    def subscribers(self) -> SubscriberRegistry:
        return self._subscribers

    def set_transport(self, transport: ZmqPublisher) -> None:
        """Replaces the configured ZeroMQ transport (before start)."""
        self._native.set_transport(transport)

    def status(self) -> dict:
        return self._native.status()

    def health(self) -> dict:
        """The native health report; a health_check override (sync or async) is consulted too:
        its answer is under "health_check" and a False (or an exception) makes it unhealthy."""
        report = self._native.health()
        if type(self).health_check is Worker.health_check:
            return report
        try:
            ok = bool(self._runner.call(self.health_check))
        except BaseException as exc:  # noqa: BLE001 - reported, not raised
            _log_exception(f"worker '{self.name}': health_check failed", exc)
            ok = False
        report["health_check"] = ok
        report["healthy"] = bool(report.get("healthy", True)) and ok
        return report

    @property
    def config(self) -> "_Config":
        """The worker's configuration summary (a dict; also callable, as it was a method)."""
        return _Config(self._native.config())

    def __repr__(self) -> str:
        return f"Worker(name={self.name!r}, state={self.state})"


class _NoOpHook:
    """What a base hook returns when a subclass's override calls super(): awaitable, does nothing."""

    def __await__(self) -> Any:
        return iter(())


class _DecoratorOrBaseHook(_NoOpHook):
    """``@worker.on_startup(name=...)`` (a decorator) or ``await super().on_startup()`` from a
    subclass's override (a no-op)."""

    def __init__(self, add: Callable[[Callable[..., Any]], Any]) -> None:
        self._add = add

    def __call__(self, fn: Callable[..., Any]) -> Any:
        return self._add(fn)


def _method_caller(worker: Any, name: str) -> Callable[..., Any]:
    # The native worker holds hooks; holding the worker itself would keep it alive through C++
    # (a cycle the collector cannot see): a weak reference instead.
    target = weakref.ref(worker)

    def call(*args: Any) -> Any:
        obj = target()
        return None if obj is None else getattr(obj, name)(*args)

    call.__qualname__ = f"{type(worker).__name__}.{name}"
    return call


class _HookMethod:
    """A subclass's hook method (on_startup, ...): called with the hook's arguments it runs the
    method; called with one callable (or only name=) it is the decorator, as on Worker."""

    def __init__(self, fn: Callable[..., Any], kind: str) -> None:
        self.fn, self.kind = fn, kind
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self.fn
        fn, kind = self.fn, self.kind

        def bound(*args: Any, name: Optional[str] = None) -> Any:
            if name is not None or (len(args) == 1 and callable(args[0])):
                return getattr(Worker, kind)(obj, *args, name=name)
            return fn(obj, *args)

        return bound


class _Config(dict):  # type: ignore[type-arg]
    def __call__(self) -> "_Config":
        return self


# ------------------------------------------------------------------------------------------------
# Interpreter exit: stop what is still running before Python finalizes (C++ threads must not
# reach for a finalizing interpreter).

_live_workers: "weakref.WeakSet[Worker]" = weakref.WeakSet()
_live_buses: "weakref.WeakSet[EventBus]" = weakref.WeakSet()
_live_zmq: "weakref.WeakSet[ZmqSubscriber]" = weakref.WeakSet()
_live_subscriber_registries: "weakref.WeakSet[SubscriberRegistry]" = weakref.WeakSet()


def _shutdown_at_exit() -> None:
    for worker in list(_live_workers):
        if worker.state in (WorkerState.RUNNING, WorkerState.STARTING, WorkerState.ERROR,
                            WorkerState.STOPPING):
            try:
                logger.info("herald: stopping worker '%s' at interpreter exit", worker.name)
                worker.stop()
            except BaseException as exc:  # noqa: BLE001 - exit must go on
                _log_exception(f"herald: stopping worker '{worker.name}' at exit failed", exc)
    for sub in list(_live_zmq):
        try:
            sub.stop()
        except BaseException:  # noqa: BLE001
            pass
    for registry in list(_live_subscriber_registries):
        try:
            registry.stop_all(1.0)
        except BaseException:  # noqa: BLE001
            pass
    for bus in list(_live_buses):
        try:
            bus.close(1.0)
        except BaseException:  # noqa: BLE001
            pass
    for runner in list(_live_runners):
        runner.close(1.0)


atexit.register(_shutdown_at_exit)


# ------------------------------------------------------------------------------------------------
# The durable road (PostgreSQL): herald.DurableConsumer, herald.DurableError, herald.durable.*.
# Imported last: it builds on the runner and logging above, and its exit handler must be
# registered after _shutdown_at_exit so that it runs first (atexit is last in, first out).

from . import durable  # noqa: E402
from .durable import DurableConsumer, DurableError, DurableRecord  # noqa: E402

__all__ += ["DurableConsumer", "DurableError", "DurableRecord", "durable"]

