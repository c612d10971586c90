"""The event loops that coroutine hooks and handlers run on when C++ threads call them.

A `LoopRunner` is shared by the C++ threads that call hooks (they hold the GIL only while they
call into it); `capture`, `release` and `delegate` are called by the owner (worker, bus,
registry) from its own thread while it starts or stops."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
import weakref
from typing import Any, Awaitable, Callable, Iterator, Optional, TypeVar

from ._herald import StateError
from ._log import logger

_T = TypeVar("_T")


async def _await(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


live_runners: "weakref.WeakSet[LoopRunner]" = weakref.WeakSet()
"""Every runner alive, so that interpreter exit can stop the loops they own."""


# Threads blocked in a herald call that waits for handlers (EventBus.close(), unsubscribe(), ...)
# and what they are blocked in; the waits of coroutine handlers, by loop thread. A handler's
# coroutine that must run on a loop whose thread is blocked in such a call can never finish:
# the call waits for the handler, the handler for the loop. `await_` sees that and cancels the
# coroutine instead of waiting forever (it hung the interpreter: EventBus.close() from inside
# `asyncio.run(main())` while the last async handler was between two awaits).
_blocked_lock = threading.Lock()
_blocked: dict[int, str] = {}
_waiting: dict[int, set[threading.Event]] = {}


@contextlib.contextmanager
def blocking_call(what: str) -> Iterator[None]:
    """Marks the calling thread as blocked in `what` (a call that waits for handlers) while the
    block runs, and wakes the handlers waiting for a coroutine on this thread's loop."""
    ident = threading.get_ident()
    with _blocked_lock:
        outer = _blocked.get(ident)
        _blocked[ident] = what
        waiters = list(_waiting.get(ident, ()))
    for w in waiters:
        w.set()
    try:
        yield
    finally:
        with _blocked_lock:
            if outer is None:
                del _blocked[ident]
            else:
                _blocked[ident] = outer


def _loop_blocked_error(thread: int, what: str) -> StateError:
    logger.warning("herald: an async handler's coroutine was cancelled: its event loop's thread is "
                   "blocked in %s, which waits for the handler (from a coroutine, use `await "
                   "bus.aclose()` or `async with`)", what)
    return StateError(f"the handler's event loop (thread {thread}) is blocked in {what}, which waits "
                      "for this handler: the coroutine was cancelled")


def _wait_unless_blocked(future: "concurrent.futures.Future[_T]", thread: int) -> _T:
    """future.result(), unless `thread` (the loop's) is or becomes blocked in a herald call that
    waits for this very handler: then the coroutine is cancelled and StateError raised."""
    woken = threading.Event()
    future.add_done_callback(lambda _: woken.set())
    with _blocked_lock:
        what = _blocked.get(thread)
        if what is None:
            _waiting.setdefault(thread, set()).add(woken)
    try:
        if what is None:
            woken.wait()
            if future.done():
                return future.result()
            with _blocked_lock:
                what = _blocked.get(thread, "a blocking call")
        if future.cancel() or future.cancelled():
            raise _loop_blocked_error(thread, what)
        return future.result()  # it finished as the loop's thread blocked
    finally:
        with _blocked_lock:
            waiters = _waiting.get(thread)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del _waiting[thread]


class LoopRunner:
    """Runs the coroutines of hooks called from C++ threads on one event loop.

    The loop is, in order of preference: the delegate's (a registry used by a worker runs on the
    worker's loop), the captured loop (the loop running when the owner started) while it runs,
    the parent's own loop, or a loop this runner owns, started on first use in a daemon thread.
    """

    def __init__(self, name: str, *, loop: Optional[asyncio.AbstractEventLoop] = None,
                 parent: Optional[LoopRunner] = None) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._captured: Optional[asyncio.AbstractEventLoop] = None
        self._captured_thread: Optional[int] = None
        self._parent = parent
        self._delegate: Optional[LoopRunner] = None
        self._owned: Optional[asyncio.AbstractEventLoop] = None
        self._owned_thread: Optional[threading.Thread] = None
        if loop is not None:
            self.capture(loop)
        live_runners.add(self)

    def capture(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use `loop` (running on the calling thread) for coroutines while it runs."""
        self._captured, self._captured_thread = loop, threading.get_ident()

    def release(self) -> None:
        self._captured = self._captured_thread = None

    def delegate(self, other: Optional[LoopRunner]) -> None:
        self._delegate = other

    def _own(self) -> tuple[asyncio.AbstractEventLoop, int]:
        with self._lock:
            if self._owned is None or self._owned.is_closed() or self._owned_thread is None \
                    or not self._owned_thread.is_alive():
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
            ident = self._owned_thread.ident
            assert ident is not None  # started above
            return self._owned, ident

    def resolve(self) -> tuple[asyncio.AbstractEventLoop, int]:
        """The loop coroutines run on now, and its thread id."""
        if self._delegate is not None:
            return self._delegate.resolve()
        loop, thread = self._captured, self._captured_thread
        if loop is not None and thread is not None and loop.is_running() and not loop.is_closed():
            return loop, thread
        if self._parent is not None:
            return self._parent._own()
        return self._own()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.resolve()[0]

    def await_(self, awaitable: Awaitable[_T]) -> _T:
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
        with _blocked_lock:
            what = _blocked.get(thread)
        if what is not None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never scheduled: no "never awaited" warning
            raise _loop_blocked_error(thread, what)
        return _wait_unless_blocked(asyncio.run_coroutine_threadsafe(_await(awaitable), loop), thread)

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


async def wait_for_room(has_room: Callable[[], bool], timeout: float) -> bool:
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
