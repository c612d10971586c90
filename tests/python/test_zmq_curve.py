"""CURVE from Python: an allowed client receives, a client whose key is not allowed receives
nothing, and misplaced key options are refused with a clear error."""
import os
import uuid

import pytest

import herald
from conftest import wait_until


@pytest.fixture
def endpoint():
    path = f"/tmp/herald-curve-{uuid.uuid4().hex[:12]}.ipc"
    yield f"ipc://{path}"
    if os.path.exists(path):
        os.unlink(path)


def collect(bus, seen):
    return bus.subscribe(["secure.*"], lambda event: seen.append(event.event_name))


def test_an_allowed_client_receives_and_a_client_with_another_key_receives_nothing(endpoint):
    server_public, server_secret = herald.curve_keypair()
    allowed_public, allowed_secret = herald.curve_keypair()
    _, stranger_secret = herald.curve_keypair()
    allowed_seen, stranger_seen = [], []
    with herald.EventBus(dispatcher_threads=1) as bus_a, herald.EventBus(dispatcher_threads=1) as bus_b:
        collect(bus_a, allowed_seen)
        collect(bus_b, stranger_seen)
        with herald.ZmqPublisher(endpoint, curve_secret_key=server_secret, curve_allow=[allowed_public]) as pub, \
                herald.ZmqSubscriber(endpoint, ["secure.*"], bus_a, curve_server_key=server_public,
                                     curve_secret_key=allowed_secret), \
                herald.ZmqSubscriber(endpoint, ["secure.*"], bus_b, curve_server_key=server_public,
                                     curve_secret_key=stranger_secret) as stranger:
            assert pub.wait_for_subscribers(1, 10.0)
            for i in range(20):
                pub.publish("secure.ping", {"n": i})
            wait_until(lambda: len(allowed_seen) == 20, timeout=20, message="20 events at the allowed client")
            assert not pub.wait_for_subscribers(2, 0.5)  # the stranger never got through
            assert stranger.received == 0
    assert stranger_seen == []


def test_key_options_on_the_wrong_side_are_refused_by_name(endpoint):
    public, secret = herald.curve_keypair()
    with pytest.raises(herald.HeraldError, match="curve_server_key"):
        herald.ZmqPublisher(endpoint, curve_server_key=public)  # binds: it is the server
    with pytest.raises(herald.HeraldError, match="curve_allow"):
        herald.ZmqPublisher(endpoint, bind=False, curve_allow=[public])


def test_a_world_readable_secret_key_file_is_refused(tmp_path):
    public, secret = herald.curve_keypair()
    key = tmp_path / "server.key"
    key.write_text(secret + "\n")
    os.chmod(key, 0o644)
    with pytest.raises(herald.TransportError):
        herald.read_curve_secret_key(str(key))
    os.chmod(key, 0o600)
    assert herald.read_curve_secret_key(str(key)) == secret
