"""tasker-core's Python domain-events API (``tasker_core.domain_events``) on herald's engine.

A module written against tasker-core runs with its import changed::

    from tasker_core.domain_events import BasePublisher, BaseSubscriber, ...   # before
    from herald.tasker_core import BasePublisher, BaseSubscriber, ...          # after

The names, signatures and semantics are tasker-core's (read from its module and its test suite);
underneath runs herald:

- ``InProcessDomainEventPoller`` is one herald subscription (pattern ``#``) on a herald
  ``EventBus``: the module's default bus, a bus you pass, or a ``Worker``'s bus. Its callbacks
  run one event at a time, in publish order, on a herald dispatcher thread (tasker-core ran them
  on its polling thread). There is no polling: herald pushes, so ``polling_interval_ms`` and
  ``max_events_per_poll`` are accepted and ignored.
- ``BaseSubscriber.start(poller)`` / ``SubscriberRegistry.start_all(poller)`` register one
  callback per pattern with the poller, as tasker-core does; patterns are herald ``Pattern``s
  (``*`` is one token, ``#`` any number, ``*`` alone every event), not ``fnmatch`` globs.
- ``BasePublisher.publish(ctx)`` runs tasker-core's hooks, then publishes the event on the
  default bus (``set_default_bus`` points it at a Worker's bus or any EventBus), where pollers
  see it. Registered in ``PublisherRegistry``, the same publisher is also used by a herald
  ``Worker`` for the step declarations that name it (``publisher:``): herald's pipeline then
  runs its hooks, with herald's condition check, schema check and delivery modes.
- ``EventDeclaration``, ``StepResult``, ``PublishContext``, ``StepEventContext`` and
  ``InProcessDomainEvent`` are small pydantic-v2-style models (keyword constructor with
  validation, ``model_dump()``, ``model_validate()``, ``model_copy()``, ``model_construct()``)
  without pydantic: a ``ValidationError`` (a ``ValueError``, and a ``herald.ValidationError``)
  lists every bad field.

Where herald's own API chose differently, this module follows tasker-core (docs:
docs/migrating-from-tasker-core.md lists every difference): registering a publisher or
subscriber under a name that is taken overwrites it (herald's registries raise RegistryError);
``register`` raises ``ValueError`` for a non-publisher and ``RuntimeError`` on a frozen registry;
a subscriber whose patterns overlap handles a matching event once per matching pattern (herald's
own subscribers get it once); exceptions from ``should_publish``, ``transform_payload`` and
``additional_metadata`` propagate out of ``publish()`` (herald's pipeline contains them).
"""
from __future__ import annotations

import dataclasses
import datetime
import inspect
import logging
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Optional, TypeVar, Union

from . import BasePublisher as _HeraldBasePublisher
from . import DomainEvent as _HeraldDomainEvent
from . import EventBus, Pattern, RegistryError, Subscription, Worker
from . import PublisherRegistry as _HeraldPublisherRegistry
from . import StepEventContext as _HeraldStepEventContext
from . import ValidationError as _HeraldValidationError

__all__ = [
    # Cross-language type definitions (tasker-core TAS-112)
    "EventDeclaration", "StepResult", "PublishContext",
    # Step event context
    "StepEventContext",
    # Publisher system
    "BasePublisher", "DefaultPublisher", "PublisherRegistry",
    # Subscriber system
    "BaseSubscriber", "SubscriberRegistry",
    # Event polling and the event it hands out
    "InProcessDomainEventPoller", "InProcessDomainEvent", "DomainEventMetadata", "ExecutionResult",
    # herald additions
    "ValidationError", "default_bus", "set_default_bus", "herald_steps",
]

logger = logging.getLogger("herald.tasker_core")

_M = TypeVar("_M", bound="_Model")

PublicationCondition = str  # "success" | "failure" | "retryable_failure" | "permanent_failure" | "always"
DeliveryMode = str  # "durable" | "fast" | "broadcast" (herald also accepts "in_process", "zeromq")

_CONDITIONS = ("success", "failure", "retryable_failure", "permanent_failure", "always")
_DELIVERY_MODES = ("durable", "fast", "broadcast", "in_process", "zeromq")


# ------------------------------------------------------------------------------------------------
# Models: the pydantic-v2 surface tasker-core's code and tests use, on plain classes.

class ValidationError(_HeraldValidationError):
    """A model was built from bad values. Lists every bad field, like pydantic's (whose
    ValidationError is also a ValueError). ``errors()`` returns ``[{"loc", "msg"}]``."""

    def __init__(self, model: str, problems: list[tuple[str, str]]) -> None:
        self.model = model
        self._problems = problems
        lines = [f"{len(problems)} validation error{'s' if len(problems) != 1 else ''} for {model}"]
        for loc, msg in problems:
            lines.append(f"{loc}\n  {msg}")
        super().__init__("\n".join(lines))

    def errors(self) -> list[dict[str, Any]]:
        return [{"loc": (loc,), "msg": msg} for loc, msg in self._problems]


class _FieldError(Exception):
    pass


_MISSING: Any = object()


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    check: Callable[[Any], Any]
    default: Any = _MISSING
    factory: Optional[Callable[[], Any]] = None
    alias: Optional[str] = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.factory is None

    def initial(self) -> Any:
        return self.factory() if self.factory is not None else self.default


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, uuid.UUID):  # herald carries ids as text
        return str(value)
    raise _FieldError(f"Input should be a valid string (got {_type_name(value)})")


def _check_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise _FieldError(f"Input should be a valid boolean (got {value!r})")


def _check_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _FieldError(f"Input should be a valid integer (got {_type_name(value)})")


def _check_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise _FieldError(f"Input should be a valid dictionary (got {_type_name(value)})")


def _check_any(value: Any) -> Any:
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(value: Any) -> Any:
        return None if value is None else check(value)
    return optional


def _literal(*allowed: str) -> Callable[[Any], str]:
    def literal(value: Any) -> str:
        if isinstance(value, str) and value in allowed:
            return value
        expected = ", ".join(repr(a) for a in allowed)
        raise _FieldError(f"Input should be one of {expected} (got {value!r})")
    return literal


def _model(cls_name: str) -> Callable[[Any], Any]:
    def model(value: Any) -> Any:
        cls = globals()[cls_name]
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.model_validate(value)
        raise _FieldError(f"Input should be a valid {cls_name} or dictionary (got {_type_name(value)})")
    return model


class _Model:
    """Keyword construction with validation; unknown keywords are ignored (pydantic's default)."""

    _fields: ClassVar[tuple[_Field, ...]] = ()
    _keep_extra: ClassVar[bool] = False

    def __init__(self, **data: Any) -> None:
        problems: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        for f in self._fields:
            if f.name in data:
                raw = data[f.name]
            elif f.alias is not None and f.alias in data:
                raw = data[f.alias]
            elif f.required:
                problems.append((f.alias or f.name, "Field required"))
                continue
            else:
                values[f.name] = f.initial()
                continue
            try:
                values[f.name] = f.check(raw)
            except _FieldError as exc:
                problems.append((f.alias or f.name, str(exc)))
        if problems:
            raise ValidationError(type(self).__name__, problems)
        for key, value in values.items():
            object.__setattr__(self, key, value)
        extra: dict[str, Any] = {}
        if self._keep_extra:
            known = {f.name for f in self._fields} | {f.alias for f in self._fields if f.alias}
            extra = {k: v for k, v in data.items() if k not in known}
        object.__setattr__(self, "_extra", extra)

    @classmethod
    def model_validate(cls: type[_M], obj: Any) -> _M:
        """Builds from a dict (or returns an instance of the class unchanged)."""
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, Mapping):
            return cls(**dict(obj))
        raise ValidationError(cls.__name__, [("__root__", f"Input should be a valid dictionary or "
                                                          f"{cls.__name__} (got {_type_name(obj)})")])

    @classmethod
    def model_construct(cls: type[_M], **values: Any) -> _M:
        """Builds without validation (defaults fill what is missing)."""
        obj = cls.__new__(cls)
        for f in cls._fields:
            if f.name in values:
                value = values[f.name]
            elif f.alias is not None and f.alias in values:
                value = values[f.alias]
            else:
                value = None if f.required else f.initial()
            object.__setattr__(obj, f.name, value)
        object.__setattr__(obj, "_extra", {})
        return obj

    @property
    def model_extra(self) -> dict[str, Any]:
        """Keys given beyond the declared fields (kept only by models that keep them)."""
        extra: dict[str, Any] = getattr(self, "_extra", {})
        return extra

    def model_dump(self, *, by_alias: bool = False, exclude_none: bool = False,
                   mode: str = "python") -> dict[str, Any]:
        """The fields as a dict (nested models as dicts). ``mode`` is accepted for pydantic
        compatibility; every value here is already JSON-ready except what you put in dicts."""
        out: dict[str, Any] = {}
        for f in self._fields:
            value = getattr(self, f.name)
            if isinstance(value, _Model):
                value = value.model_dump(by_alias=by_alias, exclude_none=exclude_none, mode=mode)
            if exclude_none and value is None:
                continue
            out[f.alias if by_alias and f.alias else f.name] = value
        out.update(self.model_extra)
        return out

    def model_copy(self: _M, *, update: Optional[Mapping[str, Any]] = None, deep: bool = False) -> _M:
        import copy

        obj = copy.deepcopy(self) if deep else copy.copy(self)
        for key, value in (update or {}).items():
            object.__setattr__(obj, key, value)
        return obj

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Model)
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # mutable, like pydantic models

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self._fields)
        return f"{type(self).__name__}({fields})"


class EventDeclaration(_Model):
    """One entry of a step's ``publishes_events`` (YAML). ``schema`` is given as ``schema=`` or
    ``schema_=`` and read as ``.schema``. Delivery modes: tasker-core's ``durable``, ``fast``,
    ``broadcast``, and herald's ``in_process`` and ``zeromq``. ``to_herald()`` gives the entry
    herald's configuration takes."""

    name: str
    condition: Optional[PublicationCondition]
    delivery_mode: Optional[DeliveryMode]
    publisher: Optional[str]
    schema_: Optional[dict[str, Any]]

    _fields = (
        _Field("name", _check_str),
        _Field("condition", _optional(_literal(*_CONDITIONS)), default=None),
        _Field("delivery_mode", _optional(_literal(*_DELIVERY_MODES)), default=None),
        _Field("publisher", _optional(_check_str), default=None),
        _Field("schema_", _optional(_check_dict), default=None, alias="schema"),
    )

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)

    @property
    def schema(self) -> Optional[dict[str, Any]]:
        """The JSON schema the payload is checked against (optional)."""
        return self.schema_

    def to_herald(self, *, durable_as: Optional[str] = None) -> dict[str, Any]:
        """This declaration as herald's configuration takes it (``fast`` becomes
        ``in_process``). ``durable`` is herald's durable road too (PostgreSQL: the worker needs
        ``transports.postgres``, see docs/durable.md); ``durable_as`` maps it to another mode
        instead (``"zeromq"`` or ``"broadcast"``) for a deployment without a database."""
        out: dict[str, Any] = {"name": self.name}
        if self.condition is not None:
            out["condition"] = self.condition
        mode = self.delivery_mode
        if mode == "durable" and durable_as is not None:
            if durable_as not in _DELIVERY_MODES:
                raise ValueError(f"event '{self.name}': durable_as {durable_as!r} is not a delivery mode "
                                 f"(one of {', '.join(_DELIVERY_MODES)})")
            mode = durable_as
        if mode == "fast":
            mode = "in_process"
        if mode is not None:
            out["delivery_mode"] = mode
        if self.publisher is not None:
            out["publisher"] = self.publisher
        if self.schema_ is not None:
            out["schema"] = self.schema_
        return out


class StepResult(_Model):
    """A step's outcome as publishers see it."""

    success: bool
    result: Optional[dict[str, Any]]
    metadata: Optional[dict[str, Any]]

    _fields = (
        _Field("success", _check_bool),
        _Field("result", _optional(_check_dict), default=None),
        _Field("metadata", _optional(_check_dict), default=None),
    )

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)


class StepEventContext(_Model):
    """What a tasker-core publisher's hooks see. ``from_herald`` builds one from the context
    herald's pipeline hands its publishers; ``from_step_context`` from a tasker-core StepContext.

    (``herald.StepEventContext``, herald's own, is a different class: it wraps the completion
    and the declaration.)"""

    task_uuid: str
    step_uuid: str
    step_name: str
    namespace: str
    correlation_id: str
    result: Optional[dict[str, Any]]
    metadata: dict[str, Any]

    _fields = (
        _Field("task_uuid", _check_str),
        _Field("step_uuid", _check_str),
        _Field("step_name", _check_str),
        _Field("namespace", _check_str),
        _Field("correlation_id", _check_str),
        _Field("result", _optional(_check_dict), default=None),
        _Field("metadata", _check_dict, factory=dict),
    )

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)

    @classmethod
    def from_step_context(cls, step_context: Any, result: Optional[dict[str, Any]] = None,
                          metadata: Optional[dict[str, Any]] = None) -> "StepEventContext":
        """From a tasker-core StepContext (task_uuid, step_uuid, handler_name, correlation_id and
        the namespace under event.task_sequence_step["task"]["task"])."""
        namespace = "default"
        event = getattr(step_context, "event", None)
        tss = getattr(event, "task_sequence_step", None)
        if isinstance(tss, Mapping):
            namespace = tss.get("task", {}).get("task", {}).get("namespace", "default")
        elif getattr(step_context, "namespace", None):
            namespace = step_context.namespace
        step_name = getattr(step_context, "handler_name", None) or getattr(step_context, "step_name", "")
        return cls(task_uuid=str(step_context.task_uuid), step_uuid=str(step_context.step_uuid),
                   step_name=step_name, namespace=namespace,
                   correlation_id=str(step_context.correlation_id), result=result,
                   metadata=metadata or {})

    @classmethod
    def from_herald(cls, ctx: _HeraldStepEventContext) -> "StepEventContext":
        """From the context herald's publishing pipeline hands a publisher. A result that is
        not a dict (herald allows any JSON value) is kept as it is, unvalidated."""
        return cls.model_construct(task_uuid=ctx.task_uuid, step_uuid=ctx.step_uuid,
                                   step_name=ctx.step_name, namespace=ctx.namespace,
                                   correlation_id=ctx.correlation_id,
                                   result=ctx.result if ctx.success or ctx.result else None,
                                   metadata=dict(ctx.metadata or {}))


class PublishContext(_Model):
    """Everything ``publish()`` needs in one value (tasker-core's cross-language API)."""

    event_name: str
    step_result: StepResult
    event_declaration: Optional[EventDeclaration]
    step_context: Optional[StepEventContext]

    _fields = (
        _Field("event_name", _check_str),
        _Field("step_result", _model("StepResult")),
        _Field("event_declaration", _optional(_model("EventDeclaration")), default=None),
        _Field("step_context", _optional(_model("StepEventContext")), default=None),
    )

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)


class DomainEventMetadata(_Model):
    """An event's metadata as tasker-core names it; further keys (a publisher's
    additional_metadata, herald's ``publisher``) are kept (``model_extra``) and dumped too."""

    task_uuid: str
    step_uuid: Optional[str]
    step_name: Optional[str]
    namespace: Optional[str]
    correlation_id: str
    fired_at: str
    fired_by: str

    _keep_extra = True
    _fields = (
        _Field("task_uuid", _check_str),
        _Field("step_uuid", _optional(_check_str), default=None),
        _Field("step_name", _optional(_check_str), default=None),
        _Field("namespace", _optional(_check_str), default=None),
        _Field("correlation_id", _check_str),
        _Field("fired_at", _check_str),
        _Field("fired_by", _check_str),
    )

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("_extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class ExecutionResult(_Model):
    """The outcome of the step that fired an event."""

    success: bool
    result: Optional[dict[str, Any]]
    error_message: Optional[str]
    error_type: Optional[str]
    execution_time_ms: Optional[int]

    _fields = (
        _Field("success", _check_bool),
        _Field("result", _optional(_check_dict), default=None),
        _Field("error_message", _optional(_check_str), default=None),
        _Field("error_type", _optional(_check_str), default=None),
        _Field("execution_time_ms", _optional(_check_int), default=None),
    )

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)


class InProcessDomainEvent(_Model):
    """The event a poller callback receives, shaped as tasker-core's (``event_id``,
    ``event_name``, ``event_version``, ``metadata``, ``payload``, ``execution_result``);
    ``model_dump()`` is the dict handed to ``BaseSubscriber.handle``. Ids are ``str`` (tasker-core:
    ``uuid.UUID``; ``str(x)`` works on both). ``herald_event`` is herald's own immutable
    ``DomainEvent`` (``herald.InProcessDomainEvent``) when the event came through herald."""

    event_id: str
    event_name: str
    event_version: str
    metadata: DomainEventMetadata
    payload: dict[str, Any]
    execution_result: Optional[ExecutionResult]

    _fields = (
        _Field("event_id", _check_str),
        _Field("event_name", _check_str),
        _Field("event_version", _check_str),
        _Field("metadata", _model("DomainEventMetadata")),
        _Field("payload", _check_dict, factory=dict),
        _Field("execution_result", _optional(_model("ExecutionResult")), default=None),
    )

    herald_event: Optional[_HeraldDomainEvent] = None

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)

    @classmethod
    def from_herald(cls, event: _HeraldDomainEvent) -> "InProcessDomainEvent":
        """The tasker-core view of a herald event. Empty optional metadata (herald uses "")
        becomes None; a payload that is not a dict is handed over as ``{"value": payload}``."""
        meta = dict(event.metadata)
        for key in ("step_uuid", "step_name", "namespace"):
            if meta.get(key) == "":
                meta[key] = None
        for key in ("task_uuid", "correlation_id", "fired_at", "fired_by"):
            meta.setdefault(key, "")
        execution = event.execution_result or {}
        error = execution.get("error") or {}
        payload = event.payload
        obj = cls.model_construct(
            event_id=event.event_id, event_name=event.event_name,
            event_version=str(event.to_dict().get("event_version", "1.0")),
            metadata=DomainEventMetadata(**meta),
            payload=payload if isinstance(payload, dict) else {"value": payload},
            execution_result=ExecutionResult.model_construct(
                success=bool(execution.get("success", True)), result=None,
                error_message=error.get("message") or None, error_type=error.get("error_type") or None,
                execution_time_ms=None))
        object.__setattr__(obj, "herald_event", event)
        return obj


def _event_dict(event: Any) -> dict[str, Any]:
    """The dict a tasker-core handler receives, from whatever a poller handed over."""
    if isinstance(event, dict):
        return event
    if isinstance(event, _HeraldDomainEvent):
        return InProcessDomainEvent.from_herald(event).model_dump()
    dumped: dict[str, Any] = event.model_dump()
    return dumped


# ------------------------------------------------------------------------------------------------
# The bus publish() routes to and pollers listen on.

_default_lock = threading.Lock()
_default_target: Union[EventBus, Worker, None] = None
_own_bus: Optional[EventBus] = None


def _resolve_bus(target: Union[EventBus, Worker, None]) -> EventBus:
    if isinstance(target, Worker):
        return target.bus  # StateError until the worker runs
    if isinstance(target, EventBus):
        return target
    return default_bus()


def default_bus() -> EventBus:
    """The bus ``BasePublisher.publish()`` routes to and ``InProcessDomainEventPoller()``
    listens on: the one ``set_default_bus`` named, else an EventBus this module owns (two
    dispatcher threads, created on first use, closed at interpreter exit)."""
    global _own_bus
    with _default_lock:
        target = _default_target
        if target is None:
            if _own_bus is None or _own_bus.closed:
                _own_bus = EventBus(2, name="tasker_core")
            return _own_bus
    return _resolve_bus(target)


def set_default_bus(target: Union[EventBus, Worker, None]) -> None:
    """Routes ``publish()`` and pollers built without ``bus=`` to `target`: an EventBus, or a
    Worker (its bus, once it runs). None goes back to the module's own bus."""
    global _default_target
    if target is not None and not isinstance(target, (EventBus, Worker)):
        raise TypeError(f"set_default_bus expects an EventBus, a Worker or None, got {_type_name(target)}")
    with _default_lock:
        _default_target = target


# ------------------------------------------------------------------------------------------------
# Publishers.

def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: no "was never awaited" warning later
        raise TypeError(f"{getattr(fn, '__qualname__', fn)} returned an awaitable: publish() runs "
                        "tasker-core publisher hooks synchronously (a herald Worker awaits async def hooks)")
    return result


class BasePublisher(ABC):
    """A tasker-core step-event publisher: ``publisher_name`` (abstract) and the hooks.

    ``publish(ctx)``: should_publish -> transform_payload -> additional_metadata ->
    before_publish(event_name, payload, metadata) (False aborts) -> herald bus publish ->
    after_publish(event_name, payload, metadata); an exception from before_publish, the bus or
    after_publish goes to on_publish_error(event_name, error, payload) and publish returns False.
    Exceptions from the first three hooks propagate, as in tasker-core.

    Used by a herald Worker (registered in PublisherRegistry, named by a declaration's
    ``publisher``), herald's pipeline calls the same hooks; there the payload and metadata
    handed to before_publish/after_publish are the built (immutable) event's, every error is
    contained (herald's rule: publishing never fails the step), and hooks may be ``async def``
    (awaited on the worker's loop). ``publish()`` itself runs them synchronously: an awaitable
    from a hook is a TypeError there."""

    @property
    @abstractmethod
    def publisher_name(self) -> str:
        """The name declarations refer to (a step's ``publisher:``)."""

    def should_publish(self, ctx: StepEventContext) -> bool:
        return True

    def transform_payload(self, ctx: StepEventContext) -> dict[str, Any]:
        return ctx.result or {}

    def additional_metadata(self, _ctx: StepEventContext) -> dict[str, Any]:
        return {}

    def before_publish(self, event_name: str, _payload: dict[str, Any], _metadata: dict[str, Any]) -> bool:
        logger.debug("Publishing event: %s", event_name)
        return True

    def after_publish(self, event_name: str, _payload: dict[str, Any], _metadata: dict[str, Any]) -> None:
        logger.debug("Event published: %s", event_name)

    def on_publish_error(self, event_name: str, error: Exception, _payload: dict[str, Any]) -> None:
        logger.error("Failed to publish event %s: %s", event_name, error)

    def publish(self, ctx: Union[StepEventContext, PublishContext], event_name: Optional[str] = None, *,
                bus: Union[EventBus, Worker, None] = None) -> bool:
        """Runs the hooks and publishes the event on `bus` (default: ``default_bus()``).
        `ctx` is a StepEventContext (the event is `event_name`, default the step's name) or a
        PublishContext (its event_name and step_context; step_result's result when the context
        has none). True when published; False when skipped, aborted or failed. Payload and
        metadata must be JSON-serialisable (herald's TypeError, naming the key path, goes to
        on_publish_error)."""
        if isinstance(ctx, PublishContext):
            event_name = event_name or ctx.event_name
            step_ctx = ctx.step_context
            if step_ctx is None:
                step_ctx = StepEventContext.model_construct(
                    task_uuid="", step_uuid="", step_name="", namespace="", correlation_id="",
                    result=ctx.step_result.result, metadata=dict(ctx.step_result.metadata or {}))
            elif ctx.step_result.result and not step_ctx.result:
                step_ctx = step_ctx.model_copy(update={"result": ctx.step_result.result})
        else:
            step_ctx = ctx
        name = event_name or step_ctx.step_name

        if not _call(self.should_publish, step_ctx):
            return False
        payload = _call(self.transform_payload, step_ctx)
        base: dict[str, Any] = {
            "publisher": self.publisher_name,
            "published_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "task_uuid": step_ctx.task_uuid,
            "step_uuid": step_ctx.step_uuid,
            "step_name": step_ctx.step_name,
            "namespace": step_ctx.namespace,
            "correlation_id": step_ctx.correlation_id,
        }
        metadata = {**base, **(step_ctx.metadata or {}), **_call(self.additional_metadata, step_ctx)}
        try:
            if not _call(self.before_publish, name, payload, metadata):
                return False
            _resolve_bus(bus).publish(name, payload, metadata={"fired_by": self.publisher_name, **metadata})
            _call(self.after_publish, name, payload, metadata)
            return True
        except Exception as exc:  # noqa: BLE001 - tasker-core's contract: the hook decides
            self.on_publish_error(name, exc, payload)
            return False


class DefaultPublisher(BasePublisher):
    """The publisher used when none is named: the step result is the payload."""

    @property
    def publisher_name(self) -> str:
        return "default"

    def transform_payload(self, ctx: StepEventContext) -> dict[str, Any]:
        return ctx.result or {}


def _then(result: Any, post: Callable[[Any], Any]) -> Any:
    """`post(result)`; for a hook that returned an awaitable (an ``async def`` hook), an
    awaitable of it, which herald's worker awaits on its event loop like its own hooks'."""
    if inspect.isawaitable(result):
        awaitable = result

        async def finish() -> Any:
            return post(await awaitable)
        return finish()
    return post(result)


class _HeraldAdapter(_HeraldBasePublisher):
    """Registered in herald's PublisherRegistry under a tasker-core publisher's name; herald's
    pipeline calls it, it calls the publisher (`target`, swapped when the name is registered
    again; None after clear(): herald's generic behaviour). Hooks may be ``async def`` here:
    herald's worker awaits them."""

    def __init__(self, name: str, target: Optional[BasePublisher]) -> None:
        self.publisher_name = name
        self.target = target

    def publishes_for(self) -> list[str]:
        steps = getattr(self.target, "publishes_for", None)
        return list(steps()) if callable(steps) else []

    def should_publish(self, ctx: _HeraldStepEventContext) -> Any:
        target = self.target
        if target is None:
            return True
        return _then(target.should_publish(StepEventContext.from_herald(ctx)), bool)

    def transform_payload(self, ctx: _HeraldStepEventContext) -> Any:
        target = self.target
        if target is None:
            return ctx.result
        return target.transform_payload(StepEventContext.from_herald(ctx))

    def additional_metadata(self, ctx: _HeraldStepEventContext) -> Any:
        target = self.target
        published_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
        if target is None:
            return {"published_at": published_at}
        return _then(target.additional_metadata(StepEventContext.from_herald(ctx)),
                     lambda extra: {"published_at": published_at, **(extra or {})})

    def before_publish(self, ctx: _HeraldStepEventContext) -> Any:
        target, event = self.target, ctx.event
        if target is None or event is None:
            return True
        return _then(target.before_publish(event.event_name, event.payload, dict(event.metadata)), bool)

    def after_publish(self, ctx: _HeraldStepEventContext, event: _HeraldDomainEvent) -> Any:
        if self.target is None:
            return None
        return self.target.after_publish(event.event_name, event.payload, dict(event.metadata))

    def on_publish_error(self, ctx: _HeraldStepEventContext, error: BaseException) -> Any:
        if self.target is None:
            return None
        payload = ctx.event.payload if ctx.event is not None else (ctx.result if isinstance(ctx.result, dict) else {})
        exc = error if isinstance(error, Exception) else RuntimeError(str(error))
        return self.target.on_publish_error(ctx.event_name, exc, payload)


class PublisherRegistry:
    """tasker-core's publisher registry, kept in a herald PublisherRegistry (by default
    ``herald.PublisherRegistry.instance()``, the one a herald Worker uses), so a Worker runs
    these publishers for the declarations that name them.

    Follows tasker-core where herald differs: registering a taken name overwrites (with a
    warning; herald raises RegistryError), a non-publisher is ValueError, registering or
    clearing while frozen is RuntimeError, ``validate_required`` returns the missing names
    instead of raising, and ``get_or_default`` returns this module's DefaultPublisher. The
    frozen flag is the herald registry's. A name held in the herald registry by a herald-native
    publisher cannot be overwritten (herald has no unregister): RegistryError."""

    _instance: ClassVar[Optional["PublisherRegistry"]] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, herald_registry: Optional[_HeraldPublisherRegistry] = None) -> None:
        self._herald = herald_registry if herald_registry is not None else _HeraldPublisherRegistry()
        self._mutex = threading.RLock()
        self._publishers: dict[str, BasePublisher] = {}
        self._adapters: dict[str, _HeraldAdapter] = {}
        self._default_publisher: BasePublisher = DefaultPublisher()

    @classmethod
    def instance(cls) -> "PublisherRegistry":
        """The process-wide registry, kept in ``herald.PublisherRegistry.instance()``."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls(_HeraldPublisherRegistry.instance())
            return cls._instance

    @classmethod
    def reset(cls) -> None:
        """Forgets the singleton (for tests): its publishers leave the herald registry, which
        is unfrozen."""
        with cls._lock:
            inst, cls._instance = cls._instance, None
        if inst is not None:
            inst._herald.unfreeze()
            inst.clear()

    @property
    def herald(self) -> _HeraldPublisherRegistry:
        """The herald registry behind this one (``Worker(publishers=registry.herald)``)."""
        return self._herald

    def _live(self, name: str) -> bool:
        """Still registered (herald's registry may have been reset underneath)."""
        if name not in self._publishers:
            return False
        if name == "default":
            return True
        adapter = self._adapters.get(name)
        return adapter is not None and self._herald.get(name) is adapter

    def register(self, publisher: BasePublisher, name: Optional[str] = None) -> None:
        """Registers `publisher` under `name` (default: its publisher_name), replacing any
        publisher of this registry with that name."""
        if self.is_frozen:
            raise RuntimeError("PublisherRegistry is frozen, cannot register new publishers")
        if not isinstance(publisher, BasePublisher):
            raise ValueError(f"Expected BasePublisher instance, got {type(publisher)}")
        publisher_name = name or publisher.publisher_name
        with self._mutex:
            if self._live(publisher_name):
                logger.warning("Overwriting existing publisher: %s", publisher_name)
            adapter = self._adapters.get(publisher_name)
            if publisher_name == "default":
                pass  # herald reserves "default" for its generic publisher; kept here only
            elif adapter is not None and self._herald.get(publisher_name) is adapter:
                adapter.target = publisher
            else:
                adapter = _HeraldAdapter(publisher_name, publisher)
                try:
                    self._herald.register(adapter)
                except RegistryError as exc:
                    if "frozen" in str(exc):
                        raise RuntimeError(f"PublisherRegistry is frozen, cannot register new publishers ({exc})") from exc
                    raise
                self._adapters[publisher_name] = adapter
            self._publishers[publisher_name] = publisher
        logger.info("Registered publisher: %s", publisher_name)

    def get(self, name: str) -> Optional[BasePublisher]:
        with self._mutex:
            return self._publishers.get(name) if self._live(name) else None

    def get_or_default(self, name: str) -> BasePublisher:
        return self.get(name) or self._default_publisher

    def validate_required(self, names: Iterable[str]) -> list[str]:
        """The names that are not registered (empty when all are)."""
        return [name for name in names if self.get(name) is None]

    def freeze(self) -> None:
        self._herald.freeze()
        logger.info("PublisherRegistry frozen with %d publishers", len(self.list_publishers()))

    def unfreeze(self) -> None:
        self._herald.unfreeze()

    @property
    def is_frozen(self) -> bool:
        return self._herald.frozen

    def list_publishers(self) -> list[str]:
        with self._mutex:
            return [name for name in self._publishers if self._live(name)]

    def clear(self) -> None:
        """Removes every publisher of this registry (RuntimeError when frozen). Other publishers
        in the herald registry stay (it is rebuilt without these when every other one is a
        Python publisher; otherwise these stay in it as pass-throughs)."""
        if self.is_frozen:
            raise RuntimeError("PublisherRegistry is frozen, cannot clear")
        with self._mutex:
            self._publishers.clear()
            for adapter in self._adapters.values():
                adapter.target = None
            ours = set(map(id, self._adapters.values()))
            others = [self._herald.get(n) for n in self._herald.names()]
            others = [p for p in others if p is not None and id(p) not in ours]
            if all(isinstance(p, _HeraldBasePublisher) for p in others):
                self._herald.reset()
                for p in others:
                    self._herald.register(p)
                self._adapters.clear()


# ------------------------------------------------------------------------------------------------
# Subscribers and the poller.

DomainEventCallback = Callable[[InProcessDomainEvent], None]
ErrorCallback = Callable[[Exception], None]


@dataclasses.dataclass(eq=False)
class _Callback:
    fn: DomainEventCallback
    pattern: Optional[Pattern]


class InProcessDomainEventPoller:
    """tasker-core's poller as one herald subscription on a herald EventBus.

    ``InProcessDomainEventPoller(bus=...)`` takes an EventBus or a Worker (its bus, when the
    poller starts); without one it uses ``default_bus()``. ``on_event(callback)`` callbacks get
    an ``InProcessDomainEvent`` for every event (``pattern=`` limits one to a herald glob), one
    event at a time in publish order, on a herald dispatcher thread; a callback that raises is
    logged and reported to the ``on_error`` callbacks, and the others still run.
    ``capacity``/``overflow``/``block_timeout`` are the subscription's mailbox (herald's
    defaults: 10,000 events, block for up to 5 s, then drop and count in ``events_lagged``).
    ``polling_interval_ms`` and ``max_events_per_poll`` are accepted and unused (herald pushes)."""

    DEFAULT_POLL_INTERVAL_MS = 10
    DEFAULT_MAX_EVENTS_PER_POLL = 100

    def __init__(self, polling_interval_ms: int = DEFAULT_POLL_INTERVAL_MS,
                 max_events_per_poll: int = DEFAULT_MAX_EVENTS_PER_POLL, *,
                 bus: Union[EventBus, Worker, None] = None, capacity: int = 10_000, overflow: str = "block",
                 block_timeout: float = 5.0, name: str = "tasker-domain-event-poller") -> None:
        self._polling_interval = polling_interval_ms / 1000.0
        self._max_events_per_poll = max_events_per_poll
        self._target = bus
        self._capacity, self._overflow, self._block_timeout, self._name = capacity, overflow, block_timeout, name
        self._lock = threading.Lock()
        self._callbacks: tuple[_Callback, ...] = ()
        self._error_callbacks: tuple[ErrorCallback, ...] = ()
        self._subscription: Optional[Subscription] = None
        self._bus: Optional[EventBus] = None
        self._events_processed = 0
        self._callback_errors = 0
        self._last_stats: dict[str, Any] = {}

    def on_event(self, callback: DomainEventCallback, pattern: Optional[str] = None) -> _Callback:
        """Calls `callback(event)` for every event, or only those matching herald glob `pattern`
        (PatternError when invalid). Returns a handle for ``remove_callback``. Works before and
        after start()."""
        entry = _Callback(callback, Pattern(pattern) if pattern is not None else None)
        with self._lock:
            self._callbacks = self._callbacks + (entry,)
        return entry

    def remove_callback(self, handle: _Callback) -> None:
        """Stops calling a callback on_event registered (a herald addition)."""
        with self._lock:
            self._callbacks = tuple(c for c in self._callbacks if c is not handle)

    def on_error(self, callback: ErrorCallback) -> None:
        """Calls `callback(error)` when an event callback raises."""
        with self._lock:
            self._error_callbacks = self._error_callbacks + (callback,)

    def start(self) -> None:
        """Subscribes to the bus (RuntimeError when already running)."""
        with self._lock:
            if self._subscription is not None:
                raise RuntimeError("InProcessDomainEventPoller already running")
            bus = _resolve_bus(self._target)
            self._subscription = bus.subscribe("#", self._dispatch, name=self._name, capacity=self._capacity,
                                               overflow=self._overflow, block_timeout=self._block_timeout)
            self._bus = bus
        logger.info("InProcessDomainEventPoller started on herald bus")

    def stop(self, timeout: float = 5.0) -> None:
        """Waits (up to `timeout` seconds) for the events already queued to be handled, then
        unsubscribes. Safe when not running."""
        with self._lock:
            sub, self._subscription = self._subscription, None
        if sub is None:
            return
        done = threading.Event()
        deadline = _monotonic() + timeout
        while not done.is_set():
            stats = sub.stats()
            if stats.get("queue_depth", 0) == 0 and stats.get("in_flight", 0) == 0:
                break
            if _monotonic() >= deadline:
                logger.warning("InProcessDomainEventPoller: stopping with %s events not handled",
                               stats.get("queue_depth", 0))
                break
            done.wait(0.002)
        self._last_stats = sub.stats()
        sub.unsubscribe()
        logger.info("InProcessDomainEventPoller stopped (%d events processed)", self._events_processed)

    @property
    def is_running(self) -> bool:
        sub = self._subscription
        return sub is not None and sub.active

    @property
    def stats(self) -> dict[str, int]:
        """poll_count (events received from the bus), events_processed (handed to the callbacks)
        and events_lagged (dropped by a full mailbox)."""
        sub = self._subscription
        herald_stats = sub.stats() if sub is not None else self._last_stats
        return {
            "poll_count": int(herald_stats.get("received", 0)),
            "events_processed": self._events_processed,
            "events_lagged": int(herald_stats.get("dropped", 0)),
        }

    @property
    def subscription(self) -> Optional[Subscription]:
        """The herald subscription while running."""
        return self._subscription

    def _dispatch(self, event: _HeraldDomainEvent) -> None:
        callbacks = self._callbacks
        view: Optional[InProcessDomainEvent] = None
        name = event.event_name
        for entry in callbacks:
            if entry.pattern is not None and not entry.pattern.matches(name):
                continue
            if view is None:
                view = InProcessDomainEvent.from_herald(event)
            try:
                entry.fn(view)
            except Exception as exc:  # noqa: BLE001 - one callback must not stop the others
                self._callback_errors += 1
                logger.error("InProcessDomainEventPoller: Callback error: %s (event_id %s)", exc,
                             event.event_id, exc_info=exc)
                self._emit_error(exc)
        self._events_processed += 1

    def _emit_error(self, error: Exception) -> None:
        for callback in self._error_callbacks:
            try:
                callback(error)
            except Exception:  # noqa: BLE001 - errors in error callbacks are ignored
                pass


def _monotonic() -> float:
    import time

    return time.monotonic()


_pattern_cache: dict[str, Pattern] = {}
_pattern_cache_lock = threading.Lock()


def _pattern(text: str) -> Pattern:
    with _pattern_cache_lock:
        p = _pattern_cache.get(text)
        if p is None:
            p = _pattern_cache[text] = Pattern(text)
            if len(_pattern_cache) > 4096:
                _pattern_cache.clear()
        return p


class BaseSubscriber(ABC):
    """A tasker-core subscriber: ``subscribes_to()`` (a classmethod) and ``handle(event)``
    where `event` is a dict with tasker-core's keys (event_id, event_name, event_version,
    metadata, payload, execution_result). Per event: before_handle (False skips) -> handle ->
    after_handle; an exception goes to on_handle_error(event, error).

    Patterns are herald globs: ``*`` one token, ``#`` (or ``**``) any number, ``*`` alone every
    event. (tasker-core used fnmatch, where ``payment.*`` also matched ``payment.card.declined``;
    write ``payment.#`` for that.) As in tasker-core, an event matching two of a subscriber's
    patterns is handled twice."""

    _active: bool = False

    def __init__(self) -> None:
        self._active = False
        self._subscriptions: list[str] = []
        self._poller: Any = None
        self._handles: list[Any] = []

    @classmethod
    @abstractmethod
    def subscribes_to(cls) -> list[str]:
        """The event patterns (e.g. ["order.completed", "payment.*"])."""

    @abstractmethod
    def handle(self, event: dict[str, Any]) -> None:
        """Handles one event."""

    @property
    def active(self) -> bool:
        return self._active

    @property
    def subscriptions(self) -> list[str]:
        return list(getattr(self, "_subscriptions", []))

    def before_handle(self, event: dict[str, Any]) -> bool:
        return True

    def after_handle(self, _event: dict[str, Any]) -> None:
        pass

    def on_handle_error(self, event: dict[str, Any], error: Exception) -> None:
        logger.error("%s: Failed to handle event %s: %s", type(self).__name__,
                     event.get("event_name", "unknown"), error)

    def matches(self, event_name: str) -> bool:
        """True when a pattern matches `event_name` (herald globs; PatternError for a bad one)."""
        return any(self._matches(p, event_name) for p in self.subscribes_to())

    @staticmethod
    def _matches(pattern: str, event_name: str) -> bool:
        p = _pattern(pattern)
        return p.matches_everything or p.matches(event_name)

    def start(self, poller: InProcessDomainEventPoller) -> None:
        """Registers a callback per pattern with `poller` (idempotent). PatternError, before
        anything is registered, for an invalid pattern."""
        if self._active:
            return
        patterns = list(self.subscribes_to())
        for p in patterns:
            _pattern(p)
        self._active = True
        self._subscriptions = []
        self._handles = []
        self._poller = poller
        herald_poller = isinstance(poller, InProcessDomainEventPoller)
        for p in patterns:
            handler = self._make_handler(p)
            handle = poller.on_event(handler, p) if herald_poller else poller.on_event(handler)
            self._handles.append(handle)
            self._subscriptions.append(p)
            logger.info("Subscriber %s subscribed to pattern: %s", type(self).__name__, p)
        logger.info("Subscriber %s started (%d subscriptions)", type(self).__name__, len(self._subscriptions))

    def _make_handler(self, pattern: str) -> DomainEventCallback:
        def handler(event: InProcessDomainEvent) -> None:
            self._handle_if_matches(event, pattern)
        return handler

    def stop(self) -> None:
        """Stops handling events; with a herald poller its callbacks are removed too (tasker-core
        left them registered, inert)."""
        if not self._active:
            return
        self._active = False
        self._subscriptions = []
        poller, handles = getattr(self, "_poller", None), getattr(self, "_handles", [])
        self._poller, self._handles = None, []
        if isinstance(poller, InProcessDomainEventPoller):
            for handle in handles:
                try:
                    poller.remove_callback(handle)
                except Exception:  # noqa: BLE001 - a mock or foreign poller
                    pass
        logger.info("Subscriber %s stopped", type(self).__name__)

    def _handle_if_matches(self, event: Any, pattern: str) -> None:
        if not self._matches(pattern, event.event_name):
            return
        self.handle_event_safely(_event_dict(event))

    def handle_event_safely(self, event: dict[str, Any]) -> None:
        """Runs the hooks for one event dict (nothing when inactive); exceptions go to
        on_handle_error."""
        if not self._active:
            return
        try:
            if not self.before_handle(event):
                return
            self.handle(event)
            self.after_handle(event)
        except Exception as exc:  # noqa: BLE001 - tasker-core's contract
            self.on_handle_error(event, exc)


class SubscriberRegistry:
    """tasker-core's subscriber registry: classes (instantiated by start_all) and instances,
    started together on a poller. Registering a taken name overwrites it (tasker-core's rule;
    herald's SubscriberRegistry raises RegistryError). ``start_all`` also takes an EventBus or
    a Worker (a herald addition): it then starts a poller on it, which ``stop_all`` stops."""

    _instance: ClassVar[Optional["SubscriberRegistry"]] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._mutex = threading.RLock()
        self._subscriber_classes: dict[str, type[BaseSubscriber]] = {}
        self._subscriber_instances: dict[str, BaseSubscriber] = {}
        self._active_subscribers: list[BaseSubscriber] = []
        self._owned_pollers: list[InProcessDomainEventPoller] = []

    @classmethod
    def instance(cls) -> "SubscriberRegistry":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @classmethod
    def reset(cls) -> None:
        """Stops every active subscriber and forgets the singleton (for tests)."""
        with cls._lock:
            inst, cls._instance = cls._instance, None
        if inst is not None:
            inst.stop_all()

    def register(self, subscriber_class: type[BaseSubscriber]) -> None:
        """Registers a class (ValueError if not a BaseSubscriber subclass), under its name."""
        if not isinstance(subscriber_class, type) or not issubclass(subscriber_class, BaseSubscriber):
            raise ValueError(f"Expected BaseSubscriber subclass, got {subscriber_class}")
        name = subscriber_class.__name__
        with self._mutex:
            if name in self._subscriber_classes:
                logger.warning("Overwriting existing subscriber class: %s", name)
            self._subscriber_classes[name] = subscriber_class
        logger.info("Registered subscriber class: %s", name)

    def register_instance(self, subscriber: BaseSubscriber, name: Optional[str] = None) -> None:
        """Registers a configured instance (ValueError if not a BaseSubscriber)."""
        if not isinstance(subscriber, BaseSubscriber):
            raise ValueError(f"Expected BaseSubscriber instance, got {type(subscriber)}")
        instance_name = name or type(subscriber).__name__
        with self._mutex:
            if instance_name in self._subscriber_instances:
                logger.warning("Overwriting existing subscriber instance: %s", instance_name)
            self._subscriber_instances[instance_name] = subscriber
        logger.info("Registered subscriber instance: %s", instance_name)

    def start_all(self, poller: Union[InProcessDomainEventPoller, EventBus, Worker]) -> int:
        """Instantiates the classes and starts every subscriber on `poller`; returns how many
        started (one that fails to instantiate or start is logged and skipped)."""
        if isinstance(poller, (EventBus, Worker)):
            owned = InProcessDomainEventPoller(bus=poller)
            with self._mutex:
                self._owned_pollers.append(owned)
            target: InProcessDomainEventPoller = owned
        else:
            owned, target = None, poller
        started = 0
        with self._mutex:
            classes = list(self._subscriber_classes.items())
            instances = list(self._subscriber_instances.items())
        for name, cls in classes:
            try:
                sub = cls()
                sub.start(target)
            except Exception as exc:  # noqa: BLE001 - tasker-core: log and go on
                logger.error("Failed to start subscriber %s: %s", name, exc)
                continue
            with self._mutex:
                self._active_subscribers.append(sub)
            started += 1
        for name, sub in instances:
            try:
                sub.start(target)
            except Exception as exc:  # noqa: BLE001
                logger.error("Failed to start subscriber %s: %s", name, exc)
                continue
            with self._mutex:
                self._active_subscribers.append(sub)
            started += 1
        if owned is not None:
            owned.start()
        logger.info("Started %d subscribers", started)
        return started

    def stop_all(self) -> int:
        """Stops every active subscriber (and the pollers start_all made); returns how many."""
        with self._mutex:
            subs, self._active_subscribers = self._active_subscribers, []
            pollers, self._owned_pollers = self._owned_pollers, []
        for poller in pollers:
            try:
                poller.stop()
            except Exception as exc:  # noqa: BLE001
                logger.error("Failed to stop poller: %s", exc)
        stopped = 0
        for sub in subs:
            try:
                sub.stop()
                stopped += 1
            except Exception as exc:  # noqa: BLE001
                logger.error("Failed to stop subscriber: %s", exc)
        logger.info("Stopped %d subscribers", stopped)
        return stopped

    def list_registered(self) -> dict[str, list[str]]:
        with self._mutex:
            return {"classes": list(self._subscriber_classes), "instances": list(self._subscriber_instances)}

    @property
    def active_count(self) -> int:
        return len(self._active_subscribers)

    def stats(self) -> dict[str, Any]:
        with self._mutex:
            return {
                "registered_classes": len(self._subscriber_classes),
                "registered_instances": len(self._subscriber_instances),
                "active_subscribers": len(self._active_subscribers),
                "subscriptions": [
                    {"class": type(sub).__name__, "patterns": sub.subscriptions, "active": sub.active}
                    for sub in self._active_subscribers
                ],
            }

    def clear(self) -> None:
        """Stops the active subscribers and forgets every registration."""
        self.stop_all()
        with self._mutex:
            self._subscriber_classes.clear()
            self._subscriber_instances.clear()


# ------------------------------------------------------------------------------------------------
# YAML templates to herald's configuration.

def herald_steps(steps: Iterable[Mapping[str, Any]], *, durable_as: Optional[str] = None) -> list[dict[str, Any]]:
    """A tasker-core task template's ``steps`` (each with ``name`` and ``publishes_events``) as
    herald's ``steps`` entries (``Worker(steps=...)`` or the configuration file): keys herald
    does not take (``description``, ``handler``, ...) are dropped, ``fast`` becomes
    ``in_process``. A declaration without ``delivery_mode`` is ``durable``, tasker-core's YAML
    default (herald's is ``in_process``): the worker then needs ``transports.postgres``, or
    `durable_as` maps it to another road (see EventDeclaration.to_herald). Nothing meant for
    other processes silently stays in process."""
    out: list[dict[str, Any]] = []
    for step in steps:
        declarations = []
        for d in step.get("publishes_events") or []:
            decl = EventDeclaration.model_validate(d)
            if decl.delivery_mode is None:
                decl = decl.model_copy(update={"delivery_mode": "durable"})
            declarations.append(decl.to_herald(durable_as=durable_as))
        out.append({"name": step["name"], "publishes_events": declarations})
    return out
