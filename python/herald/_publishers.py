"""Publishers written in Python (`BasePublisher`) and the registry that holds them by name.

`PublisherRegistry` is thread safe (the native registry locks); a publisher's hooks are called
on the threads that publish, with the GIL held for the call."""
from __future__ import annotations

import threading
from typing import Any, Iterable, Optional, TypeVar

from . import _herald
from ._herald import DomainEvent, RegistryError
from ._hooks import PUBLISHER_HOOKS, StepEventContext, instantiate, overrides, registry_method
from ._loop import LoopRunner
from ._types import JSONDict, MaybeAwaitable

_T = TypeVar("_T")


class BasePublisher:
    """Base of Python publishers. Override what you need; each hook may be ``async def``.

    Order for each declared event whose condition holds: should_publish -> transform_payload ->
    additional_metadata -> (schema check) -> before_publish (ctx.event is the built event;
    False skips it quietly) -> route -> after_publish; on_publish_error(ctx, error) for any
    failure, with the original exception object."""

    publisher_name: str = ""

    def publishes_for(self) -> MaybeAwaitable[list[str]]:
        return []

    def should_publish(self, ctx: StepEventContext) -> MaybeAwaitable[bool]:
        return True

    def transform_payload(self, ctx: StepEventContext) -> MaybeAwaitable[Any]:
        return ctx.result

    def additional_metadata(self, ctx: StepEventContext) -> MaybeAwaitable[JSONDict]:
        return {}

    def before_publish(self, ctx: StepEventContext) -> MaybeAwaitable[Optional[bool]]:
        return True

    def after_publish(self, ctx: StepEventContext, event: DomainEvent) -> MaybeAwaitable[None]:
        return None

    def on_publish_error(self, ctx: StepEventContext, error: BaseException) -> MaybeAwaitable[None]:
        return None


class PublisherRegistry:
    """Publishers by unique name, plus the built-in generic publisher ("default").

    ``PublisherRegistry.instance()`` is the process-wide default (the C++ engine's own); build
    ``PublisherRegistry()`` for an isolated one. Thread safe."""

    _instance: Optional[PublisherRegistry] = None
    _instance_lock = threading.Lock()

    def __init__(self, _native: Optional[_herald._PublisherRegistry] = None) -> None:
        self._native = _native if _native is not None else _herald._PublisherRegistry()
        self._runner = LoopRunner("publishers")

    @classmethod
    def instance(cls) -> PublisherRegistry:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(_herald._PublisherRegistry.instance())
            return cls._instance

    @registry_method
    def reset(self) -> None:
        """Unfreezes and forgets every publisher (for tests)."""
        self._native.unfreeze()
        self._native.clear()

    def register(self, cls_or_instance: _T) -> _T:
        """Registers a publisher class (instantiated without arguments) or instance; returns the
        argument, so it also works as a class decorator. Raises RegistryError for a duplicate
        name, the reserved name "default", or a frozen registry."""
        obj = instantiate(cls_or_instance)
        if not getattr(obj, "publisher_name", None):
            raise RegistryError(f"publisher {type(obj).__name__} has no publisher_name")
        self._native.register(obj, self._runner, overrides(obj, BasePublisher, PUBLISHER_HOOKS))
        return cls_or_instance

    def get(self, name: str) -> Any:
        """The publisher named `name` ("default": the generic one), or None."""
        return self._native.get(name)

    def get_or_default(self, name: str) -> Any:
        return self._native.get_or_default(name)

    def get_strict(self, name: str) -> Any:
        """Raises RegistryError naming `name` and the registered names when unknown."""
        return self._native.get_strict(name)

    def get_for_step(self, step_name: str, declarations: Optional[list[JSONDict]] = None) -> Any:
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
