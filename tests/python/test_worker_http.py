"""A Python Worker with ``http.listen``: /metrics, /health (fed by a health_check override, sync or
async) and /status scraped with urllib; the bound address readable as Worker.http_address."""
import asyncio
import json
import urllib.error
import urllib.request

import pytest

import herald
from conftest import wait_until

STEPS = [{"name": "charge", "publishes_events": [{"name": "payment.processed", "condition": "success"},
                                                 {"name": "payment.failed", "condition": "failure"}]}]


def make(cls=herald.Worker, listen="127.0.0.1:0"):
    return cls(config={"worker": {"name": "py-http"}, "http": {"listen": listen}}, steps=STEPS,
               publishers=herald.PublisherRegistry(), subscribers=herald.SubscriberRegistry())


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(address):
    samples = {}
    for line in get(f"http://{address}/metrics")[1].splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def test_metrics_and_status_over_http_and_the_bound_address():
    worker = make()
    assert worker.http_address is None  # not started
    worker.start()
    try:
        address = worker.http_address
        assert address.startswith("127.0.0.1:") and not address.endswith(":0")
        assert worker.complete_steps([{"step_name": "charge", "success": True}] * 3
                                     + [{"step_name": "charge", "success": False}]) == 4
        assert worker.drain(10)
        m = metrics(address)
        assert m["herald_completions_accepted_total"] == 4
        assert m['herald_events_published_total{event_name="payment.processed"}'] == 3
        assert m['herald_events_published_total{event_name="payment.failed"}'] == 1
        assert m['herald_events_skipped_total{event_name="payment.failed",reason="condition"}'] == 3
        assert m['herald_worker_state{state="RUNNING"}'] == 1
        status, body = get(f"http://{address}/status")
        assert status == 200 and json.loads(body)["completions"]["processed"] == 4
    finally:
        worker.stop()
    assert worker.http_address is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{address}/health", timeout=5)


@pytest.mark.parametrize("is_async", [False, True])
def test_health_flips_between_200_and_503_with_the_health_check_override(is_async):
    answer = {"ok": True}

    if is_async:
        class Checked(herald.Worker):
            async def health_check(self):
                await asyncio.sleep(0)
                return answer["ok"]
    else:
        class Checked(herald.Worker):
            def health_check(self):
                return answer["ok"]

    worker = make(Checked)
    worker.start()
    try:
        url = f"http://{worker.http_address}/health"
        status, body = get(url)
        assert status == 200 and json.loads(body)["health_check"] is True
        answer["ok"] = False
        status, body = get(url)
        assert status == 503
        assert json.loads(body)["healthy"] is False and json.loads(body)["health_check"] is False
        assert worker.health()["healthy"] is False  # the same report in Python
        answer["ok"] = True
        assert get(url)[0] == 200
    finally:
        worker.stop()


def test_a_health_check_that_raises_is_503():
    class Broken(herald.Worker):
        def health_check(self):
            raise RuntimeError("database unreachable")

    worker = make(Broken)
    worker.start()
    try:
        assert get(f"http://{worker.http_address}/health")[0] == 503
    finally:
        worker.stop()


def test_an_address_in_use_is_an_http_error_naming_it():
    first = make()
    first.start()
    try:
        taken = first.http_address
        second = make(listen=taken)
        with pytest.raises(herald.HttpError, match=taken) as info:
            second.start()
        assert info.value.address == taken
        assert get(f"http://{taken}/health")[0] == 200
    finally:
        first.stop()


def test_a_malformed_address_is_a_config_error():
    with pytest.raises(herald.ConfigError, match="http.listen.*no-port"):
        make(listen="no-port")
