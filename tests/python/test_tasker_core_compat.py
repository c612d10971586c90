"""herald.tasker_core: tasker-core's Python domain-events API on herald's engine.

The behaviours of tasker-core's own suite (crates/tasker-py/tests/test_domain_events.py), in
herald's words, then what herald adds underneath: the poller as a herald subscription, publish()
on a herald bus, the registry inside herald's PublisherRegistry, a Worker running tasker-core
publishers, and one trip across ZeroMQ."""
import os
import threading
import uuid
from typing import Any
from unittest.mock import MagicMock

import pytest

import herald
from conftest import wait_until
from herald import tasker_core as tc
from herald.tasker_core import (
    BasePublisher,
    BaseSubscriber,
    DefaultPublisher,
    EventDeclaration,
    InProcessDomainEvent,
    InProcessDomainEventPoller,
    PublishContext,
    PublisherRegistry,
    StepEventContext,
    StepResult,
    SubscriberRegistry,
)


@pytest.fixture(autouse=True)
def _fresh_compat_state():
    """Every test starts with empty tasker-core registries and the module's own default bus."""
    tc.set_default_bus(None)
    PublisherRegistry.reset()
    SubscriberRegistry.reset()
    yield
    SubscriberRegistry.reset()
    PublisherRegistry.reset()
    tc.set_default_bus(None)


def make_ctx(step_name="charge_card", namespace="payments", result=None, metadata=None):
    return StepEventContext(task_uuid=str(uuid.uuid4()), step_uuid=str(uuid.uuid4()), step_name=step_name,
                            namespace=namespace, correlation_id=str(uuid.uuid4()),
                            result={"amount": 12} if result is None else result, metadata=metadata or {})


class Recorder(BasePublisher):
    """Records every hook call, in order, with its arguments."""

    def __init__(self, name="recorder", fail_in=None, abort=False):
        self._name = name
        self.calls: list[tuple[str, Any]] = []
        self.fail_in = fail_in
        self.abort = abort

    @property
    def publisher_name(self):
        return self._name

    def _maybe_fail(self, hook):
        if self.fail_in == hook:
            raise ValueError(f"{hook} failed")

    def should_publish(self, ctx):
        self.calls.append(("should_publish", ctx.step_name))
        self._maybe_fail("should_publish")
        return True

    def transform_payload(self, ctx):
        self.calls.append(("transform_payload", ctx.step_name))
        self._maybe_fail("transform_payload")
        return {"cents": (ctx.result or {}).get("amount", 0) * 100}

    def additional_metadata(self, ctx):
        self.calls.append(("additional_metadata", ctx.step_name))
        return {"source": "recorder"}

    def before_publish(self, event_name, payload, metadata):
        self.calls.append(("before_publish", (event_name, payload, metadata)))
        self._maybe_fail("before_publish")
        return not self.abort

    def after_publish(self, event_name, payload, metadata):
        self.calls.append(("after_publish", (event_name, payload, metadata)))
        self._maybe_fail("after_publish")

    def on_publish_error(self, event_name, error, payload):
        self.calls.append(("on_publish_error", (event_name, error, payload)))

    def hooks(self):
        return [name for name, _ in self.calls]


class Collecting(BaseSubscriber):
    """Collects the event dicts it handles; `done` is set at `expect` events."""

    patterns = ["payment.*"]

    def __init__(self, expect=1):
        super().__init__()
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.expect = expect
        self.done = threading.Event()

    @classmethod
    def subscribes_to(cls):
        return list(cls.patterns)

    def handle(self, event):
        with self.lock:
            self.events.append(event)
            if len(self.events) >= self.expect:
                self.done.set()


# ------------------------------------------------------------------------------------------------
# Models

def test_event_declaration_takes_every_field_and_reads_schema_by_either_name():
    decl = EventDeclaration(name="order.completed", condition="always", delivery_mode="broadcast",
                            publisher="OrderPublisher", schema_={"type": "object"})
    assert (decl.name, decl.condition, decl.delivery_mode, decl.publisher) == \
        ("order.completed", "always", "broadcast", "OrderPublisher")
    assert decl.schema == {"type": "object"}
    assert EventDeclaration(name="x", schema={"type": "object"}).schema == {"type": "object"}


def test_event_declaration_defaults_are_none_and_unknown_keys_are_ignored():
    decl = EventDeclaration(name="order.completed", description="from the YAML")
    assert decl.condition is None and decl.delivery_mode is None
    assert decl.publisher is None and decl.schema is None


def test_a_bad_model_raises_one_validation_error_naming_every_bad_field():
    with pytest.raises(ValueError) as info:
        EventDeclaration(condition="sometimes", delivery_mode="carrier_pigeon")
    err = info.value
    assert isinstance(err, tc.ValidationError) and isinstance(err, herald.ValidationError)
    assert [e["loc"][0] for e in err.errors()] == ["name", "condition", "delivery_mode"]
    assert "3 validation errors for EventDeclaration" in str(err)
    assert "'sometimes'" in str(err)


def test_step_result_requires_success_and_checks_types():
    assert StepResult(success=False, result=None, metadata={"error": "Timeout"}).result is None
    with pytest.raises(ValueError, match="success"):
        StepResult(result={})
    with pytest.raises(ValueError, match="valid dictionary"):
        StepResult(success=True, result=[1, 2])


def test_step_event_context_requires_its_identifiers():
    with pytest.raises(tc.ValidationError) as info:
        StepEventContext(step_name="s")
    assert {e["loc"][0] for e in info.value.errors()} == {"task_uuid", "step_uuid", "namespace", "correlation_id"}
    ctx = StepEventContext(task_uuid=uuid.UUID(int=1), step_uuid="s", step_name="n", namespace="ns",
                           correlation_id="c")
    assert ctx.task_uuid == "00000000-0000-0000-0000-000000000001"  # UUIDs become text
    assert ctx.metadata == {} and ctx.result is None


def test_publish_context_builds_its_parts_from_dicts_and_dumps_back():
    ctx = PublishContext(event_name="item.created", step_result={"success": True, "result": {"id": 1}},
                         event_declaration={"name": "item.created", "condition": "success"},
                         step_context=make_ctx().model_dump())
    assert isinstance(ctx.step_result, StepResult) and ctx.step_result.result == {"id": 1}
    assert isinstance(ctx.event_declaration, EventDeclaration)
    assert isinstance(ctx.step_context, StepEventContext)
    dumped = ctx.model_dump()
    assert dumped["step_result"] == {"success": True, "result": {"id": 1}, "metadata": None}
    assert PublishContext.model_validate(dumped) == ctx


def test_declarations_convert_to_herald_configuration():
    assert EventDeclaration(name="a.b", delivery_mode="fast", schema={"type": "object"}).to_herald() == \
        {"name": "a.b", "delivery_mode": "in_process", "schema": {"type": "object"}}
    durable = EventDeclaration(name="a.b", delivery_mode="durable")
    assert durable.to_herald() == {"name": "a.b", "delivery_mode": "durable"}  # herald's durable road
    assert durable.to_herald(durable_as="zeromq")["delivery_mode"] == "zeromq"
    with pytest.raises(ValueError, match="not a delivery mode"):
        durable.to_herald(durable_as="pigeon")


def test_herald_steps_turns_a_task_template_into_steps_a_worker_accepts():
    template = {"steps": [{"name": "process_payment", "handler": {"callable": "Pay"},
                           "publishes_events": [{"name": "payment.processed", "description": "done",
                                                 "condition": "success", "delivery_mode": "fast"}]}]}
    steps = tc.herald_steps(template["steps"])
    assert steps == [{"name": "process_payment", "publishes_events": [
        {"name": "payment.processed", "condition": "success", "delivery_mode": "in_process"}]}]
    assert herald.Worker(name="from-yaml", steps=steps).config()["steps"] == ["process_payment"]


def test_herald_steps_takes_a_missing_delivery_mode_as_tasker_core_s_default_durable():
    steps = [{"name": "ship", "publishes_events": [{"name": "order.shipped"}]}]
    assert tc.herald_steps(steps) == \
        [{"name": "ship", "publishes_events": [{"name": "order.shipped", "delivery_mode": "durable"}]}]
    # A worker without a durable road refuses it, naming the declaration.
    with pytest.raises(herald.ConfigError, match=r"publishes_events\[0\]\.delivery_mode.*transports\.postgres"):
        herald.Worker(name="no-db", steps=tc.herald_steps(steps))
    assert tc.herald_steps(steps, durable_as="broadcast") == \
        [{"name": "ship", "publishes_events": [{"name": "order.shipped", "delivery_mode": "broadcast"}]}]


# ------------------------------------------------------------------------------------------------
# Publishers

def test_base_publisher_cannot_be_built_without_a_name():
    with pytest.raises(TypeError):
        BasePublisher()


def test_default_publisher_passes_the_result_through_without_metadata():
    publisher = DefaultPublisher()
    assert publisher.publisher_name == "default"
    ctx = make_ctx(result={"amount": 3})
    assert publisher.should_publish(ctx) is True
    assert publisher.transform_payload(ctx) == {"amount": 3}
    assert publisher.additional_metadata(ctx) == {}


def test_publish_runs_the_hooks_in_tasker_core_order():
    publisher = Recorder()
    assert publisher.publish(make_ctx(), "payment.processed") is True
    assert publisher.hooks() == ["should_publish", "transform_payload", "additional_metadata",
                                 "before_publish", "after_publish"]


def test_before_publish_sees_name_payload_and_the_merged_metadata():
    publisher = Recorder()
    ctx = make_ctx(metadata={"attempt": 2})
    publisher.publish(ctx, event_name="payment.processed")
    name, payload, metadata = dict(publisher.calls)["before_publish"]
    assert name == "payment.processed" and payload == {"cents": 1200}
    assert metadata["publisher"] == "recorder" and metadata["source"] == "recorder"
    assert metadata["attempt"] == 2 and metadata["task_uuid"] == ctx.task_uuid
    assert {"published_at", "step_uuid", "step_name", "namespace", "correlation_id"} <= set(metadata)


def test_the_event_name_defaults_to_the_step_name():
    publisher = Recorder()
    publisher.publish(make_ctx(step_name="charge_card"))
    assert dict(publisher.calls)["before_publish"][0] == "charge_card"


def test_should_publish_false_skips_everything_else():
    class Never(Recorder):
        def should_publish(self, ctx):
            return ctx.namespace == "production"

    publisher = Never()
    assert publisher.publish(make_ctx(namespace="test")) is False
    assert publisher.calls == []
    assert publisher.publish(make_ctx(namespace="production")) is True


def test_before_publish_returning_false_aborts_without_after_publish():
    publisher = Recorder(abort=True)
    assert publisher.publish(make_ctx()) is False
    assert publisher.hooks()[-1] == "before_publish"


@pytest.mark.parametrize("hook", ["before_publish", "after_publish"])
def test_an_error_in_a_publish_hook_goes_to_on_publish_error_and_publish_returns_false(hook):
    publisher = Recorder(fail_in=hook)
    assert publisher.publish(make_ctx(), "payment.processed") is False
    name, error, payload = dict(publisher.calls)["on_publish_error"]
    assert name == "payment.processed" and isinstance(error, ValueError) and payload == {"cents": 1200}


def test_errors_before_before_publish_propagate_as_in_tasker_core():
    with pytest.raises(ValueError, match="transform_payload failed"):
        Recorder(fail_in="transform_payload").publish(make_ctx())


def test_an_invalid_event_name_is_herald_s_error_and_reaches_on_publish_error():
    publisher = Recorder()
    assert publisher.publish(make_ctx(), "not a valid name") is False
    _, error, _ = dict(publisher.calls)["on_publish_error"]
    assert isinstance(error, herald.EventNameError)


def test_publish_puts_the_event_on_the_default_herald_bus():
    got, done = [], threading.Event()
    sub = tc.default_bus().subscribe("payment.*", lambda e: (got.append(e), done.set()))
    try:
        ctx = make_ctx()
        assert Recorder().publish(ctx, "payment.processed") is True
        assert done.wait(60)
    finally:
        sub.unsubscribe()
    event = got[0]
    assert isinstance(event, herald.InProcessDomainEvent)
    assert event.payload == {"cents": 1200}
    assert event.metadata["task_uuid"] == ctx.task_uuid and event.metadata["fired_by"] == "recorder"
    assert event.metadata["source"] == "recorder"


def test_publish_takes_a_publish_context_and_an_explicit_bus():
    with herald.EventBus(inline=True) as bus:
        got = []
        bus.subscribe("#", got.append)
        ctx = PublishContext(event_name="item.created", step_result=StepResult(success=True, result={"amount": 2}),
                             step_context=make_ctx(result={}))
        assert Recorder().publish(ctx, bus=bus) is True
    assert [(e.event_name, e.payload) for e in got] == [("item.created", {"cents": 200})]


def test_set_default_bus_routes_publish_to_that_bus():
    with herald.EventBus(inline=True) as bus:
        got = []
        bus.subscribe("#", got.append)
        tc.set_default_bus(bus)
        assert tc.default_bus() is bus
        DefaultPublisher().publish(make_ctx(), "order.created")
    assert [e.event_name for e in got] == ["order.created"]
    with pytest.raises(TypeError):
        tc.set_default_bus("bus")


# ------------------------------------------------------------------------------------------------
# Subscribers

class Exact(BaseSubscriber):
    @classmethod
    def subscribes_to(cls):
        return ["order.created", "payment.*"]

    def handle(self, event):
        pass


def test_a_new_subscriber_is_inactive_without_subscriptions():
    sub = Exact()
    assert sub.active is False and sub.subscriptions == []


def test_matches_uses_herald_globs():
    sub = Exact()
    assert sub.matches("order.created") and sub.matches("payment.failed")
    assert not sub.matches("order.updated") and not sub.matches("inventory.updated")
    # herald: `*` is one token (tasker-core's fnmatch matched across dots)
    assert not sub.matches("payment.card.declined")


def test_a_lone_star_matches_every_name_even_the_empty_one():
    class All(Exact):
        @classmethod
        def subscribes_to(cls):
            return ["*"]

    assert all(All().matches(n) for n in ("anything", "payment.card.declined", ""))


def test_hash_matches_any_number_of_tokens():
    class Deep(Exact):
        @classmethod
        def subscribes_to(cls):
            return ["payment.#"]

    assert Deep().matches("payment") and Deep().matches("payment.card.declined")


class Hooked(BaseSubscriber):
    def __init__(self, skip=False, fail=False):
        super().__init__()
        self.skip, self.fail, self.calls, self.handled = skip, fail, [], []

    @classmethod
    def subscribes_to(cls):
        return ["*"]

    def before_handle(self, event):
        self.calls.append("before_handle")
        return not self.skip

    def handle(self, event):
        self.calls.append("handle")
        if self.fail:
            raise ValueError("handler broke")
        self.handled.append(event)

    def after_handle(self, event):
        self.calls.append("after_handle")

    def on_handle_error(self, event, error):
        self.calls.append(("on_handle_error", str(error)))


def test_handle_event_safely_runs_before_handle_after():
    sub = Hooked()
    sub._active = True
    sub.handle_event_safely({"event_name": "a.b"})
    assert sub.calls == ["before_handle", "handle", "after_handle"]


def test_before_handle_false_skips_the_event():
    sub = Hooked(skip=True)
    sub._active = True
    sub.handle_event_safely({"event_name": "a.b"})
    assert sub.calls == ["before_handle"] and sub.handled == []


def test_a_failing_handle_goes_to_on_handle_error_and_does_not_raise():
    sub = Hooked(fail=True)
    sub._active = True
    sub.handle_event_safely({"event_name": "a.b"})
    assert sub.calls == ["before_handle", "handle", ("on_handle_error", "handler broke")]


def test_an_inactive_subscriber_ignores_events():
    sub = Hooked()
    sub.handle_event_safely({"event_name": "a.b"})
    assert sub.calls == []


def test_start_registers_one_callback_per_pattern_once_and_stop_clears():
    sub = Exact()
    poller = MagicMock(spec=InProcessDomainEventPoller)
    sub.start(poller)
    sub.start(poller)
    assert sub.active and sub.subscriptions == ["order.created", "payment.*"]
    assert poller.on_event.call_count == 2
    sub.stop()
    sub.stop()
    assert not sub.active and sub.subscriptions == []


def test_an_invalid_pattern_is_a_pattern_error_at_start_before_anything_registers():
    class Bad(Exact):
        @classmethod
        def subscribes_to(cls):
            return ["ok.name", "pay[ment]"]

    poller = MagicMock(spec=InProcessDomainEventPoller)
    with pytest.raises(herald.PatternError, match=r"pay\[ment\]"):
        Bad().start(poller)
    assert poller.on_event.call_count == 0


def test_handle_if_matches_dumps_a_model_and_skips_other_names():
    sub = Hooked()
    sub._active = True
    event = MagicMock()
    event.event_name = "payment.processed"
    event.model_dump.return_value = {"event_name": "payment.processed"}
    sub._handle_if_matches(event, "payment.*")
    sub._handle_if_matches(event, "order.*")
    assert sub.handled == [{"event_name": "payment.processed"}]


# ------------------------------------------------------------------------------------------------
# The poller: a herald subscription

def test_a_started_subscriber_gets_events_as_tasker_core_dicts():
    sub = Collecting()
    poller = InProcessDomainEventPoller()
    sub.start(poller)
    poller.start()
    try:
        ctx = make_ctx()
        DefaultPublisher().publish(ctx, "payment.processed")
        DefaultPublisher().publish(ctx, "order.created")  # not a payment event
        assert sub.done.wait(60)
        assert poller.subscription is not None and poller.subscription.stats()["patterns"] == ["#"]
    finally:
        poller.stop()
    assert len(sub.events) == 1
    event = sub.events[0]
    assert set(event) == {"event_id", "event_name", "event_version", "metadata", "payload", "execution_result"}
    assert event["event_name"] == "payment.processed" and event["payload"] == {"amount": 12}
    assert {"task_uuid", "step_uuid", "step_name", "namespace", "correlation_id", "fired_at",
            "fired_by"} <= set(event["metadata"])
    assert event["metadata"]["task_uuid"] == ctx.task_uuid and event["metadata"]["step_name"] == "charge_card"
    assert event["execution_result"]["success"] is True
    assert poller.stats["events_processed"] == 2


def test_callbacks_get_in_process_domain_events_in_publish_order():
    got = []
    with herald.EventBus(1) as bus:
        poller = InProcessDomainEventPoller(bus=bus)
        poller.on_event(got.append)
        poller.start()
        for i in range(50):
            bus.publish("order.created", {"i": i}, metadata={"task_uuid": "t"})
        wait_until(lambda: len(got) == 50, timeout=10, message="50 events")
        poller.stop()
    assert [e.payload["i"] for e in got] == list(range(50))
    first = got[0]
    assert isinstance(first, InProcessDomainEvent) and first.herald_event is not None
    assert first.metadata.task_uuid == "t" and first.metadata.step_uuid is None
    assert first.model_dump()["event_id"] == first.herald_event.event_id


def test_a_failing_callback_is_reported_to_on_error_and_the_others_still_run():
    errors, seen = [], []
    with herald.EventBus(inline=True) as bus:
        poller = InProcessDomainEventPoller(bus=bus)
        poller.on_event(lambda e: 1 / 0)
        poller.on_event(seen.append)
        poller.on_error(errors.append)
        poller.on_error(lambda e: (_ for _ in ()).throw(RuntimeError("error callbacks may fail too")))
        poller.start()
        bus.publish("a.b", {})
        poller.stop()
    assert len(seen) == 1 and [type(e) for e in errors] == [ZeroDivisionError]


def test_on_event_with_a_pattern_filters_with_herald_globs():
    got = []
    with herald.EventBus(inline=True) as bus:
        poller = InProcessDomainEventPoller(bus=bus)
        poller.on_event(got.append, "order.#")
        poller.start()
        for name in ("order", "order.item.added", "payment.processed"):
            bus.publish(name, {})
        poller.stop()
    assert [e.event_name for e in got] == ["order", "order.item.added"]


def test_starting_a_running_poller_is_an_error_and_stopping_an_idle_one_is_not():
    poller = InProcessDomainEventPoller()
    poller.stop()
    poller.start()
    try:
        assert poller.is_running
        with pytest.raises(RuntimeError, match="already running"):
            poller.start()
    finally:
        poller.stop()
    assert not poller.is_running


def test_a_stopped_subscriber_leaves_the_poller():
    with herald.EventBus(inline=True) as bus:
        poller = InProcessDomainEventPoller(bus=bus)
        poller.start()
        sub = Collecting()
        sub.start(poller)
        bus.publish("payment.processed", {})
        sub.stop()
        bus.publish("payment.processed", {})
        sub.start(poller)  # a restart registers once again (tasker-core kept the old callbacks)
        bus.publish("payment.processed", {})
        poller.stop()
    assert len(sub.events) == 2


def test_overlapping_patterns_deliver_once_per_matching_pattern_as_in_tasker_core():
    class Overlap(Collecting):
        patterns = ["payment.*", "*"]

    with herald.EventBus(inline=True) as bus:
        poller = InProcessDomainEventPoller(bus=bus)
        poller.start()
        sub = Overlap()
        sub.start(poller)
        bus.publish("payment.processed", {})
        bus.publish("order.created", {})
        poller.stop()
    assert [e["event_name"] for e in sub.events] == ["payment.processed", "payment.processed", "order.created"]


# ------------------------------------------------------------------------------------------------
# Registries

class Named(Recorder):
    def __init__(self):
        super().__init__(name="NamedPublisher")


def test_publisher_registry_is_a_singleton_until_reset():
    first = PublisherRegistry.instance()
    assert PublisherRegistry.instance() is first
    PublisherRegistry.reset()
    assert PublisherRegistry.instance() is not first


def test_register_get_and_register_under_another_name():
    registry = PublisherRegistry.instance()
    a, b = Named(), Named()
    registry.register(a)
    registry.register(b, name="renamed")
    assert registry.get("NamedPublisher") is a and registry.get("renamed") is b
    assert registry.get("unknown") is None
    assert sorted(registry.list_publishers()) == ["NamedPublisher", "renamed"]


def test_registering_a_taken_name_overwrites_it():
    registry = PublisherRegistry.instance()
    first, second = Named(), Named()
    registry.register(first)
    registry.register(second)
    assert registry.get("NamedPublisher") is second
    assert registry.list_publishers() == ["NamedPublisher"]


def test_get_or_default_falls_back_to_the_default_publisher():
    registry = PublisherRegistry.instance()
    assert registry.get_or_default("unknown").publisher_name == "default"
    named = Named()
    registry.register(named)
    assert registry.get_or_default("NamedPublisher") is named


def test_validate_required_returns_the_missing_names():
    registry = PublisherRegistry.instance()
    registry.register(Named())
    assert registry.validate_required(["NamedPublisher", "Other", "Third"]) == ["Other", "Third"]
    assert registry.validate_required(["NamedPublisher"]) == []


def test_a_frozen_registry_refuses_register_and_clear_with_runtime_error():
    registry = PublisherRegistry.instance()
    registry.register(Named())
    registry.freeze()
    assert registry.is_frozen and herald.PublisherRegistry.instance().frozen
    with pytest.raises(RuntimeError, match="frozen"):
        registry.register(Recorder("late"))
    with pytest.raises(RuntimeError, match="frozen"):
        registry.clear()
    registry.unfreeze()
    assert not registry.is_frozen
    registry.register(Recorder("late"))
    assert "late" in registry.list_publishers()


def test_registering_something_else_is_a_value_error():
    with pytest.raises(ValueError, match="Expected BasePublisher"):
        PublisherRegistry.instance().register("not a publisher")


def test_the_registry_lives_in_herald_s_publisher_registry_and_clear_removes_only_its_own():
    class HeraldNative(herald.BasePublisher):
        publisher_name = "herald_native"

    herald.PublisherRegistry.instance().register(HeraldNative)
    registry = PublisherRegistry.instance()
    registry.register(Named())
    assert set(herald.PublisherRegistry.instance().names()) == {"herald_native", "NamedPublisher"}
    registry.clear()
    assert registry.list_publishers() == []
    assert herald.PublisherRegistry.instance().names() == ["herald_native"]


def test_a_name_held_by_a_herald_native_publisher_cannot_be_taken_over():
    class HeraldNative(herald.BasePublisher):
        publisher_name = "NamedPublisher"

    herald.PublisherRegistry.instance().register(HeraldNative)
    with pytest.raises(herald.RegistryError, match="NamedPublisher"):
        PublisherRegistry.instance().register(Named())


def test_subscriber_registry_registers_classes_and_named_instances():
    registry = SubscriberRegistry.instance()
    assert SubscriberRegistry.instance() is registry
    registry.register(Exact)
    registry.register_instance(Hooked())
    registry.register_instance(Hooked(), name="second_hooked")
    assert registry.list_registered() == {"classes": ["Exact"], "instances": ["Hooked", "second_hooked"]}
    stats = registry.stats()
    assert (stats["registered_classes"], stats["registered_instances"], stats["active_subscribers"]) == (1, 2, 0)


def test_subscriber_registry_rejects_what_is_not_a_subscriber():
    registry = SubscriberRegistry.instance()
    with pytest.raises(ValueError, match="Expected BaseSubscriber"):
        registry.register(dict)
    with pytest.raises(ValueError, match="Expected BaseSubscriber"):
        registry.register_instance(object())


def test_start_all_skips_a_class_that_fails_and_stop_all_stops_the_rest():
    class Broken(Exact):
        def __init__(self):
            raise RuntimeError("cannot build")

    registry = SubscriberRegistry.instance()
    registry.register(Broken)
    registry.register(Exact)
    registry.register_instance(Hooked())
    poller = MagicMock(spec=InProcessDomainEventPoller)
    assert registry.start_all(poller) == 2
    assert registry.active_count == 2
    assert [s["class"] for s in registry.stats()["subscriptions"]] == ["Exact", "Hooked"]
    assert registry.stop_all() == 2 and registry.active_count == 0


def test_clear_stops_and_forgets_everything():
    registry = SubscriberRegistry.instance()
    registry.register(Exact)
    registry.start_all(MagicMock(spec=InProcessDomainEventPoller))
    registry.clear()
    assert registry.list_registered() == {"classes": [], "instances": []} and registry.active_count == 0


def test_start_all_on_a_bus_runs_a_poller_that_stop_all_stops():
    with herald.EventBus(inline=True) as bus:
        sub = Collecting()
        registry = SubscriberRegistry.instance()
        registry.register_instance(sub)
        assert registry.start_all(bus) == 1
        bus.publish("payment.processed", {"n": 1})
        registry.stop_all()
        bus.publish("payment.processed", {"n": 2})
    assert [e["payload"] for e in sub.events] == [{"n": 1}]


# ------------------------------------------------------------------------------------------------
# Through a herald Worker

class PaymentPublisher(BasePublisher):
    """A tasker-core publisher as its users write them."""

    def __init__(self):
        self.after: list[tuple[str, dict]] = []
        self.errors: list[Exception] = []

    @property
    def publisher_name(self):
        return "PaymentEventPublisher"

    def should_publish(self, ctx):
        return (ctx.result or {}).get("transaction_id") is not None

    def transform_payload(self, ctx):
        return {"transaction_id": ctx.result["transaction_id"], "amount": ctx.result["amount"],
                "step": ctx.step_name}

    def additional_metadata(self, ctx):
        return {"payment_provider": "acme"}

    def after_publish(self, event_name, payload, metadata):
        self.after.append((event_name, payload))

    def on_publish_error(self, event_name, error, payload):
        self.errors.append(error)


PAYMENT_STEPS = [{"name": "process_payment", "publishes_events": [
    {"name": "payment.processed", "condition": "success", "publisher": "PaymentEventPublisher"}]}]


def completion(txn, amount=10, step="process_payment"):
    return {"step_name": step, "success": True, "task_uuid": str(uuid.uuid4()), "namespace": "payments",
            "result": {"transaction_id": txn, "amount": amount}}


def test_a_worker_runs_a_registered_tasker_core_publisher_and_a_poller_on_its_bus():
    publisher = PaymentPublisher()
    PublisherRegistry.instance().register(publisher)
    sub = Collecting(expect=1)
    SubscriberRegistry.instance().register_instance(sub)
    worker = herald.Worker(name="tc-inproc", steps=PAYMENT_STEPS)
    with worker:
        poller = InProcessDomainEventPoller(bus=worker)
        assert SubscriberRegistry.instance().start_all(poller) == 1
        poller.start()
        assert worker.complete_step(completion(None))  # should_publish says no
        assert worker.complete_step(completion("tx-1", 42))
        assert worker.drain(5)
        assert sub.done.wait(60)
        poller.stop()
    assert [e["payload"] for e in sub.events] == [{"transaction_id": "tx-1", "amount": 42, "step": "process_payment"}]
    meta = sub.events[0]["metadata"]
    assert meta["publisher"] == "PaymentEventPublisher" and meta["payment_provider"] == "acme"
    assert meta["namespace"] == "payments" and "published_at" in meta
    assert publisher.after == [("payment.processed", sub.events[0]["payload"])]


def test_overwriting_a_publisher_changes_what_the_worker_runs():
    class Other(PaymentPublisher):
        def transform_payload(self, ctx):
            return {"replaced": True}

    registry = PublisherRegistry.instance()
    registry.register(PaymentPublisher())
    registry.register(Other())
    got = []
    with herald.Worker(name="tc-overwrite", steps=PAYMENT_STEPS) as worker:
        worker.bus.subscribe("#", got.append)
        worker.complete_step(completion("tx-2"))
        assert worker.drain(5)
    assert [e.payload for e in got] == [{"replaced": True}]


def test_in_the_worker_a_failing_hook_reaches_on_publish_error_and_the_step_goes_on():
    class Exploding(PaymentPublisher):
        def transform_payload(self, ctx):
            raise KeyError("no amount")

    publisher = Exploding()
    PublisherRegistry.instance().register(publisher)
    with herald.Worker(name="tc-errors", steps=PAYMENT_STEPS) as worker:
        assert worker.complete_step(completion("tx-3"))
        assert worker.drain(5)
    assert [type(e) for e in publisher.errors] == [KeyError]


@pytest.fixture
def ipc_endpoint():
    path = f"/tmp/herald-tc-{uuid.uuid4().hex[:12]}.ipc"
    yield f"ipc://{path}"
    if os.path.exists(path):
        os.unlink(path)


def test_end_to_end_tasker_core_publisher_worker_zeromq_poller_subscriber(ipc_endpoint):
    """A tasker-core publisher in a herald Worker publishes over ZeroMQ; on the far side a
    ZmqSubscriber feeds a bus, a tasker-core poller listens there, and a tasker-core subscriber
    started with SubscriberRegistry.start_all(poller) gets tasker-core event dicts."""
    PublisherRegistry.instance().register(PaymentPublisher())
    steps = tc.herald_steps([{"name": "process_payment", "publishes_events": [
        {"name": "payment.processed", "condition": "success", "delivery_mode": "durable",
         "publisher": "PaymentEventPublisher", "description": "sent to other processes"}]}],
        durable_as="zeromq")
    sub = Collecting(expect=20)
    SubscriberRegistry.instance().register_instance(sub)
    worker = herald.Worker(name="tc-zmq", steps=steps)
    transport = herald.ZmqPublisher(ipc_endpoint)
    worker.set_transport(transport)
    local = []
    with herald.EventBus(1, name="far-side") as far_bus:
        poller = InProcessDomainEventPoller(bus=far_bus)
        assert SubscriberRegistry.instance().start_all(poller) == 1
        poller.start()
        with worker:
            worker.bus.subscribe("#", local.append)  # zeromq only: nothing in process
            with herald.ZmqSubscriber(ipc_endpoint, ["payment.*"], far_bus) as zsub:
                assert transport.wait_for_subscribers(1, timeout=60)
                for i in range(20):
                    assert worker.complete_step(completion(f"tx-{i}", amount=i))
                assert worker.drain(5)
                assert sub.done.wait(60), f"{len(sub.events)} events, {zsub.stats()}"
                assert zsub.gaps == 0
        poller.stop()
    assert local == []
    assert [e["payload"]["transaction_id"] for e in sub.events] == [f"tx-{i}" for i in range(20)]
    first = sub.events[0]
    assert first["event_name"] == "payment.processed"
    assert first["metadata"]["fired_by"] == "PaymentEventPublisher"
    assert first["metadata"]["payment_provider"] == "acme"
    assert first["execution_result"]["success"] is True
    assert len({e["event_id"] for e in sub.events}) == 20


def test_herald_exports_in_process_domain_event_as_its_event_type():
    assert herald.InProcessDomainEvent is herald.DomainEvent
    assert "InProcessDomainEvent" in herald.__all__


def test_an_async_publisher_hook_is_an_error_not_a_silent_coroutine():
    class AsyncBefore(Recorder):
        async def before_publish(self, event_name, payload, metadata):
            return True

    publisher = AsyncBefore()
    assert publisher.publish(make_ctx(), "payment.processed") is False
    _, error, _ = dict(publisher.calls)["on_publish_error"]
    assert isinstance(error, TypeError) and "synchronous" in str(error)


def test_in_a_worker_async_publisher_hooks_are_awaited():
    class AsyncPayments(PaymentPublisher):
        async def should_publish(self, ctx):
            return True

        async def transform_payload(self, ctx):
            return {"async": True, "txn": ctx.result["transaction_id"]}

        async def additional_metadata(self, ctx):
            return {"hook": "async"}

        async def before_publish(self, event_name, payload, metadata):
            return payload["txn"] != "skip-me"

    PublisherRegistry.instance().register(AsyncPayments())
    got = []
    with herald.Worker(name="tc-async", steps=PAYMENT_STEPS) as worker:
        worker.bus.subscribe("#", got.append)
        worker.complete_step(completion("skip-me"))
        worker.complete_step(completion("tx-9"))
        assert worker.drain(5)
    assert [(e.payload, e.metadata["hook"]) for e in got] == [({"async": True, "txn": "tx-9"}, "async")]
