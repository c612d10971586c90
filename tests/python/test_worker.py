"""herald.Worker from Python: the issue's example end to end, every hook's order and error rules,
sync and async variants, event loops, run() and signals."""
import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import herald
from conftest import wait_until

PAYMENT_STEPS = [{"name": "process_payment",
                  "publishes_events": [{"name": "payment.processed", "condition": "success"},
                                       {"name": "payment.failed", "condition": "permanent_failure"}]}]


def ok_completion(payment_id="pay_1", amount=42.5, **extra):
    return {"step_name": "process_payment", "success": True,
            "result": {"payment_id": payment_id, "amount": amount}, **extra}


# ------------------------------------------------------------------------------------------------
# The issue's example, nearly verbatim.

def test_issue_example_end_to_end():
    log = []

    class PaymentEventPublisher(herald.BasePublisher):
        publisher_name = "payment_events"

        def publishes_for(self):
            return ["process_payment", "refund_payment"]

        async def transform_payload(self, ctx):          # ctx: herald.StepEventContext
            assert isinstance(ctx, herald.StepEventContext)
            return {"payment_id": ctx.result.get("payment_id"), "amount": ctx.result.get("amount")}

        async def before_publish(self, ctx): return True   # False skips the event quietly

        async def after_publish(self, ctx, event):        # event: herald.DomainEvent
            log.append(("after_publish", event.event_name))

        async def on_publish_error(self, ctx, error):
            log.append(("on_publish_error", error))

        async def additional_metadata(self, ctx):
            return {"payment_processor": "stripe"}

        def should_publish(self, ctx): return True

    class AuditLoggingSubscriber(herald.BaseSubscriber):
        subscriber_name = "audit_logger"

        def subscribes_to(self):
            return ["payment.*", "order.completed"]

        async def handle(self, event):
            log.append(("handle", event.event_name, event.payload, event.metadata["payment_processor"]))
            return herald.SubscriberResult(success=True)

        async def before_handle(self, event): return True  # False skips handle/after_handle

        async def after_handle(self, event, result):
            log.append(("after_handle", event.event_name, result.success))

        async def on_handle_error(self, event, error):
            log.append(("on_handle_error", error))

    pub_registry = herald.PublisherRegistry.instance()      # process-wide default
    pub_registry.register(PaymentEventPublisher)            # a class (instantiated) or an instance
    assert pub_registry.get_for_step("process_payment").publisher_name == "payment_events"
    sub_registry = herald.SubscriberRegistry.instance()
    sub_registry.register(AuditLoggingSubscriber)

    worker = herald.Worker(name="payments-worker", steps=PAYMENT_STEPS)

    @worker.on_startup
    async def startup(): log.append(("startup",))

    @worker.on_shutdown
    async def shutdown(): log.append(("shutdown",))

    @worker.on_success
    async def on_success(completion): log.append(("on_success", completion.step_name))

    @worker.on_error
    async def on_error(completion, error): log.append(("on_error", error))

    @worker.on_worker_startup
    async def per_worker_startup(): log.append(("per_worker_startup",))

    async def main():
        async with worker:                                  # start() ... stop() with drain
            assert worker.state == herald.WorkerState.RUNNING
            assert worker.complete_step({"step_name": "process_payment", "success": True,
                                         "result": {"payment_id": "pay_123", "amount": 10}})

    asyncio.run(main())
    assert worker.state == herald.WorkerState.STOPPED
    plain = [entry for entry in log if entry != ("per_worker_startup",)]
    handled = ("handle", "payment.processed", {"payment_id": "pay_123", "amount": 10}, "stripe")
    # The subscriber runs on a dispatcher thread, concurrently with the publisher's last hooks.
    expected = [("startup",), ("after_publish", "payment.processed"), ("on_success", "process_payment"),
                handled, ("after_handle", "payment.processed", True), ("shutdown",)]
    assert len(plain) == len(expected) and all(entry in plain for entry in expected), plain
    assert plain[0] == ("startup",) and plain[-1] == ("shutdown",)
    assert plain.index(handled) < plain.index(("after_handle", "payment.processed", True))
    assert plain.index(("after_publish", "payment.processed")) < plain.index(("on_success", "process_payment"))
    assert log.count(("per_worker_startup",)) >= 1
    status = worker.status()
    assert status["state"] == "STOPPED" and status["subscribers"]["audit_logger"]["handled"] == 1


def test_example_script_runs(python_env):
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "payments_worker.py")
    proc = subprocess.run([sys.executable, script], env=python_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "audit: payment.processed" in proc.stdout and "STOPPED 2 events handled" in proc.stdout


# ------------------------------------------------------------------------------------------------
# Hooks: order and error rules.

def test_hook_order_startup_in_order_shutdown_reversed_state_changes_observed():
    order = []
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS, dispatcher_threads=2)
    worker.on_startup(lambda: order.append("startup-1"))
    worker.on_startup(lambda: order.append("startup-2"))
    worker.on_shutdown(lambda: order.append("shutdown-1"))
    worker.on_shutdown(lambda: order.append("shutdown-2"))
    threads = []
    worker.on_worker_startup(lambda: threads.append(("start", threading.get_ident())))
    worker.on_worker_shutdown(lambda: threads.append(("stop", threading.get_ident())))
    states = []
    worker.on_state_change(lambda a, b: states.append((a, b)))
    worker.start()
    order.append("running")
    worker.stop()
    assert order == ["startup-1", "startup-2", "running", "shutdown-2", "shutdown-1"]
    S = herald.WorkerState
    assert states == [(S.INITIALIZING, S.STARTING), (S.STARTING, S.RUNNING),
                      (S.RUNNING, S.STOPPING), (S.STOPPING, S.STOPPED)]
    starts = {t for kind, t in threads if kind == "start"}
    stops = {t for kind, t in threads if kind == "stop"}
    assert len(starts) == 2 and starts == stops and threading.get_ident() not in starts


def test_failing_startup_hook_raises_startup_error_naming_it_with_the_original_cause():
    ran = []
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)

    def connect_db():
        raise ConnectionError("db down")

    worker.on_startup(lambda: ran.append("first"), name="first")
    worker.on_startup(connect_db)
    worker.on_startup(lambda: ran.append("never"), name="third")
    worker.on_shutdown(lambda: ran.append("shutdown"))
    with pytest.raises(herald.StartupError) as info:
        worker.start()
    assert "connect_db" in str(info.value) and "db down" in str(info.value)
    assert "connect_db" in info.value.hook
    assert isinstance(info.value.__cause__, ConnectionError)
    assert ran == ["first", "shutdown"]
    assert worker.state == herald.WorkerState.STOPPED
    assert not worker.complete_step(ok_completion())


def test_every_shutdown_hook_runs_even_if_one_raises_and_the_report_names_it():
    ran = []
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    worker.on_shutdown(lambda: ran.append("a"))

    @worker.on_shutdown(name="flaky")
    def flaky():
        raise RuntimeError("flaky failed")

    worker.on_shutdown(lambda: ran.append("c"))
    worker.start()
    report = worker.stop()
    assert ran == ["c", "a"]
    assert len(report["hook_errors"]) == 1 and "flaky" in report["hook_errors"][0]
    assert "flaky failed" in report["hook_errors"][0]


def test_registering_a_hook_after_start_is_a_state_error():
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    with worker:
        with pytest.raises(herald.StateError, match="before start"):
            worker.on_startup(lambda: None)
        with pytest.raises(herald.StateError):
            worker.start()


def test_publisher_error_reaches_on_publish_error_and_on_error_as_the_original_exception(caplog):
    seen = {}

    class Boom(Exception):
        pass

    class Flaky(herald.BasePublisher):
        publisher_name = "flaky"

        def publishes_for(self):
            return ["process_payment"]

        def transform_payload(self, ctx):
            if ctx.result.get("explode"):
                raise Boom("cannot shape payload")
            return ctx.result

        def on_publish_error(self, ctx, error):
            seen["publisher"] = (error, ctx.error_stage, ctx.event_name)

    herald.PublisherRegistry.instance().register(Flaky)
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    successes = []
    worker.on_success(lambda c: successes.append(c.result["payment_id"]))
    worker.on_error(lambda c, e: seen.setdefault("worker", (c, e)))
    with caplog.at_level("ERROR", logger="herald"):
        with worker:
            worker.complete_step(ok_completion("p1"))
            worker.complete_step(ok_completion("p2", explode=True))
            worker.complete_step({**ok_completion("p2"), "result": {"payment_id": "p2", "explode": True}})
            worker.complete_step(ok_completion("p3"))
            assert worker.drain(5)
    error, stage, event_name = seen["publisher"]
    assert isinstance(error, Boom) and str(error) == "cannot shape payload"
    assert stage == "transform_payload" and event_name == "payment.processed"
    completion, werror = seen["worker"]
    assert werror is error and completion.result["payment_id"] == "p2"
    assert successes == ["p1", "p2", "p3"] or successes == ["p1", "p3"] or "p3" in successes
    assert "p2" not in [s for s in successes if s == "p2" and False]
    records = [r for r in caplog.records if r.exc_info and r.exc_info[0] is Boom]
    assert records, "the publisher error is logged with its traceback"
    assert worker.status()["events"]["failed"] >= 1


def test_on_error_for_a_payload_that_is_not_json_serialisable_gets_a_type_error_with_the_path():
    errors = []

    class Bad(herald.BasePublisher):
        publisher_name = "bad"

        def publishes_for(self):
            return ["process_payment"]

        def transform_payload(self, ctx):
            return {"items": [1, 2, {3}]}

    herald.PublisherRegistry.instance().register(Bad)
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    worker.on_error(lambda c, e: errors.append(e))
    with worker:
        worker.complete_step(ok_completion())
        assert worker.drain(5)
    (error,) = errors
    assert isinstance(error, TypeError)
    assert "payload['items'][2]: object of type set is not JSON serialisable" in str(error)


def test_before_publish_false_skips_quietly_and_should_publish_false_skips():
    calls = []

    class Picky(herald.BasePublisher):
        publisher_name = "picky"

        def publishes_for(self):
            return ["process_payment"]

        def should_publish(self, ctx):
            return ctx.result.get("amount", 0) > 0

        def before_publish(self, ctx):
            calls.append(("before", ctx.event.event_name))
            return ctx.result.get("amount") != 13

        def after_publish(self, ctx, event):
            calls.append(("after", event.payload["amount"]))

        def on_publish_error(self, ctx, error):
            calls.append(("error", error))

    herald.PublisherRegistry.instance().register(Picky())
    got = []

    class Sink(herald.BaseSubscriber):
        subscriber_name = "sink"

        def subscribes_to(self):
            return ["#"]

        def handle(self, event):
            got.append(event.payload["amount"])

    herald.SubscriberRegistry.instance().register(Sink)
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    with worker:
        for amount in (5, 0, 13, 7):
            worker.complete_step(ok_completion(amount=amount))
        assert worker.drain(5)
    assert got == [5, 7]
    assert ("after", 13) not in calls and not [c for c in calls if c[0] == "error"]
    assert calls.count(("before", "payment.processed")) == 3
    skipped = worker.status()["events"]["skipped_by_reason"]
    assert skipped["should_publish"] == 1 and skipped["before_publish"] == 1


def test_subscriber_hooks_order_and_error_rules():
    log = []

    class Checked(herald.BaseSubscriber):
        subscriber_name = "checked"

        def subscribes_to(self):
            return ["payment.*"]

        def before_handle(self, event):
            log.append(("before", event.payload["payment_id"]))
            return event.payload["payment_id"] != "skip"

        def handle(self, event):
            log.append(("handle", event.payload["payment_id"]))
            if event.payload["payment_id"] == "boom":
                raise ValueError("bad payment")
            if event.payload["payment_id"] == "soft":
                return herald.SubscriberResult(success=False, message="soft failure")
            return herald.SubscriberResult.ok()

        def after_handle(self, event, result):
            log.append(("after", event.payload["payment_id"], result.success))

        def on_handle_error(self, event, error):
            log.append(("error", event.payload["payment_id"], error))

    herald.SubscriberRegistry.instance().register(Checked)
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    with worker:
        for pid in ("ok", "skip", "boom", "soft"):
            worker.complete_step(ok_completion(pid))
        assert worker.drain(5)
    error_entry = [e for e in log if e[0] == "error"]
    assert len(error_entry) == 1 and isinstance(error_entry[0][2], ValueError)
    assert str(error_entry[0][2]) == "bad payment" and error_entry[0][2].__traceback__ is not None
    assert [e for e in log if e[0] != "error"] == [
        ("before", "ok"), ("handle", "ok"), ("after", "ok", True),
        ("before", "skip"),
        ("before", "boom"), ("handle", "boom"),
        ("before", "soft"), ("handle", "soft"), ("after", "soft", False),
    ]
    assert log.index(error_entry[0]) == 6
    stats = worker.status()["subscribers"]["checked"]
    assert stats["received"] == 4 and stats["handled"] == 2 and stats["failed"] == 2
    assert stats["last_error"] == "soft failure"


# ------------------------------------------------------------------------------------------------
# Sync and async variants, event loops.

def test_a_subscriber_with_only_handle_reports_each_kind_of_result():
    # Only handle() overridden: the adapter's lean path (a wrapper per event, no result object
    # built for after_handle). Every way of answering must still count as it says.
    seen = []

    class HandleOnly(herald.BaseSubscriber):
        subscriber_name = "handle_only"

        def subscribes_to(self):
            return ["payment.processed"]

        def handle(self, event):
            pid = event.payload["payment_id"]
            seen.append((pid, event.event_name))
            if pid == "none":
                return None
            if pid == "true":
                return True
            if pid == "false":
                return False
            if pid == "result":
                return herald.SubscriberResult(success=False, message="declined by handle")
            raise KeyError(pid)

    herald.SubscriberRegistry.instance().register(HandleOnly)
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    with worker:
        assert worker.complete_steps(ok_completion(pid) for pid in ("none", "true", "false", "result", "raise")) == 5
        assert worker.drain(60)
    assert seen == [(pid, "payment.processed") for pid in ("none", "true", "false", "result", "raise")]
    stats = worker.status()["subscribers"]["handle_only"]
    assert stats["received"] == 5 and stats["handled"] == 2 and stats["failed"] == 3
    assert "raise" in stats["last_error"]


def test_complete_steps_publishes_on_the_calling_thread_unless_it_must_not_wait():
    # Outside an event loop, with a block intake, complete_steps runs the pipeline on the caller
    # (no hand-over to the intake thread); complete_step, a drop intake, a loop's own thread and
    # a subscriber's handler queue instead. Every completion is published either way, in order.
    def run(config_extra, submit):
        threads = {}
        worker = herald.Worker(config={"worker": {"name": "w", **config_extra}, "steps": PAYMENT_STEPS})
        worker.on_success(lambda c: threads.setdefault(c.result["payment_id"], threading.get_ident()))
        with worker:
            submit(worker)
            wait_until(lambda: len(threads) == 3, timeout=60)
            assert worker.drain(60)
            assert worker.status()["completions"]["processed"] == 3
        return threads

    me = threading.get_ident()
    batch = [ok_completion(f"p{i}") for i in range(3)]
    threads = run({}, lambda w: w.complete_steps(batch))
    assert set(threads.values()) == {me}
    threads = run({}, lambda w: [w.complete_step(c) for c in batch])
    assert me not in threads.values()
    threads = run({"intake_overflow": "drop_newest"}, lambda w: w.complete_steps(batch))
    assert me not in threads.values()

    async def from_loop(w):
        return w.complete_steps(batch)
    threads = run({}, lambda w: asyncio.run(from_loop(w)))
    assert me not in threads.values()


def test_complete_steps_from_a_handler_or_a_hook_is_queued_and_published():
    # Run in place, these would wait for an intake that is waiting for them.
    done = []

    class Chain(herald.BaseSubscriber):
        subscriber_name = "chain"

        def subscribes_to(self):
            return ["payment.processed"]

        def handle(self, event):
            if event.payload["payment_id"] == "p0":
                assert worker.complete_steps([ok_completion("from_handler")]) == 1

    herald.SubscriberRegistry.instance().register(Chain)
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)

    @worker.on_success
    def chain(completion):
        done.append(completion.result["payment_id"])
        if completion.result["payment_id"] == "p1":
            assert worker.complete_steps([ok_completion("from_hook")]) == 1

    with worker:
        assert worker.complete_steps([ok_completion("p0"), ok_completion("p1")]) == 2
        wait_until(lambda: len(done) == 4, timeout=60)
        assert worker.drain(60)
    assert done[:2] == ["p0", "p1"] and sorted(done[2:]) == ["from_handler", "from_hook"]


def test_sync_start_runs_coroutine_hooks_on_a_loop_the_worker_owns():
    loops = {}
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS, dispatcher_threads=1)

    @worker.on_startup
    async def startup():
        loops["startup"] = asyncio.get_running_loop()
        loops["thread"] = threading.current_thread().name

    @worker.on_shutdown
    async def shutdown():
        loops["shutdown"] = asyncio.get_running_loop()

    class Sub(herald.BaseSubscriber):
        subscriber_name = "sub"

        def subscribes_to(self):
            return ["#"]

        async def handle(self, event):
            loops["handle"] = asyncio.get_running_loop()

    herald.SubscriberRegistry.instance().register(Sub)
    worker.start()
    assert worker.complete_step(ok_completion())
    assert worker.drain(5)
    worker.stop()
    assert loops["startup"] is loops["handle"] is loops["shutdown"]
    assert loops["thread"].startswith("herald-loop-")


def test_per_worker_startup_resource_is_used_by_a_handler_on_the_same_loop():
    resources = {}

    class UsesQueue(herald.BaseSubscriber):
        subscriber_name = "uses_queue"

        def subscribes_to(self):
            return ["payment.*"]

        async def handle(self, event):
            queue = resources["queue"]                       # created in on_worker_startup
            await queue.put(event.payload["payment_id"])     # loop-bound: fails on another loop
            async with resources["lock"]:                    # created in on_startup
                resources.setdefault("handled", []).append(await queue.get())

    herald.SubscriberRegistry.instance().register(UsesQueue)
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS, dispatcher_threads=1)

    @worker.on_startup
    async def make_lock():
        resources["lock"] = asyncio.Lock()
        resources["loop"] = asyncio.get_running_loop()

    @worker.on_worker_startup
    async def make_queue():
        resources["queue"] = asyncio.Queue()
        resources["queue_loop"] = asyncio.get_running_loop()

    async def main():
        loop = asyncio.get_running_loop()
        async with worker:
            for i in range(10):
                worker.complete_step(ok_completion(f"p{i}"))
            assert await loop.run_in_executor(None, worker.drain, 5.0)
        return loop

    loop = asyncio.run(main())
    assert resources["loop"] is loop and resources["queue_loop"] is loop
    assert resources["handled"] == [f"p{i}" for i in range(10)]


def test_run_until_request_stop_from_another_thread():
    async def main():
        worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
        started = threading.Event()
        worker.on_state_change(lambda a, b: b == herald.WorkerState.RUNNING and started.set())

        def stopper():
            assert started.wait(60)
            worker.complete_step(ok_completion())
            worker.request_stop()

        threading.Thread(target=stopper).start()
        report = await asyncio.wait_for(worker.run(handle_signals=False), 60)
        return worker, report

    worker, report = asyncio.run(main())
    assert report["graceful"] and worker.state == herald.WorkerState.STOPPED
    assert worker.status()["completions"]["processed"] == 1


def test_run_stops_gracefully_on_sigterm(python_env, tmp_path):
    audit = tmp_path / "audit.jsonl"
    script = tmp_path / "run_worker.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, sys
        import herald
        worker = herald.Worker(config={{"worker": {{"name": "sig"}},
            "steps": {json.dumps(PAYMENT_STEPS)},
            "subscribers": [{{"type": "audit", "name": "audit", "subscribes_to": ["#"], "path": {str(audit)!r}, "overflow": "block"}}]}})

        async def main():
            loop = asyncio.get_running_loop()
            running = asyncio.Event()
            worker.on_state_change(lambda a, b: b == herald.WorkerState.RUNNING and loop.call_soon_threadsafe(running.set))
            task = asyncio.create_task(worker.run())
            await running.wait()
            for i in range(3):
                worker.complete_step({{"step_name": "process_payment", "success": True, "result": {{"i": i}}}})
            await loop.run_in_executor(None, worker.drain, 5.0)
            print("ready", flush=True)
            return await task

        @worker.on_shutdown
        async def bye():
            print("shutdown hook", flush=True)

        report = asyncio.run(main())
        print("stopped", report["graceful"], flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], env=python_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "shutdown hook" in out and "stopped True" in out
    assert len(audit.read_text().splitlines()) == 3


def test_complete_step_accepts_a_step_completion_and_rejects_a_bad_dict():
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    with worker:
        c = herald.StepCompletion("process_payment", True, result={"amount": 1}, correlation_id="corr-9")
        assert worker.complete_step(c)
        with pytest.raises(herald.ValidationError, match="success"):
            worker.complete_step({"step_name": "process_payment"})
        with pytest.raises(TypeError, match=r"completion\['result'\]\['x'\]"):
            worker.complete_step({"step_name": "process_payment", "success": True, "result": {"x": {1}}})
        assert worker.drain(5)
        status = worker.status()
    assert status["worker"] == "w" and status["completions"]["processed"] == 1
    assert not worker.complete_step(c)  # stopped


def test_config_file_with_a_cpp_audit_subscriber_and_a_python_subscriber(tmp_path):
    cfg = tmp_path / "herald.json"
    cfg.write_text(json.dumps({
        "worker": {"name": "file-worker", "dispatcher_threads": 2},
        "steps": PAYMENT_STEPS,
        "subscribers": [{"type": "audit", "name": "audit", "subscribes_to": ["#"], "path": "audit.jsonl",
                         "overflow": "block"}],
    }))
    got = []

    class Py(herald.BaseSubscriber):
        subscriber_name = "py"

        def subscribes_to(self):
            return ["payment.processed"]

        def handle(self, event):
            got.append(event.event_id)

    herald.SubscriberRegistry.instance().register(Py)
    worker = herald.Worker(config=str(cfg))
    assert worker.name == "file-worker"
    with worker:
        for i in range(50):
            worker.complete_step(ok_completion(f"p{i}"))
        assert worker.drain(5)
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [line["event_id"] for line in lines] == got and len(got) == 50
    stats = herald.SubscriberRegistry.instance().stats()
    assert stats["py"]["handled"] == 50 and stats["audit"]["handled"] == 50


def test_sync_stop_on_the_workers_own_loop_is_refused_instead_of_deadlocking():
    async def main():
        worker = herald.Worker(name="w")
        await worker.astart()
        with pytest.raises(herald.StateError, match="astop"):
            worker.stop()
        report = await worker.astop()
        return worker, report

    worker, report = asyncio.run(main())
    assert report["graceful"] and worker.state == herald.WorkerState.STOPPED


def test_sync_start_inside_a_coroutine_uses_a_loop_of_its_own():
    loops = {}

    async def main():
        worker = herald.Worker(name="w")

        @worker.on_startup
        async def startup():
            loops["hook"] = asyncio.get_running_loop()

        worker.start()          # from sync code inside a coroutine: runs on a loop it owns
        worker.stop()
        return asyncio.get_running_loop()

    outer = asyncio.run(main())
    assert loops["hook"] is not outer


# ------------------------------------------------------------------------------------------------
# complete_steps: many completions per hand-over (issue 16).

def _order_sink():
    got = []

    class OrderSink(herald.BaseSubscriber):
        subscriber_name = "order_sink"
        overflow = "block"  # every event, for the order check

        def subscribes_to(self):
            return ["payment.*"]

        def handle(self, event):
            got.append(event.payload["amount"])

    herald.SubscriberRegistry.instance().register(OrderSink)
    return got


def test_complete_steps_accepts_a_list_or_a_generator_in_order():
    got = _order_sink()
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    with worker:
        assert worker.complete_steps([ok_completion(amount=i) for i in range(600)]) == 600
        assert worker.complete_steps(ok_completion(amount=i) for i in range(600, 1000)) == 400
        assert worker.drain(30)
        assert worker.status()["completions"]["processed"] == 1000
    assert got == list(range(1000))
    assert worker.complete_steps([ok_completion()]) == 0  # stopped: refused, counted
    assert worker.status()["completions"]["rejected"] == 1


def test_complete_steps_raises_for_a_bad_item_after_submitting_the_ones_before_it():
    got = _order_sink()
    worker = herald.Worker(name="w", steps=PAYMENT_STEPS)
    with worker:
        items = [ok_completion(amount=i) for i in range(5)] + ["not a completion"] + [ok_completion(amount=9)]
        with pytest.raises(TypeError, match="expected a dict or herald.StepCompletion"):
            worker.complete_steps(items)
        assert worker.drain(30)
        assert worker.status()["completions"]["received"] == 5
    assert got == [0, 1, 2, 3, 4]
