"""herald's durable road from Python: events on PostgreSQL (docs/durable.md).

- ``herald.DurableConsumer``: one consumer group of one stream, read in offset order, at least
  once, by the C++ ``herald::DurableConsumer`` (lease, retries with backoff, dead letters,
  LISTEN/NOTIFY wake-up) calling Python hooks, plain or ``async def``.
- ``herald.durable.write_outbox(conn, ...)``: the transactional outbox on the caller's own
  psycopg 3 connection; the event exists if and only if the caller's transaction commits.
- ``herald.durable.ensure_schema(dsn)``: creates herald's tables (like ``herald durable init``).

Threads: a consumer's hooks run on its own C++ thread (coroutines on an event loop, see
``DurableConsumer``), which holds the GIL only while it calls them. ``start()``/``stop()`` may be
called from any thread; ``stats()`` and the properties too.
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import datetime
import inspect
import os
import threading
import weakref
from typing import Any, Callable, Iterable, Optional, Union

from . import _herald
from ._herald import ConfigError, DomainEvent, Pattern, StateError, TransportError
from ._log import log_exception as _log_exception
from ._log import logger
from ._loop import LoopRunner as _LoopRunner

__all__ = ["DurableConsumer", "DurableError", "DurableRecord", "StartPosition", "ensure_schema", "redact_dsn",
           "write_outbox", "write_outbox_async"]

_HAVE_NATIVE = hasattr(_herald, "_DurableConsumer")

if _HAVE_NATIVE:
    DurableError = _herald.DurableError
else:  # pragma: no cover - a build without herald::postgres (libpq-dev missing)
    class DurableError(TransportError):  # type: ignore[no-redef]
        """An error of the durable road (see the native class for the kinds)."""

        kind = "state"
        sqlstate = ""

# "beginning", "end", an offset >= 1 (the first event handled), or a time (the first event stored
# at or after it). A string may also be an offset or an RFC 3339 time.
StartPosition = Union[str, int, datetime.datetime]
Seconds = Union[float, int, datetime.timedelta]


def _error(kind: str, message: str, sqlstate: str = "") -> Exception:
    exc = DurableError(message)
    exc.kind, exc.sqlstate = kind, sqlstate
    return exc


def _require_native(what: str) -> None:
    if not _HAVE_NATIVE:
        raise _error("state", f"{what}: this herald was built without the PostgreSQL module "
                              "(install libpq-dev and rebuild; see docs/durable.md)")


def _validate_stream(name: str, what: str = "stream") -> None:
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be str, not {type(name).__name__}")
    _require_native(f"{what} name '{name}'")
    _herald._durable_validate_stream_name(name, what)


def _validate_schema(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"schema name must be str, not {type(name).__name__}")
    _require_native(f"schema name '{name}'")
    _herald._durable_validate_schema_name(name)


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***`` (what every herald message shows)."""
    _require_native("redact_dsn")
    return _herald._durable_redact_dsn(dsn)


def _start_text(start: StartPosition) -> str:
    if isinstance(start, bool):
        raise TypeError("start must be 'beginning', 'end', an offset >= 1 or a datetime, not a bool")
    if isinstance(start, int):
        if start < 1:
            raise _error("invalid_argument", f"start offset must be >= 1, got {start}")
        return str(start)
    if isinstance(start, datetime.datetime):
        # A naive datetime is local time, as datetime.astimezone() reads it.
        return start.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(start, str):
        return _herald._durable_parse_start(start) if _HAVE_NATIVE else start
    raise TypeError(f"start must be 'beginning', 'end', an offset >= 1 or a datetime, "
                    f"not {type(start).__name__}")


def _seconds(value: Seconds, name: str) -> float:
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 (or a timedelta), got {value!r}")
    return float(value)


def _dsn_from(dsn: Optional[str], dsn_env: Optional[str]) -> str:
    if dsn is not None and dsn_env is not None:
        exc = ConfigError("dsn_env: give either dsn or dsn_env, not both")
        exc.key_path = "dsn_env"
        raise exc
    if dsn_env is not None:
        value = os.environ.get(dsn_env, "")
        if not value:
            exc = ConfigError(f"dsn_env: environment variable '{dsn_env}' is not set or empty")
            exc.key_path = "dsn_env"
            raise exc
        return value
    if dsn is None:
        exc = ConfigError("dsn: required (or dsn_env, the name of an environment variable)")
        exc.key_path = "dsn"
        raise exc
    return dsn


def ensure_schema(dsn: Optional[str] = None, schema: str = "herald", *, dsn_env: Optional[str] = None) -> None:
    """Creates herald's schema and tables if they do not exist (idempotent; needs CREATE on the
    database). DurableError naming the problem (and the redacted DSN) otherwise."""
    _validate_schema(schema)
    _herald._durable_ensure_schema(_dsn_from(dsn, dsn_env), schema)


# ------------------------------------------------------------------------------------------------
# The transactional outbox (psycopg 3).

def _classify(sqlstate: Optional[str]) -> str:
    # The C++ classification (transports/postgres/src/common.cpp), so that Python and C++ callers
    # see the same kinds for the same server answers.
    if not sqlstate:
        return "connection"
    if sqlstate == "42501":
        return "permission"
    if sqlstate in ("3F000", "42P01"):
        return "missing_schema"
    if sqlstate in ("28P01", "28000"):
        return "authentication"
    if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03"):
        return "connection"
    return "query"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - reported clearly
        raise _error("state", "write_outbox needs psycopg 3 (Debian: python3-psycopg)") from exc
    return psycopg


def _outbox_statement(psycopg: Any, conn: Any, event: "str | DomainEvent", payload: Optional[dict[str, Any]],
                      stream: str, schema: str, metadata: Optional[dict[str, Any]]) -> tuple[Any, dict[str, Any], str]:
    """Checks everything that can be checked before any SQL runs (names, the event, the
    transaction state) and builds the C++ outbox statement (transports/postgres/src/admin.cpp):
    (statement, parameters, what for error messages)."""
    _validate_stream(stream)
    _validate_schema(schema)
    if isinstance(event, DomainEvent):
        if payload is not None or metadata is not None:
            raise TypeError("write_outbox: give payload and metadata with an event name, not with a DomainEvent")
        built = event
    elif isinstance(event, str):
        built = DomainEvent.create(event, payload, metadata)
    else:
        raise TypeError(f"write_outbox: event must be an event name or a herald.DomainEvent, "
                        f"not {type(event).__name__}")

    status = conn.info.transaction_status
    TS = psycopg.pq.TransactionStatus
    if status == TS.INERROR:
        raise _error("state", "write_outbox: the caller's transaction has failed (roll it back first)")
    if status not in (TS.INTRANS, TS.IDLE):
        raise _error("connection" if status == TS.UNKNOWN else "state",
                     f"write_outbox: the connection is not usable (transaction status {status.name})")
    if status == TS.IDLE and conn.autocommit:
        raise _error("state", "write_outbox needs an open transaction on the caller's connection "
                              "(autocommit is on: use `with conn.transaction():`): the event must commit "
                              "or roll back with the business change")

    sql = psycopg.sql
    s = sql.Identifier(schema)  # quoted by libpq's PQescapeIdentifier, as in C++
    statement = sql.SQL(
        "WITH r AS (INSERT INTO {streams} AS s (stream, last_offset) VALUES (%(stream)s, %(count)s::bigint) "
        "ON CONFLICT (stream) DO UPDATE SET last_offset = s.last_offset + EXCLUDED.last_offset "
        "RETURNING last_offset), "
        "e AS (INSERT INTO {events} (stream, event_offset, event_id, event_name, body) "
        "SELECT %(stream)s, last_offset, %(event_id)s, %(event_name)s, %(body)s FROM r RETURNING event_offset) "
        "SELECT event_offset, pg_notify(%(channel)s, %(stream)s) FROM e"
    ).format(streams=sql.SQL("{}.streams").format(s), events=sql.SQL("{}.events").format(s))
    params = {"stream": stream, "count": 1, "event_id": built.event_id, "event_name": built.event_name,
              "body": built.to_json(), "channel": _herald._durable_notify_channel(schema)}
    return statement, params, f"writing event '{built.event_name}' to the outbox of stream '{stream}'"


def _server_error(exc: Any, what: str) -> Exception:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    primary = getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc).strip()
    text = f"{what}: {primary}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "")
    return _error(_classify(sqlstate), text, sqlstate)


def write_outbox(conn: Any, event: "str | DomainEvent", payload: Optional[dict[str, Any]] = None, *, stream: str,
                 schema: str = "herald", metadata: Optional[dict[str, Any]] = None) -> int:
    """Appends an event to `stream` inside the caller's transaction on `conn` (a psycopg 3
    ``Connection``); returns its offset. The event exists if and only if that transaction
    commits; consumers are woken by a NOTIFY that PostgreSQL sends at commit.

    `event` is an event name (the event is built from `payload` and `metadata`, like
    ``EventBus.publish``) or a ``DomainEvent``. The row is exactly what the C++
    ``durable::write_outbox`` writes: one statement reserves the offset (an upsert of the
    stream's counter row, whose lock is held until the transaction ends, so outbox transactions
    on one stream commit one after another and offsets become visible in order), inserts the
    event's JSON as its body, and queues ``pg_notify('<schema>_events', stream)``.

    On a connection in autocommit mode there must be an open transaction (``with
    conn.transaction():``); otherwise the statement would commit on its own, and that is a
    DurableError(kind="state"). Without autocommit, psycopg opens the transaction if none is open
    and the caller commits it. Names are validated like the C++ ones (DurableError
    kind="invalid_name"); server errors are DurableError with the SQLSTATE's kind."""
    psycopg = _psycopg()
    if not isinstance(conn, psycopg.Connection):
        hint = " (use write_outbox_async)" if isinstance(conn, psycopg.AsyncConnection) else ""
        raise TypeError(f"write_outbox: conn must be a psycopg.Connection, not {type(conn).__name__}{hint}")
    statement, params, what = _outbox_statement(psycopg, conn, event, payload, stream, schema, metadata)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            row = cur.fetchone()
    except psycopg.Error as exc:
        raise _server_error(exc, what) from exc
    return int(row[0])


async def write_outbox_async(conn: Any, event: "str | DomainEvent", payload: Optional[dict[str, Any]] = None, *,
                             stream: str, schema: str = "herald", metadata: Optional[dict[str, Any]] = None) -> int:
    """write_outbox() on a ``psycopg.AsyncConnection`` (``async with conn.transaction():``), with
    the same statement, rules and errors."""
    psycopg = _psycopg()
    if not isinstance(conn, psycopg.AsyncConnection):
        raise TypeError(f"write_outbox_async: conn must be a psycopg.AsyncConnection, not {type(conn).__name__}")
    statement, params, what = _outbox_statement(psycopg, conn, event, payload, stream, schema, metadata)
    try:
        async with conn.cursor() as cur:
            await cur.execute(statement, params)
            row = await cur.fetchone()
    except psycopg.Error as exc:
        raise _server_error(exc, what) from exc
    return int(row[0])


# ------------------------------------------------------------------------------------------------
# The consumer.

@dataclasses.dataclass(frozen=True)
class DurableRecord:
    """Where an event came from: its stream and offset, when it was stored (server time, as
    PostgreSQL prints it), the attempt (1 for the first try), whether it is a re-driven dead
    letter, and (for on_handle_error only) the stage that failed."""

    stream: str
    offset: int
    stored_at: str
    attempt: int = 1
    redrive: bool = False
    error_stage: Optional[str] = None


class _ConsumerRunner(_LoopRunner):
    """The consumer's loop runner: like every herald runner (the running loop at start(), else a
    loop of its own), and it remembers the coroutine in flight so that a stop() whose timeout
    ran out can cancel it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._inflight: Optional[concurrent.futures.Future[Any]] = None
        self._inflight_task: Optional[asyncio.Task[Any]] = None

    def await_(self, awaitable: Any) -> Any:
        loop, thread = self.resolve()
        if thread == threading.get_ident():  # not reachable from the consumer's own thread
            return super().await_(awaitable)

        async def run() -> Any:
            self._inflight_task = asyncio.current_task()
            try:
                return await awaitable
            finally:
                self._inflight_task = None

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        self._inflight = future
        try:
            return future.result()
        finally:
            self._inflight = None

    def in_coroutine_hook(self) -> bool:
        """Called from inside the hook coroutine running now (not merely from its loop's thread:
        another coroutine on that loop is outside the hook)."""
        task = self._inflight_task
        if task is None:
            return False
        try:
            return asyncio.current_task() is task
        except RuntimeError:  # no loop running on this thread
            return False

    def cancel_inflight(self) -> bool:
        future = self._inflight
        return future is not None and future.cancel()


def _takes(fn: Callable[..., Any], count: int) -> bool:
    """`fn` accepts `count` positional arguments (the hook's long form, with the record)."""
    try:
        inspect.signature(fn).bind(*([None] * count))
        return True
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): the short form
        return False


def _adapt(fn: Callable[..., Any], short: int, label: str) -> Callable[..., Any]:
    """The native side calls every hook with the record last; a hook written without it (the
    subscriber form) gets the short argument list."""
    if _takes(fn, short + 1):
        return fn
    if not _takes(fn, short):
        raise TypeError(f"{label} must take {short} or {short + 1} positional arguments "
                        f"(the last one the DurableRecord)")

    def call(*args: Any) -> Any:
        return fn(*args[:short])

    call.__qualname__ = getattr(fn, "__qualname__", label)
    return call


_HOOKS = ("handle", "before_handle", "after_handle", "on_handle_error")
_SHORT_ARITY = {"handle": 1, "before_handle": 1, "after_handle": 2, "on_handle_error": 2}
_running: "set[DurableConsumer]" = set()
_running_lock = threading.Lock()
_live: "weakref.WeakSet[DurableConsumer]" = weakref.WeakSet()


class DurableConsumer:
    """One consumer group of one PostgreSQL stream: every event after the group's committed
    offset, in offset order, at least once (docs/durable.md).

    Callable style::

        consumer = herald.DurableConsumer(dsn=..., stream="payments_domain_events", group="billing",
                                          patterns=["payment.#"], start="beginning", handle=charge)

    or class style (hooks as methods, options as class attributes or constructor arguments)::

        class Billing(herald.DurableConsumer):
            stream, group, patterns = "payments_domain_events", "billing", ("payment.#",)
            async def handle(self, event): ...

    Hooks, each a plain function or ``async def``, all run one event at a time:
    ``before_handle(event[, record])`` (False: skipped, counted), ``handle(event[, record])``
    (None/True or ``SubscriberResult.ok()`` is success; False, ``SubscriberResult.failure(msg)``
    or an exception is a failed attempt), ``after_handle(event, result[, record])``,
    ``on_handle_error(event, error[, record])`` (the original exception, or a HandlerFailure for
    a failure result; ``record.error_stage`` names the hook). A failed attempt is retried after
    `retry_initial` seconds, doubling up to `retry_max`, `max_attempts` times in all; then the
    event goes to the dead letters and the group moves on.

    Several consumers of one group share it by a lease: one is active, the others stand by and
    take over when it stops, or when its lease (`lease` seconds) runs out after a crash.

    Threads: plain hooks run on the consumer's own thread, holding the GIL only while they run.
    Coroutine hooks run on the event loop that was running when start() was called (``async
    with consumer:``), else on a loop the consumer owns. start() connects (DurableError naming
    the problem, with the DSN's password redacted). stop() lets the event in hand finish (its
    offset is committed), releases the lease and joins; called from inside a hook (or a hook
    coroutine) it only asks the consumer to stop after the event in hand, and returns False.
    A started consumer runs until stop(), even when no reference to it is left, and is stopped
    at interpreter exit.
    """

    stream: str = ""
    group: str = ""
    patterns: "str | Iterable[str]" = ("#",)
    start_position: StartPosition = "end"
    schema: str = "herald"

    def __init__(self, dsn: Optional[str] = None, stream: Optional[str] = None, group: Optional[str] = None,
                 patterns: "str | Iterable[str] | None" = None, *, start: Optional[StartPosition] = None,
                 dsn_env: Optional[str] = None, schema: Optional[str] = None,
                 handle: Optional[Callable[..., Any]] = None,
                 before_handle: Optional[Callable[..., Any]] = None,
                 after_handle: Optional[Callable[..., Any]] = None,
                 on_handle_error: Optional[Callable[..., Any]] = None,
                 batch_size: int = 100, max_attempts: int = 5, retry_initial: Seconds = 0.1,
                 retry_max: Seconds = 5.0, lease: Seconds = 10.0, poll_interval: Seconds = 1.0,
                 reconnect_initial: Seconds = 0.05, reconnect_max: Seconds = 5.0,
                 member_id: Optional[str] = None, name: Optional[str] = None) -> None:
        cls = type(self)
        self.stream = stream if stream is not None else cls.stream
        self.group = group if group is not None else cls.group
        self.schema = schema if schema is not None else cls.schema
        pats = patterns if patterns is not None else cls.patterns
        self.patterns = [pats] if isinstance(pats, str) else list(pats)
        start = start if start is not None else cls.start_position
        # Everything that can be checked without a server is checked now, naming the input.
        _validate_stream(self.stream, "stream")
        _validate_stream(self.group, "group")
        _validate_schema(self.schema)
        for p in self.patterns:
            Pattern(p)  # PatternError naming the pattern
        if not self.patterns:
            raise ValueError("patterns must not be empty (use '#' for every event)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self._dsn = _dsn_from(dsn, dsn_env)
        self.name = name or f"{cls.__name__ if cls is not DurableConsumer else 'durable'}:{self.group}"
        self.member_id = member_id or _herald.new_uuid_v7()
        self._options: dict[str, Any] = {
            "dsn": self._dsn, "schema": self.schema, "stream": self.stream, "group": self.group,
            "start": _start_text(start), "patterns": self.patterns, "batch_size": batch_size,
            "max_attempts": max_attempts, "retry_initial": _seconds(retry_initial, "retry_initial"),
            "retry_max": _seconds(retry_max, "retry_max"), "lease": _seconds(lease, "lease"),
            "poll_interval": _seconds(poll_interval, "poll_interval"),
            "reconnect_initial": _seconds(reconnect_initial, "reconnect_initial"),
            "reconnect_max": _seconds(reconnect_max, "reconnect_max"), "member_id": self.member_id,
            "name": self.name,
        }
        given = {"handle": handle, "before_handle": before_handle, "after_handle": after_handle,
                 "on_handle_error": on_handle_error}
        self._hooks: dict[str, Optional[Callable[..., Any]]] = {}
        for hook in _HOOKS:
            fn = given[hook]
            if fn is None and getattr(cls, hook) is not getattr(DurableConsumer, hook):
                fn = getattr(self, hook)  # a subclass's method
            elif fn is not None and not callable(fn):
                raise TypeError(f"{hook} must be callable, not {type(fn).__name__}")
            self._hooks[hook] = None if fn is None else _adapt(fn, _SHORT_ARITY[hook], f"{self.name}: {hook}")
        if self._hooks["handle"] is None:
            raise TypeError(f"durable consumer '{self.name}' has no handle: pass handle=... or "
                            "subclass DurableConsumer and define handle(self, event)")
        self._lock = threading.Lock()  # guards _native, _stopper, _stopped
        self._start_lock = threading.Lock()
        self._native: Optional[_herald._DurableConsumer] = None
        self._runner = _ConsumerRunner(self.name)
        self._stopper: Optional[threading.Thread] = None
        self._stopped = False
        _live.add(self)

    # Base hooks: a subclass overrides what it needs (plain or async def); the base ones are not
    # called (they never take the GIL).
    def handle(self, event: DomainEvent) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.handle")

    def before_handle(self, event: DomainEvent) -> bool:
        return True

    def after_handle(self, event: DomainEvent, result: Any) -> None:
        return None

    def on_handle_error(self, event: DomainEvent, error: BaseException) -> None:
        return None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "DurableConsumer":
        """Connects, checks the schema, creates the group at its start position if it is new and
        starts reading. DurableError (kind connection, authentication, missing_schema, ...)
        naming the problem; StateError on a second call (a consumer is not restartable)."""
        _require_native(f"durable consumer '{self.name}'")
        # Held until the native start() returned: a stop() from another thread meanwhile waits
        # for it, instead of finding no consumer thread to join and releasing the hooks under a
        # thread that is about to start.
        with self._start_lock:
            self._start_locked()
        return self

    def _start_locked(self) -> None:
        with self._lock:
            if self._native is not None or self._stopped:
                raise StateError(f"durable consumer '{self.name}' was already started or stopped (not "
                                 "restartable; create a new one)")
            try:
                loop: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._runner.capture(loop)
            h = self._hooks
            handle = h["handle"]
            assert handle is not None  # checked in __init__
            native = _herald._DurableConsumer(self._options, self._runner, DurableRecord, handle,
                                              h["before_handle"], h["after_handle"], h["on_handle_error"])
            self._native = native
        try:
            native.start()  # GIL released while it connects
        except BaseException:
            native.release_handlers()
            self._runner.release()
            self._runner.close()
            self._stopped = True
            raise
        with _running_lock:
            _running.add(self)

    def _in_hook(self) -> bool:
        native = self._native
        return native is not None and (native.on_consumer_thread() or self._runner.in_coroutine_hook())

    def _finish(self) -> None:
        # The stopper thread: the only caller of the native stop() (one controlling thread, as
        # herald::DurableConsumer asks), so a stop() that timed out can be waited for again.
        native = self._native
        assert native is not None  # the stopper thread is started only for a started consumer
        try:
            native.stop()  # GIL released while it joins
        finally:
            native.release_handlers()
            self._runner.close()
            self._runner.release()
            with _running_lock:
                _running.discard(self)

    def stop(self, timeout: Optional[float] = 30.0) -> bool:
        """Stops after the event in hand (committed), releases the lease and joins; True once
        stopped. Idempotent; a consumer never started just becomes unstartable.

        From inside a hook (or a hook coroutine) it is a request: the consumer stops after the
        event in hand, and stop() returns False at once (call it again from elsewhere to wait).
        If `timeout` seconds pass with a hook still running, a hook coroutine in flight is
        cancelled (the event is not committed and comes again); a plain hook cannot be
        interrupted, and TimeoutError says so (the consumer keeps stopping; call stop() again).
        Not from the thread of the event loop the consumer runs its coroutines on, outside a
        hook: ``await consumer.astop()`` there."""
        with self._lock:
            native = self._native
            if native is None:
                self._stopped = True
                return True
        if self._in_hook():
            native.request_stop()
            return False
        captured = self._runner._captured
        if (captured is not None and captured.is_running() and self._runner._captured_thread == threading.get_ident()
                and self._stopper_alive() is not False):
            raise StateError(f"durable consumer '{self.name}': stop() would block the event loop its "
                             "coroutine hooks run on; use `await consumer.astop()` or `async with consumer`")
        with self._start_lock, self._lock:
            if self._stopper is None:
                native.request_stop()
                self._stopper = threading.Thread(target=self._finish, name=f"herald-stop-{self.name}",
                                                 daemon=True)
                self._stopper.start()
            stopper = self._stopper
        stopper.join(timeout)  # releases the GIL
        if stopper.is_alive() and self._runner.cancel_inflight():
            logger.warning("durable consumer '%s': stop timed out after %ss; cancelled the hook coroutine "
                           "in flight (its event is not committed and will come again)", self.name, timeout)
            stopper.join(5.0)
        if stopper.is_alive():
            raise TimeoutError(f"durable consumer '{self.name}': a hook is still running {timeout}s after "
                               "stop(); the consumer stops when it returns (call stop() again to wait)")
        self._stopped = True
        return True

    def _stopper_alive(self) -> Optional[bool]:
        stopper = self._stopper
        return None if stopper is None else stopper.is_alive()

    async def astart(self) -> "DurableConsumer":
        """start() for coroutines: coroutine hooks run on the running loop; connecting runs in an
        executor so the loop keeps going."""
        loop = asyncio.get_running_loop()
        self._runner.capture(loop)
        # The capture above stays: start() captures only a loop running on its own thread.
        await loop.run_in_executor(None, self.start)
        return self

    async def astop(self, timeout: Optional[float] = 30.0) -> bool:
        """stop() for coroutines: waits in an executor, so hook coroutines on this loop finish."""
        loop = asyncio.get_running_loop()
        if self._in_hook():
            return self.stop(timeout)
        with self._lock:
            native = self._native
        if native is None:
            return self.stop(timeout)
        # The executor thread is not the loop's, so stop() does not refuse; the loop stays free.
        return await loop.run_in_executor(None, self.stop, timeout)

    def __enter__(self) -> "DurableConsumer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> "DurableConsumer":
        return await self.astart()

    async def __aexit__(self, *exc: Any) -> None:
        await self.astop()

    # -- status ------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """"created", "running", "stopping" or "stopped"."""
        if self._native is None:
            return "stopped" if self._stopped else "created"
        if self._stopped:
            return "stopped"
        alive = self._stopper_alive()
        if alive is None:
            return "running"
        return "stopping" if alive else "stopped"

    def stats(self) -> dict[str, Any]:
        """The native counters ({"handled", "failed_attempts", "retries", "dead_lettered",
        "malformed", "filtered", "skipped", "redriven", "gaps", "reconnects", "leases_acquired",
        "lease_lost", "active", "position", "committed_offset", "member_id", "last_error", ...})
        and "state"; before start() only the names and "state"."""
        native = self._native
        if native is None:
            out: dict[str, Any] = {"stream": self.stream, "group": self.group, "member_id": self.member_id}
        else:
            out = native.stats()
        out["state"] = self.state
        return out

    @property
    def active(self) -> bool:
        """True while this member holds the group's lease (and reads)."""
        native = self._native
        return bool(native is not None and native.active)

    @property
    def committed_offset(self) -> int:
        """The last offset this member committed (0 before its first commit)."""
        native = self._native
        return 0 if native is None else native.committed_offset

    @property
    def dsn(self) -> str:
        """The DSN with its password redacted."""
        return redact_dsn(self._dsn)

    def __repr__(self) -> str:
        return (f"DurableConsumer(name={self.name!r}, stream={self.stream!r}, group={self.group!r}, "
                f"state={self.state!r})")


def _stop_at_exit() -> None:
    # C++ threads must not call into a finalizing interpreter: stop every running consumer first
    # (registered after herald's own exit handler, so it runs before the loops are closed).
    with _running_lock:
        consumers = list(_running)
    for consumer in consumers:
        try:
            logger.info("herald: stopping durable consumer '%s' at interpreter exit", consumer.name)
            consumer.stop(timeout=5.0)
        except BaseException as exc:  # noqa: BLE001 - exit must go on
            _log_exception(f"herald: stopping durable consumer '{consumer.name}' at exit failed", exc)


atexit.register(_stop_at_exit)
