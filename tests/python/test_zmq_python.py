"""A Python subscriber receiving events over ZeroMQ: from a `herald publish` process, and from a
Python ZmqPublisher."""
import os
import subprocess
import threading
import uuid

import pytest

import herald
from conftest import wait_until


@pytest.fixture
def ipc_endpoint():
    """A short ipc:// path (pytest's tmp_path can exceed the 107-byte socket path limit)."""
    path = f"/tmp/herald-py-{uuid.uuid4().hex[:12]}.ipc"
    yield f"ipc://{path}"
    if os.path.exists(path):
        os.unlink(path)


class Collector(herald.BaseSubscriber):
    subscriber_name = "zmq_collector"

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def subscribes_to(self):
        return ["payment.*"]

    async def handle(self, event):
        with self.lock:
            self.events.append(event)


def test_python_subscriber_receives_events_from_a_herald_publish_process(herald_bin, ipc_endpoint):
    endpoint = ipc_endpoint
    collector = Collector()
    herald.SubscriberRegistry.instance().register(collector)
    count = 200
    with herald.Worker(name="zmq-listener") as worker:
        publisher = subprocess.Popen(
            [str(herald_bin), "publish", "--bind", endpoint, "--wait-subscribers", "1", "--count", str(count),
             "payment.processed", '{"amount": 12.5, "currency": "EUR"}'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            with herald.ZmqSubscriber(endpoint, ["payment.*"], worker) as sub:
                wait_until(lambda: len(collector.events) == count or publisher.poll() not in (None, 0),
                           timeout=30, message=f"{count} events (got {len(collector.events)}, {sub.stats()}, {worker.status()['subscribers']})")
                assert publisher.poll() in (None, 0), publisher.stderr.read()
                assert sub.received == count and sub.gaps == 0
            out, err = publisher.communicate(timeout=30)
            assert publisher.returncode == 0, err
        finally:
            if publisher.poll() is None:
                publisher.kill()
                publisher.wait()
    first = collector.events[0]
    assert first.event_name == "payment.processed"
    assert first.payload == {"amount": 12.5, "currency": "EUR"}
    assert len({e.event_id for e in collector.events}) == count


def test_zmq_publisher_to_zmq_subscriber_in_process_with_pattern_filtering(ipc_endpoint):
    endpoint = ipc_endpoint
    got = []
    with herald.EventBus(1) as bus:
        bus.subscribe("#", got.append)
        with herald.ZmqPublisher(endpoint) as pub, herald.ZmqSubscriber(endpoint, ["order.*"], bus):
            assert pub.wait_for_subscribers(1, timeout=60)
            for i in range(10):
                pub.publish("order.completed", {"i": i})
                pub.publish("payment.processed", {"i": i})
            wait_until(lambda: len(got) == 10, timeout=10, message="10 order events")
        assert bus.drain(5)
    assert [e.payload["i"] for e in got] == list(range(10))
    assert {e.event_name for e in got} == {"order.completed"}


def test_zmq_errors_are_transport_errors():
    with pytest.raises(herald.TransportError, match="nonsense"):
        with herald.ZmqPublisher("nonsense://x"):
            pass
