"""The `Worker`: hosts publishers and subscribers, takes in step completions, runs lifecycle
hooks (plain or ``async def``) on its event loop."""
from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import logging
import os
import signal
import threading
import weakref
from typing import Any, Callable, ClassVar, Iterable, Optional, Protocol, TypeVar, Union, overload

from . import _herald
from ._bus import EventBus
from ._herald import StartupError, StateError, StepCompletion, ZmqPublisher
from ._log import log_exception, logger
from ._loop import LoopRunner, wait_for_room
from ._publishers import PublisherRegistry
from ._subscribers import SubscriberRegistry
from ._types import JSONDict

_F = TypeVar("_F", bound=Callable[..., Any])

live_workers: "weakref.WeakSet[Worker]" = weakref.WeakSet()
"""Every worker alive, so that interpreter exit can stop those still running."""


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


class HookDecorator(Protocol):
    """``@worker.on_startup`` or ``@worker.on_startup(name="...")``."""

    @overload
    def __call__(self, fn: _F, /) -> _F: ...

    @overload
    def __call__(self, *, name: Optional[str] = None) -> Callable[[_F], _F]: ...


def _hook_registrar(kind: str, named: bool = False) -> Any:
    """Worker.on_<kind>: registers a hook (as a decorator, with or without name=), or does
    nothing when a subclass's override calls it through super()."""
    def register(self: Worker, fn: Optional[Callable[..., Any]] = None, *rest: Any,
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


class Worker:
    """Hosts publishers and subscribers, takes in step completions and publishes their events.

    ``Worker(config="herald.json")`` (a path or a dict in the configuration file's format) or
    ``Worker(name=..., steps=[...])`` (the file's ``steps`` entries). Without explicit
    registries it uses PublisherRegistry.instance() and SubscriberRegistry.instance().

    Lifecycle: ``start()``/``stop()`` (coroutine hooks then run on a loop the worker owns),
    ``async with worker:`` or ``await worker.run()`` (they run on the running loop; the blocking
    start and stop run in an executor so the loop keeps serving them).

    Thread safety: complete_step(s), drain, status, health, request_stop and the properties may
    be called from any thread; start/stop (and their async forms) from the owner."""

    def __init__(self, name: Optional[str] = None, steps: Optional[list[JSONDict]] = None,
                 config: Union[str, os.PathLike[str], JSONDict, None] = None,
                 publishers: Optional[PublisherRegistry] = None,
                 subscribers: Optional[SubscriberRegistry] = None, *,
                 dispatcher_threads: Optional[int] = None) -> None:
        self._publishers = publishers if publishers is not None else PublisherRegistry.instance()
        self._subscribers = subscribers if subscribers is not None else SubscriberRegistry.instance()
        self._native = _herald._Worker(config, name, steps, self._publishers._native, dispatcher_threads)
        self._runner = LoopRunner(f"worker-{self._native.name}")
        self._lock = threading.Lock()
        self._prepared = False
        self._finished = False
        self._startup_failures: dict[str, BaseException] = {}
        self._run_loop: Optional[asyncio.AbstractEventLoop] = None
        self._run_event: Optional[asyncio.Event] = None
        self._stop_requested = False
        live_workers.add(self)
        self._register_method_hooks()
        self._register_health_check()

    # -- subclass-style hooks ----------------------------------------------------------------------
    # A subclass may override on_startup / on_shutdown / on_success / on_error as methods (sync
    # or async; super() calls work and do nothing) and health_check. Each override runs as a
    # hook registered when the worker is created, so before any decorator hook: startup runs the
    # method first, shutdown (reverse order) runs it last. An override that cannot work (wrong
    # parameters, not a function, a hook that has no method form) is a TypeError at class
    # creation.
    _METHOD_HOOKS: ClassVar[dict[str, int]] = {"on_startup": 0, "on_shutdown": 0, "on_success": 1, "on_error": 2}
    _DECORATOR_ONLY: ClassVar[tuple[str, ...]] = ("on_worker_startup", "on_worker_shutdown", "on_state_change")

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

    def _register_health_check(self) -> None:
        # The native health() (and so GET /health) asks the override; a weak reference, as the
        # native worker holds the check and a cycle through C++ is invisible to the collector.
        if type(self).health_check is Worker.health_check:
            return
        ref, runner, worker_name = weakref.ref(self), self._runner, self._native.name

        def check() -> bool:
            worker = ref()
            if worker is None:
                return False
            try:
                return bool(runner.call(worker.health_check))
            except BaseException as exc:  # noqa: BLE001 - reported as unhealthy, not raised
                log_exception(f"worker '{worker_name}': health_check failed", exc)
                return False

        self._native.set_health_check(check)

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
                log_exception(f"worker '{worker_name}': {kind} hook '{label}' failed", exc)
                if kind == "on_startup":
                    failures[label] = exc
                raise

        return hook

    @staticmethod
    def _label(fn: Callable[..., Any], name: Optional[str]) -> str:
        return name or getattr(fn, "__qualname__", None) or repr(fn)

    on_startup: ClassVar[HookDecorator] = _hook_registrar("on_startup", named=True)
    on_startup.__doc__ = "Runs before any completion is processed; raising fails start() (StartupError)."
    on_shutdown: ClassVar[HookDecorator] = _hook_registrar("on_shutdown", named=True)
    on_shutdown.__doc__ = "Runs when stopping, after the queues drain (reverse order; all run)."
    on_success: ClassVar[HookDecorator] = _hook_registrar("on_success")
    on_success.__doc__ = "hook(completion) after a completion's events were all published."
    on_error: ClassVar[HookDecorator] = _hook_registrar("on_error")
    on_error.__doc__ = "hook(completion, error) when publishing a completion hit an error."
    on_worker_startup: ClassVar[HookDecorator] = _hook_registrar("on_worker_startup")
    on_worker_startup.__doc__ = "Runs on each dispatcher thread as it starts."
    on_worker_shutdown: ClassVar[HookDecorator] = _hook_registrar("on_worker_shutdown")
    on_worker_shutdown.__doc__ = "Runs on each dispatcher thread before it exits."
    on_state_change: ClassVar[HookDecorator] = _hook_registrar("on_state_change")
    on_state_change.__doc__ = "hook(from_state, to_state) on every state change."

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

    def _stop_native(self, timeout: Optional[float]) -> JSONDict:
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

    def stop(self, timeout: Optional[float] = None) -> JSONDict:
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

    async def astop(self, timeout: Optional[float] = None) -> JSONDict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._stop_native, timeout)

    async def __aenter__(self) -> Worker:
        await self.astart()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.astop()

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def run(self, *, handle_signals: bool = True) -> JSONDict:
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
    def complete_step(self, completion: Union[JSONDict, StepCompletion]) -> bool:
        """Hands a step completion to the worker (thread safe). False when it was not accepted
        (not running, or the intake is full past its policy). ValidationError for a bad dict.
        From an event loop's thread it never blocks: a full ``block`` intake takes it beyond
        capacity with a warning (use ``await complete_step_async()`` to wait for room)."""
        return self._native.complete_step(completion)

    def complete_steps(self, completions: Iterable[Union[JSONDict, StepCompletion]]) -> int:
        """complete_step() for many completions at once, in order and under the same rules;
        returns how many were accepted. Converted in chunks, each published with the GIL
        released, so a long list or a generator costs far less per completion than a loop of
        complete_step(). Outside an event loop's thread, with a ``block`` intake (the default),
        the calling thread publishes them itself, after what is queued (publisher hooks and
        on_success / on_error run on it; the call returns once they were published, and the
        intake's capacity does not apply); otherwise they are queued. A bad item raises its
        complete_step() error after the items before it were submitted."""
        return self._native.complete_steps(completions)

    async def complete_step_async(self, completion: Union[JSONDict, StepCompletion], *,
                                  timeout: Optional[float] = None) -> bool:
        """complete_step() for coroutines: while the intake is full, awaits room (the loop keeps
        running) instead of blocking; after `timeout` seconds (default: the configured
        intake_block_timeout_ms) it gives up and returns False, as a block timeout would."""
        if timeout is None:
            timeout = float(self._native.config()["intake_block_timeout"])  # seconds
        if await wait_for_room(self._native.intake_has_room, timeout):
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

    def status(self) -> JSONDict:
        return self._native.status()

    def health(self) -> JSONDict:
        """The native health report; a health_check override (sync or async) is consulted too:
        its answer is under "health_check" and a False (or an exception) makes it unhealthy.
        GET /health (``http.listen``) answers the same report."""
        return self._native.health()

    @property
    def http_address(self) -> Optional[str]:
        """Where GET /metrics, /health and /status are served ("127.0.0.1:40123", the port
        chosen when ``http.listen`` asked for 0) while the worker runs; None otherwise."""
        return self._native.http_address

    @property
    def config(self) -> _Config:
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
        functools.update_wrapper(self, fn)

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self.fn
        fn, kind = self.fn, self.kind

        def bound(*args: Any, name: Optional[str] = None) -> Any:
            if name is not None or (len(args) == 1 and callable(args[0])):
                return getattr(Worker, kind)(obj, *args, name=name)
            return fn(obj, *args)

        return bound


class _Config(dict[str, Any]):
    def __call__(self) -> _Config:
        return self


