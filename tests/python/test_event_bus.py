"""herald.EventBus from Python: patterns identical to C++, handlers (sync and async), publish and
subscribe from inside handlers, payload conversion, errors with their types and messages."""
import asyncio
import re
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


@pytest.mark.parametrize("payload, path", [
    ({"s": "\ud800"}, "payload['s']: str '\\ud800' is not valid UTF-8 text"),
    ({"n": -(2 ** 64)}, "payload['n']: integer"),
    ({("a", 1): {1: [b"x", {0.5: set()}]}}, "payload[('a', 1)][1][1][0.5]: object of type set"),
])
def test_more_unconvertible_values_name_their_key_path(payload, path):
    with herald.EventBus(inline=True) as bus:
        with pytest.raises(TypeError) as info:
            bus.publish("x.y", payload)
        assert str(info.value).startswith(path), str(info.value)


def test_payload_conversion_of_every_supported_type():
    with herald.EventBus(inline=True) as bus:
        e = bus.publish("x.y", {"none": None, "t": True, "f": False, "i": -5, "big": 2 ** 64 - 1,
                                "fl": 2.5, "s": "h\u00e9llo \u2603", "b": b"\x00\xffab", "tuple": (1, (2,)),
                                3: "int key", "nested": {"l": [[], {}]}})
    assert e.payload == {"none": None, "t": True, "f": False, "i": -5, "big": 2 ** 64 - 1, "fl": 2.5,
                         "s": "h\u00e9llo \u2603", "b": "AP9hYg==", "tuple": [1, [2]], "3": "int key",
                         "nested": {"l": [[], {}]}}
    assert type(e.payload["t"]) is bool and type(e.payload["big"]) is int


def test_a_payload_that_contains_itself_or_nests_too_deep_is_a_type_error_not_a_crash():
    looped = []
    looped.append(looped)
    deep = leaf = {}
    for _ in range(200):
        leaf["k"] = {}
        leaf = leaf["k"]
    with herald.EventBus(inline=True) as bus:
        for bad in ({"v": looped}, deep):
            with pytest.raises(TypeError, match="nested more than 127 levels deep"):
                bus.publish("x.y", bad)
        assert bus.publish("x.y", {"v": 1}).payload == {"v": 1}  # the bus is unharmed

    def lists(n):
        outer = inner = []
        for _ in range(n - 1):
            inner.append([])
            inner = inner[0]
        return outer

    # A payload may nest 127 levels (its own dict included): with the event envelope around it,
    # that is the 128 the wire decoder accepts.
    with pytest.raises(TypeError, match="nested more than 127"):
        herald.DomainEvent.create("x.y", {"v": lists(127)})
    event = herald.DomainEvent.create("x.y", {"v": lists(126)})
    again = herald.DomainEvent.from_dict(event.to_dict())  # the whole envelope: 128 levels
    assert again == event and again.payload == event.payload
    assert herald.DomainEvent.from_dict(herald.DomainEvent.create("x.y").to_dict()).payload == {}


def test_inline_handlers_get_the_very_event_publish_returns():
    with herald.EventBus(inline=True) as bus:
        seen = []
        bus.subscribe("a.*", seen.append)
        bus.subscribe("a.#", lambda e: seen.append(e))
        sent = bus.publish("a.b", {"n": 1})
        assert len(seen) == 2 and seen[0] is sent and seen[1] is sent
        # a nested publish from a handler gets its own event
        inner = []
        bus.subscribe("outer.x", lambda e: inner.append((e, bus.publish("a.c"))))
        outer = bus.publish("outer.x")
        (got_outer, got_inner), = inner
        assert got_outer is outer and got_inner is not outer and got_inner.event_name == "a.c"
        assert seen[-1] is got_inner
        # publish_event of an existing event hands the handlers that very object too
        prebuilt = herald.DomainEvent.create("a.z")
        assert bus.publish_event(prebuilt)["delivered"] == 2
        assert seen[-2] is prebuilt and seen[-1] is prebuilt


def test_domain_event_type_behaviour():
    with pytest.raises(TypeError):
        herald.DomainEvent()
    e = herald.DomainEvent.create("a.b", {"x": 1}, {"correlation_id": "c"})
    f = herald.DomainEvent.from_dict(e.to_dict())
    assert e == f and not (e != f) and hash(e) == hash(f) and {e: 1}[f] == 1
    assert e != herald.DomainEvent.create("a.b") and (e == "a.b") is False
    assert repr(e) == f"DomainEvent(event_name='a.b', event_id='{e.event_id}')"
    assert e.correlation_id == "c" and e.payload is e.payload  # converted once
    import json
    assert json.loads(e.to_json()) == e.to_dict()


def test_an_event_kept_in_its_own_payload_is_collected():
    import gc
    import weakref

    class Marker:
        pass

    with herald.EventBus(inline=True) as bus:
        e = bus.publish("a.b", {"x": 1})
    marker = Marker()
    watch = weakref.ref(marker)
    e.payload["self"] = e       # a cycle through the cached payload dict
    e.payload["marker"] = marker
    del e, marker
    gc.collect()
    assert watch() is None


@pytest.mark.parametrize("call, message", [
    (lambda p: p(), "missing required argument 'event_name'"),
    (lambda p: p(1), "event_name must be str, not int"),
    (lambda p: p("a.b", {}, {}), "metadata is keyword-only"),
    (lambda p: p("a.b", colour="red"), "unexpected or repeated keyword argument 'colour'"),
    (lambda p: p("a.b", {}, payload={}), "unexpected or repeated keyword argument 'payload'"),
])
def test_publish_argument_errors(call, message):
    with herald.EventBus(inline=True) as bus:
        with pytest.raises(TypeError, match=message):
            call(bus.publish)
        e = bus.publish(event_name="a.b", payload={"k": 1}, metadata={"correlation_id": "z"})
        assert e.payload == {"k": 1} and e.correlation_id == "z"


def test_a_subclass_that_overrides_publish_keeps_its_override():
    class Audited(herald.EventBus):
        def __init__(self):
            super().__init__(inline=True)
            self.names = []

        def publish(self, event_name, payload=None, *, metadata=None):
            self.names.append(event_name)
            return super().publish(event_name, payload, metadata=metadata)

    with Audited() as bus:
        assert bus.publish("a.b").event_name == "a.b"
        assert bus.names == ["a.b"]


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
            await asyncio.wait_for(done.wait(), 60)
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


# A key that is not a str sends a completion dict down the general path (dict -> JSON tree ->
# StepCompletion::from_json) instead of the fast one that reads fields straight from the dict:
# both must read the same completion and raise the same errors.
GENERAL_PATH = {0: "not a str key: the general path"}

COMPLETIONS = [
    {"step_name": "s", "success": True},
    {"step_name": "charge", "success": False, "task_uuid": "t-1", "step_uuid": "u-1",
     "namespace": "payments", "correlation_id": "c-9", "retryable": True, "retry_count": 2,
     "max_retries": 5, "result": {"amount": 12.5, "items": [1, "two", None, {"x": [True]}]},
     "metadata": {"region": "eu", "n": 2**63}, "error": "card declined", "extra": [1, 2]},
    {"step_name": "s", "success": True, "result": None, "metadata": None},
    {"step_name": "s", "success": True, "result": [1, 2, 3], "error": {"message": "m", "error_type": "E"}},
    {"step_name": "s", "success": True, "result": "text", "retry_count": 0, "max_retries": 2**31 - 1},
]

BAD_COMPLETIONS = [
    ({"success": True}, "step_name: required field is missing"),
    ({"step_name": "", "success": True}, "step_name: must not be empty"),
    ({"step_name": 3, "success": True}, "step_name"),
    ({"step_name": "s"}, "success: required field is missing"),
    ({"step_name": "s", "success": 1}, "success"),
    ({"step_name": "s", "success": True, "retry_count": -1}, "retry_count"),
    ({"step_name": "s", "success": True, "max_retries": 2**31}, "max_retries"),
    ({"step_name": "s", "success": True, "retry_count": True}, "retry_count"),
    ({"step_name": "s", "success": True, "metadata": [1]}, "metadata"),
    ({"step_name": "s", "success": True, "task_uuid": None}, None),
    ({"step_name": "s", "success": True, "result": {"x": {1, 2}}}, r"\['result'\]\['x'\]"),
    ({"step_name": "s", "success": True, "other": object()}, r"\['other'\]"),
]


@pytest.mark.parametrize("completion", COMPLETIONS)
def test_completion_dict_reads_the_same_on_the_fast_and_the_general_path(completion):
    fast = herald.StepCompletion.from_dict(completion)
    general = herald.StepCompletion.from_dict({**completion, **GENERAL_PATH})
    assert fast.to_dict() == general.to_dict()
    assert fast.step_name == completion["step_name"] and fast.success == completion["success"]
    if completion.get("result") is not None:
        assert fast.result == completion["result"]


@pytest.mark.parametrize("completion,match", BAD_COMPLETIONS)
def test_completion_dict_errors_are_the_same_on_the_fast_and_the_general_path(completion, match):
    def outcome(d):
        try:
            return ("ok", herald.StepCompletion.from_dict(d).to_dict())
        except Exception as e:  # compared below: same type, same message
            return (type(e), str(e))
    fast, general = outcome(completion), outcome({**completion, **GENERAL_PATH})
    assert fast == general
    if match is not None:
        assert fast[0] != "ok" and re.search(match, fast[1]), fast


def test_idle_spin_delivers_every_event_in_order_and_rejects_bad_values():
    with herald.EventBus(2, idle_spin=0.0005) as bus:
        got = []
        bus.subscribe("tick.*", lambda e: got.append(e.payload["n"]))
        for n in range(2000):
            bus.publish("tick.n", {"n": n})
        assert bus.drain(10)
        assert got == list(range(2000))
    for bad in (-1, 2.0, float("nan")):
        with pytest.raises(ValueError, match="idle_spin"):
            herald.EventBus(1, idle_spin=bad)
