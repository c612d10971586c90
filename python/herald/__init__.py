"""herald: domain-event publish/subscribe for step-based workflows.

The engine is C++ (the ``_herald`` extension); this package is the thin Python layer over it,
one module per concern (all private; this module re-exports the public API, ``__all__``):

- ``_bus``: the in-process EventBus;
- ``_publishers`` / ``_subscribers``: base classes and registries;
- ``_hooks``: the values handed to hooks (StepEventContext, SubscriberResult);
- ``_worker``: the Worker, its lifecycle and hooks;
- ``_transports``: ZeroMQ between processes;
- ``_loop``: the event loops coroutine hooks run on; ``_log``: logging; ``_exit``: shutdown at
  interpreter exit;
- ``durable`` (public): the durable road on PostgreSQL; ``tasker_core`` (public, imported on
  demand): tasker-core's API on herald.

Threads and event loops: C++ threads call Python hooks and handlers with the GIL taken for the
call only. A hook or handler may be a plain function or ``async def``; a coroutine runs on the
event loop that was running when the worker (or subscription) started, or on a loop the object
owns (a daemon thread running ``loop.run_forever()``) when started from synchronous code.
"""
from ._herald import (
    ConfigError,
    DomainEvent,
    EventNameError,
    HandlerFailure,
    HeraldError,
    HttpError,
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
from ._log import set_native_log_level
from ._hooks import StepEventContext, SubscriberResult
from ._bus import EventBus
from ._publishers import BasePublisher, PublisherRegistry
from ._subscribers import BaseSubscriber, SubscriberRegistry
from ._worker import Worker, WorkerState
from ._transports import ZmqSubscriber
from . import _exit  # noqa: F401  (registers the exit handler, before durable registers its own)

# The durable road (PostgreSQL): herald.DurableConsumer, herald.DurableError, herald.durable.*.
# Imported last: its exit handler must be registered after _exit's so that it runs first.
from . import durable
from .durable import DurableConsumer, DurableError, DurableRecord

# The classes keep presenting themselves as herald.X (reprs, pickles, help()), as they did
# before the split into modules.
for _public in (BasePublisher, BaseSubscriber, EventBus, PublisherRegistry, StepEventContext, SubscriberRegistry,
                SubscriberResult, Worker, WorkerState, ZmqSubscriber, set_native_log_level):
    _public.__module__ = __name__
del _public

InProcessDomainEvent = DomainEvent  # tasker-core's name for the event type handed to subscribers

__version__ = "0.1.0"

__all__ = [
    "BasePublisher", "BaseSubscriber", "ConfigError", "DomainEvent", "DurableConsumer", "DurableError",
    "DurableRecord", "EventBus", "EventNameError", "HandlerFailure", "HeraldError", "HttpError",
    "InProcessDomainEvent",
    "NativePublisher", "ParseError", "Pattern", "PatternError", "PayloadSchemaError", "PublisherRegistry",
    "RegistryError", "StartupError", "StateError", "StepCompletion", "StepEventContext", "SubscriberRegistry",
    "SubscriberResult", "Subscription", "TransportError", "UnknownValueError", "ValidationError", "Worker",
    "WorkerState", "ZmqPublisher", "ZmqSubscriber", "curve_keypair", "durable", "is_valid_event_name",
    "new_uuid_v7", "read_curve_public_key", "read_curve_secret_key", "set_native_log_level",
    "validate_event_name",
]
