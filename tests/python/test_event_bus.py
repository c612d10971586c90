"""herald.EventBus from Python: patterns identical to C++, handlers (sync and async), publish and
subscribe from inside handlers, payload conversion, errors with their types and messages."""
import asyncio
import threading

import pytest

import herald
from conftest import wait_until

# The C++ pattern table (tests/events/pattern_test.cpp), checked through a real EventBus.
PATTERN_TABLE = [
    ("payment.processed", "payment.processed", True),
    ("payment.processed", "payment.processed.late", False),
    ("payment.processed", "payment", False),
    ("payment.processed", "payment.processe", False),
    ("payment.*", "payment.processed", True),
    ("payment.*", "payment", False),
    ("payment.*", "payment.card.declined", False),
    ("payment.*", "paymentx.processed", False),
    ("*.processed", "payment.processed", True),
    ("*.processed", "processed", False),
    ("*.processed", "a.b.processed", False),
    ("*.*", "a.b", True),
    ("*.*", "a", False),
    ("*.*", "a.b.c", False),
    ("payment.#", "payment", True),
    ("payment.#", "payment.processed", True),
    ("payment.#", "payment.card.declined", True),
    ("payment.#", "payments.processed", False),
    ("payment.**", "payment.card.declined", True),
    ("payment.**", "payment", True),
    ("#", "anything.at.all", True),
    ("#", "x", True),
    ("**", "x.y", True),
    ("*", "x", True),
    ("*", "x.y.z", True),
    ("#.declined", "declined", True),
    ("#.declined", "payment.card.declined", True),
    ("#.declined", "payment.card.declinedx", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.xb", False),
    ("a.#.b", "ab", False),
    ("a.*.b", "a.b", False),
    ("a.*.b", "a.x.b", True),
    ("a.*.#", "a", False),
    ("a.*.#", "a.x", True),
    ("a.*.#", "a.x.y.z", True),
    ("order-v2.fulfilled_ok", "order-v2.fulfilled_ok", True),
    ("Order.Fulfilled", "order.fulfilled", False),
    ("#.#", "a", True),
    ("*.#.*", "a", False),
    ("*.#.*", "a.b", True),
    ("*.#.*", "a.b.c.d", True),
]
BAD_PATTERNS = ["", "payment.", ".payment", "a..b", "pay*", "pay#ment", "a.b c", "a/b", "*a", "a.**b", "é.x"]


def test_pattern_semantics_through_the_bus_match_the_cpp_table():
    names = sorted({name for _, name, _ in PATTERN_TABLE})
    with herald.EventBus(2) as bus:
        seen = {}
        lock = threading.Lock()
        for i, (pattern, _, _) in enumerate(PATTERN_TABLE):
            def handler(event, i=i):
                with lock:
                    seen.setdefault(i, []).append(event.event_name)
            bus.subscribe(pattern, handler, name=f"p{i}")
        for name in names:
            bus.publish(name)
        assert bus.drain(10)
        for i, (pattern, name, expected) in enumerate(PATTERN_TABLE):
            got = seen.get(i, [])
            assert (name in got) == expected, f"pattern {pattern!r} vs {name!r}"
            assert herald.Pattern(pattern).matches(name) == expected
            assert len(got) == len(set(got)), "each event delivered once per subscription"


@pytest.mark.parametrize("bad", BAD_PATTERNS)
def test_invalid_patterns_raise_pattern_error_naming_the_pattern(bad):
    with herald.EventBus(1) as bus:
        with pytest.raises(herald.PatternError) as info:
            bus.subscribe([bad], print)
        assert f"'{bad}'" in str(info.value)
        assert info.value.pattern == bad
        assert isinstance(info.value, herald.HeraldError)


def test_a_subscriber_gets_an_event_once_however_many_patterns_match():
    with herald.EventBus(1) as bus:
        got = []
        bus.subscribe(["payment.*", "payment.#", "#"], got.append)
        bus.publish("payment.processed", {"amount": 1})
        assert bus.drain(5)
        assert [e.event_name for e in got] == ["payment.processed"]


def test_event_fields_and_to_dict():
    with herald.EventBus(1) as bus:
        got = []
        bus.subscribe("order.completed", got.append)
        sent = bus.publish("order.completed", {"order_id": 7, "items": [1, 2.5, "x", None, True]},
                           metadata={"correlation_id": "c-1", "region": "eu"})
        assert bus.drain(5)
    (event,) = got
    assert event == sent and event.event_id == sent.event_id and len(event.event_id) == 36
    assert event.event_name == "order.completed"
    assert event.payload == {"order_id": 7, "items": [1, 2.5, "x", None, True]}
    assert event.metadata["correlation_id"] == "c-1" and event.metadata["region"] == "eu"
    assert event.execution_result["success"] is True
    d = event.to_dict()
    assert d["event_id"] == event.event_id and d["payload"] == event.payload


def test_bad_event_name_raises_event_name_error():
    with herald.EventBus(1) as bus:
        with pytest.raises(herald.EventNameError, match="bad name"):
            bus.publish("bad name", {})


@pytest.mark.parametrize("payload, path", [
    ({"items": [1, 2, {3}]}, "payload['items'][2]: object of type set is not JSON serialisable"),
    ({"a": {"b": object()}}, "payload['a']['b']: object of type object is not JSON serialisable"),
    ({"n": 2 ** 80}, "payload['n']: integer"),
])
def test_payload_that_is_not_json_serialisable_raises_type_error_naming_the_key_path(payload, path):
    with herald.EventBus(1) as bus:
        with pytest.raises(TypeError) as info:
            bus.publish("x.y", payload)
        assert str(info.value).startswith(path)


def test_unsubscribe_stops_deliveries_and_dropping_the_handle_does_not():
    with herald.EventBus(1) as bus:
        a, b = [], []
        sub = bus.subscribe("e", a.append)
        bus.subscribe("e", b.append)  # handle dropped at once: still subscribed
        bus.publish("e")
        assert bus.drain(5)
        sub.unsubscribe()
        assert not sub.active
        bus.publish("e")
        assert bus.drain(5)
        assert len(a) == 1 and len(b) == 2


def test_handler_exception_is_counted_logged_with_traceback_and_does_not_stop_the_bus(caplog):
    with herald.EventBus(1) as bus:
        def bad(event):
            raise KeyError("missing")
        good = []
        sub = bus.subscribe("e", bad, name="bad")
        bus.subscribe("e", good.append)
        with caplog.at_level("ERROR", logger="herald"):
            bus.publish("e")
            bus.publish("e")
            assert bus.drain(5)
        stats = sub.stats()
        assert stats["failed"] == 2 and stats["received"] == 2
        assert len(good) == 2
        records = [r for r in caplog.records if "handler 'bad'" in r.getMessage()]
        assert records and records[0].exc_info[0] is KeyError


def test_publish_subscribe_and_unsubscribe_from_inside_a_handler():
    with herald.EventBus(2) as bus:
        chained, late = [], []
        state = {}

        def first(event):
            n = event.payload["n"]
            if n == 2:
                state["late"] = bus.subscribe("chain.step", late.append)
            if n < 5:
                bus.publish("chain.step", {"n": n + 1})
            if n == 4:
                state["self"].unsubscribe()  # its own subscription, from inside: no deadlock

        def record(event):
            chained.append(event.payload["n"])

        # `record` first: the bus fills mailboxes in subscription order, so event n reaches
        # `record` before `first` (on another thread) can publish n + 1. The other way round,
        # n + 1 could overtake n while the publish of n is still filling mailboxes (two
        # concurrent publishes have no order), and the test failed under load.
        bus.subscribe("chain.step", record)
        state["self"] = bus.subscribe("chain.step", first)
        bus.publish("chain.step", {"n": 0})
        wait_until(lambda: len(chained) == 6, message="chain")
        assert bus.drain(5)
        assert chained == [0, 1, 2, 3, 4, 5]
        assert [e.payload["n"] for e in late] == [3, 4, 5]
        assert not state["self"].active


def test_async_handlers_run_on_the_loop_running_at_subscribe_time():
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        done = asyncio.Event()
        with herald.EventBus(2) as bus:
            async def handler(event):
                assert asyncio.get_running_loop() is loop
                await asyncio.sleep(0)
                seen.append(event.payload["i"])
                if len(seen) == 20:
                    done.set()
            bus.subscribe("tick", handler)
            for i in range(20):
                bus.publish("tick", {"i": i})
            await asyncio.wait_for(done.wait(), 10)
            # drain blocks: run it off the loop, which keeps serving the handler
            assert await loop.run_in_executor(None, bus.drain, 5.0)
        return seen

    assert asyncio.run(main()) == list(range(20))


def test_async_handler_from_sync_code_runs_on_a_loop_the_bus_owns():
    loops = []

    async def handler(event):
        loops.append(asyncio.get_running_loop())

    with herald.EventBus(2) as bus:
        bus.subscribe("a", handler)
        bus.subscribe("b", handler)
        bus.publish("a")
        bus.publish("b")
        assert bus.drain(5)
    assert len(loops) == 2 and loops[0] is loops[1]


def test_close_rejects_later_publishes_with_state_error_and_is_idempotent():
    bus = herald.EventBus(1)
    got = []
    bus.subscribe("e", got.append)
    bus.publish("e")
    report = bus.close()
    assert report["drained"] and got
    assert bus.closed
    with pytest.raises(herald.StateError):
        bus.publish("e")
    bus.close()


def test_subscribe_as_decorator():
    with herald.EventBus(1) as bus:
        got = []

        @bus.subscribe("d.*")
        def on_d(event):
            got.append(event.event_name)

        bus.publish("d.x")
        assert bus.drain(5)
        assert got == ["d.x"] and callable(on_d)


def test_exception_hierarchy_and_messages():
    for name in ["ConfigError", "PatternError", "ValidationError", "RegistryError", "StateError",
                 "TransportError", "EventNameError", "ParseError", "StartupError", "PayloadSchemaError"]:
        assert issubclass(getattr(herald, name), herald.HeraldError), name
    assert issubclass(herald.PayloadSchemaError, herald.ValidationError)
    with pytest.raises(herald.ValidationError, match="success: required field is missing"):
        herald.StepCompletion.from_dict({"step_name": "s"})
    with pytest.raises(herald.ConfigError) as info:
        herald.Worker(config={"worker": {"nmae": "x"}})
    assert "nmae" in str(info.value)
    with pytest.raises(herald.ConfigError, match="cannot|No such|not"):
        herald.Worker(config="/nonexistent/herald.json")
    with pytest.raises(herald.UnknownValueError, match="overflow"):
        with herald.EventBus(1) as bus:
            bus.subscribe("e", print, overflow="sometimes")
