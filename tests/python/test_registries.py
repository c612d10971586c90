"""PublisherRegistry and SubscriberRegistry from Python."""
import pytest

import herald
from conftest import wait_until


class PaymentEventPublisher(herald.BasePublisher):
    publisher_name = "payment_events"

    def publishes_for(self):
        return ["process_payment", "refund_payment"]


class OrderPublisher(herald.BasePublisher):
    publisher_name = "orders"

    def publishes_for(self):
        return ["complete_order"]


def test_instance_is_process_wide_and_register_accepts_a_class_or_an_instance():
    reg = herald.PublisherRegistry.instance()
    assert reg is herald.PublisherRegistry.instance()
    assert reg.register(PaymentEventPublisher) is PaymentEventPublisher
    orders = OrderPublisher()
    reg.register(orders)
    assert reg.names() == ["orders", "payment_events"]
    assert len(reg) == 2 and "orders" in reg
    assert isinstance(reg.get("payment_events"), PaymentEventPublisher)
    assert reg.get("orders") is orders
    assert reg.get("nope") is None


def test_get_for_step_prefers_a_declared_publisher_then_publishes_for_then_the_generic():
    reg = herald.PublisherRegistry()
    reg.register(PaymentEventPublisher)
    reg.register(OrderPublisher)
    assert reg.get_for_step("process_payment").publisher_name == "payment_events"
    assert reg.get_for_step("refund_payment").publisher_name == "payment_events"
    assert reg.get_for_step("unknown_step").publisher_name == "default"
    declared = [{"name": "payment.processed", "publisher": "orders"}]
    assert reg.get_for_step("process_payment", declared).publisher_name == "orders"


def test_get_or_default_and_get_strict():
    reg = herald.PublisherRegistry()
    reg.register(PaymentEventPublisher)
    assert reg.get_or_default("nope").publisher_name == "default"
    assert reg.get_strict("payment_events").publisher_name == "payment_events"
    with pytest.raises(herald.RegistryError, match="nope") as info:
        reg.get_strict("nope")
    assert "payment_events" in str(info.value)


def test_duplicates_frozen_registries_and_validate_required_raise_registry_error():
    reg = herald.PublisherRegistry()
    reg.register(PaymentEventPublisher)
    with pytest.raises(herald.RegistryError, match="payment_events"):
        reg.register(PaymentEventPublisher)
    reg.freeze()
    assert reg.frozen
    with pytest.raises(herald.RegistryError, match="frozen"):
        reg.register(OrderPublisher)
    reg.unfreeze()
    reg.register(OrderPublisher)
    reg.validate_required(["payment_events", "orders", "default"])
    with pytest.raises(herald.RegistryError) as info:
        reg.validate_required(["payment_events", "missing_one", "missing_two"])
    assert "missing_one" in str(info.value) and "missing_two" in str(info.value)


def test_reset_empties_the_process_wide_registry_even_when_frozen():
    reg = herald.PublisherRegistry.instance()
    reg.register(PaymentEventPublisher)
    reg.freeze()
    herald.PublisherRegistry.reset()
    assert len(reg) == 0 and not reg.frozen


class Collector(herald.BaseSubscriber):
    subscriber_name = "collector"

    def __init__(self):
        self.events, self.started, self.stopped = [], 0, 0

    def subscribes_to(self):
        return ["payment.*", "order.completed"]

    def handle(self, event):
        self.events.append(event.event_name)

    def on_start(self):
        self.started += 1

    def on_stop(self):
        self.stopped += 1


def test_subscriber_registry_start_all_stats_and_stop_all_on_its_own_bus():
    bus = herald.EventBus(2)
    reg = herald.SubscriberRegistry(bus)
    c = Collector()
    reg.register(c)
    assert reg.get("collector") is c and reg.names() == ["collector"]
    assert reg.start_all() == 1
    assert reg.start_all() == 0  # starts once
    assert c.started == 1
    for name in ["payment.processed", "order.completed", "order.cancelled", "payment.card.declined"]:
        bus.publish(name)
    assert bus.drain(5)
    assert c.events == ["payment.processed", "order.completed"]
    stats = reg.stats()["collector"]
    assert stats["received"] == 2 and stats["handled"] == 2 and stats["failed"] == 0
    report = reg.stop_all()
    assert report["success"] and c.stopped == 1
    bus.close()


def test_subscriber_registered_after_start_all_starts_at_once():
    reg = herald.SubscriberRegistry()
    assert reg.start_all() == 0
    c = Collector()
    reg.register(c)
    assert c.started == 1
    reg.bus.publish("order.completed")
    wait_until(lambda: c.events == ["order.completed"])
    reg.stop_all()


def test_subscriber_registry_errors():
    reg = herald.SubscriberRegistry()
    reg.register(Collector)
    with pytest.raises(herald.RegistryError, match="collector"):
        reg.register(Collector)

    class Bad(herald.BaseSubscriber):
        subscriber_name = "bad"

        def subscribes_to(self):
            return ["pay*"]

        def handle(self, event):
            pass

    with pytest.raises(herald.PatternError, match="pay\\*"):
        reg.register(Bad)
    assert reg.names() == ["collector"]
