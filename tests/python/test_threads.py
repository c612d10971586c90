"""Threads and the GIL: Python threads publishing concurrently with C++ dispatch, Python objects
released by C++ threads, and interpreter exit with a worker still running."""
import gc
import subprocess
import sys
import textwrap
import threading
import weakref

import herald

THREADS, PER_THREAD = 4, 10_000


def test_four_python_threads_publish_10k_events_each_to_python_and_cpp_subscribers_nothing_lost(tmp_path):
    seen = {}
    lock = threading.Lock()

    class Counter(herald.BaseSubscriber):
        subscriber_name = "py_counter"
        capacity = 100_000

        def subscribes_to(self):
            return ["load.*"]

        def handle(self, event):
            p = event.payload
            with lock:
                seen.setdefault(p["t"], []).append(p["i"])

    herald.SubscriberRegistry.instance().register(Counter)
    worker = herald.Worker(config={
        "worker": {"name": "load", "dispatcher_threads": 2},
        "subscribers": [
            {"type": "metrics", "name": "metrics", "subscribes_to": ["load.#"], "capacity": 100000,
             "overflow": "block"},
            {"type": "audit", "name": "audit", "subscribes_to": ["load.t0"], "path": str(tmp_path / "audit.jsonl"),
             "capacity": 100000, "overflow": "block"},
        ]})
    async_seen = []

    async def async_handler(event):  # a bare bus subscription with a coroutine handler, too
        async_seen.append(event.payload["i"])

    with worker:
        bus = worker.bus
        bus.subscribe("load.t3", async_handler, capacity=100_000)
        barrier = threading.Barrier(THREADS)
        errors = []

        def publisher(t):
            try:
                barrier.wait()
                for i in range(PER_THREAD):
                    bus.publish(f"load.t{t}", {"t": t, "i": i})
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=publisher, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
            assert not th.is_alive()
        assert not errors
        assert worker.drain(60)
        status = worker.status()
    subs = status["subscribers"]
    for name, expected in (("py_counter", THREADS * PER_THREAD), ("metrics", THREADS * PER_THREAD),
                           ("audit", PER_THREAD)):
        s = subs[name]
        assert s["received"] == expected and s["handled"] == expected, (name, s)
        assert s["dropped"] == 0 and s["failed"] == 0
    # per-subscriber order: each publishing thread's events arrive in the order published
    assert sorted(seen) == list(range(THREADS))
    for t in range(THREADS):
        assert seen[t] == list(range(PER_THREAD))
    assert async_seen == list(range(PER_THREAD))
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == PER_THREAD


def test_python_threads_completing_steps_concurrently_with_python_publishers_and_subscribers():
    class Pub(herald.BasePublisher):
        publisher_name = "pub"

        def publishes_for(self):
            return ["step"]

        def transform_payload(self, ctx):
            return {"n": ctx.result["n"], "t": ctx.result["t"]}

    got = []

    class Sub(herald.BaseSubscriber):
        subscriber_name = "sub"

        def subscribes_to(self):
            return ["step.done"]

        async def handle(self, event):
            got.append((event.payload["t"], event.payload["n"]))

    herald.PublisherRegistry.instance().register(Pub)
    herald.SubscriberRegistry.instance().register(Sub)
    worker = herald.Worker(name="w", steps=[{"name": "step", "publishes_events": [{"name": "step.done"}]}])
    with worker:
        def feed(t):
            for n in range(500):
                assert worker.complete_step({"step_name": "step", "success": True, "result": {"n": n, "t": t}})

        threads = [threading.Thread(target=feed, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert worker.drain(30)
    assert len(got) == 2000
    for t in range(4):
        assert [n for tt, n in got if tt == t] == list(range(500))


def test_python_objects_held_by_cpp_are_released_without_crashing():
    class Handler:
        def __call__(self, event):
            pass

    bus = herald.EventBus(2)
    handler = Handler()
    ref = weakref.ref(handler)
    sub = bus.subscribe("x", handler)
    del handler
    bus.publish("x")
    assert bus.drain(5)
    sub.unsubscribe()
    bus.close()
    del bus, sub
    gc.collect()
    assert ref() is None


EXIT_SCRIPT = textwrap.dedent("""
    import asyncio, sys, threading
    import herald

    class Sub(herald.BaseSubscriber):
        subscriber_name = "sub"
        def subscribes_to(self):
            return ["#"]
        async def handle(self, event):
            await asyncio.sleep(0)

    herald.SubscriberRegistry.instance().register(Sub)
    worker = herald.Worker(name="left-running", steps=[{"name": "s", "publishes_events": [{"name": "a.b"}]}])

    @worker.on_shutdown
    async def bye():
        print("shutdown hook ran", flush=True)

    worker.start()
    for i in range(1000):
        worker.complete_step({"step_name": "s", "success": True, "result": {"i": i}})
    bus = herald.EventBus(2)                        # a bus never closed, with a Python handler
    bus.subscribe("#", lambda e: None)
    for i in range(1000):
        bus.publish("b.c", {"i": i})
    standalone = herald.SubscriberRegistry()         # a registry started on its own bus
    standalone.register(Sub())
    standalone.start_all()
    standalone.bus.publish("c.d")
    print("exiting", worker.state, flush=True)
    MODE
""")


def run_exit_script(python_env, mode):
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT.replace("MODE", mode)], env=python_env,
                          capture_output=True, text=True, timeout=60)
    return proc


def test_interpreter_exit_with_a_running_worker_stops_it_and_exits_zero(python_env):
    proc = run_exit_script(python_env, "")
    assert proc.returncode == 0, proc.stderr
    assert "exiting RUNNING" in proc.stdout and "shutdown hook ran" in proc.stdout


def test_sys_exit_from_a_thread_pool_and_with_a_running_loop_still_exits_cleanly(python_env):
    proc = run_exit_script(python_env, "asyncio.run(asyncio.sleep(0)); sys.exit(0)")
    assert proc.returncode == 0, proc.stderr
    assert "shutdown hook ran" in proc.stdout


def test_exit_after_asyncio_run_ended_with_the_worker_still_running_on_its_captured_loop(python_env):
    script = textwrap.dedent("""
        import asyncio
        import herald
        worker = herald.Worker(name="orphan", steps=[{"name": "s", "publishes_events": [{"name": "a.b"}]}])

        @worker.on_shutdown
        async def bye():
            print("shutdown hook ran on", "a fallback loop" if asyncio.get_running_loop() is not first else "?", flush=True)

        first = None
        async def main():
            global first
            first = asyncio.get_running_loop()
            await worker.astart()          # never stopped: the loop it captured ends with asyncio.run
            worker.complete_step({"step_name": "s", "success": True})

        asyncio.run(main())
        print("exiting", worker.state, flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=python_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "exiting RUNNING" in proc.stdout and "shutdown hook ran on a fallback loop" in proc.stdout
