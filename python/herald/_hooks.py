"""The values handed to user hooks (`StepEventContext`, `SubscriberResult`) and the helpers the
registries use to adopt user objects (which hooks they override, class or instance).

Importing this module hands the value types and the exception logger to the native runtime,
which builds them on its own threads (with the GIL held)."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable, Optional, cast

from . import _herald
from ._herald import DomainEvent
from ._log import log_exception
from ._types import JSONDict


@dataclasses.dataclass
class SubscriberResult:
    """What a subscriber's handle() returns. success=False counts the event as failed without an
    exception (message becomes the subscription's last_error). Returning None means success."""

    success: bool = True
    message: str = ""
    data: Any = None

    @classmethod
    def ok(cls, message: str = "", data: Any = None) -> SubscriberResult:
        return cls(True, message, data)

    @classmethod
    def failure(cls, message: str, data: Any = None) -> SubscriberResult:
        return cls(False, message, data)


class StepEventContext:
    """What a publisher's hooks see: the step completion's fields plus the event declaration.

    ``event`` is set for before_publish/after_publish, ``error_stage`` for on_publish_error.
    A fresh context is built for every hook call (on the calling thread: not shared)."""

    def __init__(self, completion: JSONDict, declaration: JSONDict) -> None:
        self.completion = completion
        self.declaration = declaration
        self.event: Optional[DomainEvent] = None
        self.error_stage: Optional[str] = None

    @property
    def step_name(self) -> str:
        return cast(str, self.completion.get("step_name", ""))

    @property
    def namespace(self) -> str:
        return cast(str, self.completion.get("namespace", ""))

    @property
    def task_uuid(self) -> str:
        return cast(str, self.completion.get("task_uuid", ""))

    @property
    def step_uuid(self) -> str:
        return cast(str, self.completion.get("step_uuid", ""))

    @property
    def correlation_id(self) -> str:
        return cast(str, self.completion.get("correlation_id", ""))

    @property
    def success(self) -> bool:
        return bool(self.completion.get("success", False))

    @property
    def retryable(self) -> bool:
        return bool(self.completion.get("retryable", False))

    @property
    def retry_count(self) -> int:
        return int(self.completion.get("retry_count", 0))

    @property
    def max_retries(self) -> int:
        return int(self.completion.get("max_retries", 0))

    @property
    def result(self) -> Any:
        return self.completion.get("result", {})

    @property
    def metadata(self) -> Any:
        return self.completion.get("metadata", {})

    @property
    def error(self) -> Optional[JSONDict]:
        return cast(Optional[JSONDict], self.completion.get("error"))

    @property
    def event_name(self) -> str:
        return cast(str, self.declaration.get("name", ""))

    @property
    def condition(self) -> str:
        return cast(str, self.declaration.get("condition", ""))

    @property
    def delivery_mode(self) -> str:
        return cast(str, self.declaration.get("delivery_mode", ""))

    def __repr__(self) -> str:
        return f"StepEventContext(step_name={self.step_name!r}, event_name={self.event_name!r})"


_herald._install_runtime(step_event_context=StepEventContext, subscriber_result=SubscriberResult,
                         log_exception=log_exception)


PUBLISHER_HOOKS = ("should_publish", "transform_payload", "additional_metadata", "before_publish",
                   "after_publish", "on_publish_error")
SUBSCRIBER_HOOKS = ("before_handle", "after_handle", "on_handle_error", "on_start", "on_stop",
                    "health_check")


def overrides(obj: object, base: type, names: Iterable[str]) -> set[str]:
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


def instantiate(cls_or_instance: Any) -> Any:
    """A class is instantiated without arguments; an instance is used as it is."""
    return cls_or_instance() if isinstance(cls_or_instance, type) else cls_or_instance


class registry_method:
    """A method callable on the class (acting on instance()) or on an instance."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, obj: Any, cls: Any) -> Callable[..., Any]:
        return functools.partial(self._fn, obj if obj is not None else cls.instance())
