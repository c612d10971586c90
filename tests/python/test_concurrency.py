"""Issue 13 from Python: no herald wait holds the GIL, and publishing from an event loop's thread
never freezes that loop. Every test that could hang is bounded by faulthandler (a hang dumps the
stacks and fails the run instead of freezing CI)."""
import asyncio
import faulthandler
import os
import sys
import threading
import time

import pytest

import herald
from conftest import wait_until


@pytest.fixture(autouse=True)
def _hang_guard(request):
    # pytest captures fd 2 while a test runs, and exit=True ends the process before the capture
    # is shown: scripts/test.sh names a file (HERALD_HANG_LOG) that it prints after such an exit.
    path = os.environ.get("HERALD_HANG_LOG")
    log = open(path, "a") if path else sys.stderr
    log.write(f"hang guard: {request.node.nodeid} still running after 120 s; its threads:\n")
    log.flush()
    faulthandler.dump_traceback_later(120, exit=True, file=log)
    yield
    faulthandler.cancel_dump_traceback_later()
    if path:
        log.close()
        open(path, "w").close()  # it finished: nothing to report


# ------------------------------------------------------------------------------------------------
# Inline buses and threads.

def test_two_threads_publishing_to_an_inline_handler_that_releases_the_gil_finish():
    # The first program: publish kept the GIL and waited for the subscription's lock,
    # held by the other thread, whose handler needed the GIL back: the interpreter froze.
    bus = herald.EventBus(inline=True)
    seen = []

    def handler(event):
        time.sleep(0.01)  # releases the GIL while holding the subscription's gate
        seen.append(event.payload["i"])

    bus.subscribe(["x.y"], handler)

    def publish_many():
        for i in range(20):
            bus.publish("x.y", {"i": i})

    threads = [threading.Thread(target=publish_many) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert len(seen) == 40
    stats = bus.stats()["subscriptions"][0]
    assert stats["handled"] == 40 and stats["in_flight"] == 0
    bus.close()


def test_inline_handlers_publishing_to_each_other_from_two_threads_do_not_deadlock():
    bus = herald.EventBus(inline=True)
    both_inside = threading.Barrier(2, timeout=60)
    calls = {"a": 0, "b": 0}

    def make_handler(me, other):
        def handler(event):
            calls[me] += 1
            if event.payload["hop"] == 0:
                both_inside.wait()          # both gates held, each by its own thread
                bus.publish(f"{other}.x", {"hop": 1})
        return handler

    bus.subscribe(["a.x"], make_handler("a", "b"))
    bus.subscribe(["b.x"], make_handler("b", "a"))
    threads = [threading.Thread(target=bus.publish, args=(f"{n}.x", {"hop": 0})) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert calls == {"a": 2, "b": 2}
    bus.close()


def test_unsubscribe_from_another_thread_while_an_inline_handler_runs_does_not_hold_the_gil():
    bus = herald.EventBus(inline=True)
    entered, release = threading.Event(), threading.Event()

    def handler(event):
        entered.set()
        release.wait(60)

    sub = bus.subscribe(["u.x"], handler)
    publisher = threading.Thread(target=bus.publish, args=("u.x",))
    publisher.start()
    assert entered.wait(60)
    unsubscriber = threading.Thread(target=sub.unsubscribe)
    unsubscriber.start()
    # This thread keeps running Python while unsubscribe waits for the handler.
    wait_until(lambda: not sub.active, message="unsubscribe to close the subscription")
    release.set()
    publisher.join(60)
    unsubscriber.join(60)
    assert not publisher.is_alive() and not unsubscriber.is_alive()
    bus.close()


# ------------------------------------------------------------------------------------------------
# Event loops.

def test_publishing_from_a_coroutine_to_an_async_subscriber_never_stalls_the_loop():
    # The second program: the loop published into a full mailbox whose handlers needed
    # that loop; each publish waited 5 s. Now a full `block` mailbox takes the event beyond its
    # capacity (counted, warned) and the loop runs the handlers once it yields.
    handled = 0

    async def main():
        nonlocal handled

        async def handler(event):
            nonlocal handled
            handled += 1

        bus = herald.EventBus()
        sub = bus.subscribe(["t.x"], handler, capacity=1000)
        started = time.monotonic()
        for i in range(12_000):
            bus.publish("t.x", {"i": i})
        publish_seconds = time.monotonic() - started
        for _ in range(2000):
            if handled == 12_000:
                break
            await asyncio.sleep(0.005)
        stats = sub.stats()
        bus.close()
        return publish_seconds, stats

    publish_seconds, stats = asyncio.run(main())
    assert handled == 12_000
    assert stats["handled"] == 12_000 and stats["dropped"] == 0
    assert stats["overcommitted"] > 0
    # A publish that waited out the 5 s block timeout would have dropped its event (dropped == 0
    # above says none did); this bound only says the loop did not hang.
    assert publish_seconds < 60.0


def test_publish_async_waits_for_room_cooperatively_and_keeps_the_bound():
    async def main():
        handled = []
        max_depth = 0

        async def handler(event):
            handled.append(event.payload["i"])
            await asyncio.sleep(0)

        bus = herald.EventBus()
        sub = bus.subscribe(["t.x"], handler, capacity=50)
        for i in range(2000):
            await bus.publish_async("t.x", {"i": i})
            max_depth = max(max_depth, sub.stats()["queue_depth"])
        for _ in range(2000):
            if len(handled) == 2000:
                break
            await asyncio.sleep(0.005)
        stats = sub.stats()
        bus.close()
        return handled, stats, max_depth

    handled, stats, max_depth = asyncio.run(main())
    assert handled == list(range(2000))      # all of them, in order
    assert stats["overcommitted"] == 0       # back-pressure by awaiting, not beyond capacity
    assert max_depth <= 50


def test_publish_async_gives_up_after_its_timeout_and_the_full_mailbox_drops_the_event():
    release = threading.Event()

    def stuck(event):
        release.wait(60)

    async def main():
        bus = herald.EventBus(dispatcher_threads=1)
        sub = bus.subscribe(["s.x"], stuck, capacity=1, block_timeout=3600)
        bus.publish("s.x")                               # running (stuck)
        wait_until(lambda: sub.stats()["queue_depth"] == 0, message="the dispatcher to take it")
        await bus.publish_async("s.x")                   # queued: the mailbox is now full
        started = time.monotonic()
        await bus.publish_async("s.x", timeout=0.05)     # no room within 50 ms: dropped
        waited = time.monotonic() - started
        stats = sub.stats()
        release.set()
        assert bus.drain(10)
        bus.close()
        return waited, stats

    waited, stats = asyncio.run(main())
    assert stats["dropped"] == 1 and stats["received"] == 3
    assert waited < 3600


def test_a_sync_subscriber_fed_from_a_loop_thread_does_not_block_the_loop():
    release = threading.Event()
    handled = []

    def slow(event):
        release.wait(60)
        handled.append(event.payload["i"])

    async def main():
        bus = herald.EventBus(dispatcher_threads=1)
        sub = bus.subscribe(["s.x"], slow, capacity=5, block_timeout=3600)
        for i in range(50):
            bus.publish("s.x", {"i": i})   # would wait an hour per event without the rule
        stats = sub.stats()
        release.set()
        assert bus.drain(10)
        bus.close()
        return stats

    stats = asyncio.run(main())
    assert stats["overcommitted"] > 0
    assert handled == list(range(50))


STEPS = [{"name": "work", "publishes_events": [{"name": "work.done", "condition": "always"}]}]


def test_worker_complete_step_async_waits_for_intake_room_and_complete_step_never_blocks_the_loop():
    release = threading.Event()
    processed = []

    async def main():
        worker = herald.Worker(config={"worker": {"name": "loopy", "intake_capacity": 2,
                                                  "intake_block_timeout_ms": 3_600_000},
                                       "steps": STEPS},
                               publishers=herald.PublisherRegistry(),
                               subscribers=herald.SubscriberRegistry())

        @worker.on_success
        def hold(completion):
            if completion.result["n"] == 0:
                release.wait(60)
            processed.append(completion.result["n"])

        worker.start()
        try:
            assert worker.complete_step({"step_name": "work", "success": True, "result": {"n": 0}})
            wait_until(lambda: worker.status()["queues"]["intake_depth"] == 0,
                       message="the intake thread to take the first completion")
            for n in (1, 2):
                assert worker.complete_step({"step_name": "work", "success": True, "result": {"n": n}})
            # Full: from the loop's thread, complete_step takes it beyond capacity at once.
            assert worker.complete_step({"step_name": "work", "success": True, "result": {"n": 3}})
            assert worker.status()["completions"]["overcommitted"] == 1
            # complete_step_async awaits room; the loop keeps running meanwhile.
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)

            tick_task = asyncio.ensure_future(ticker())
            pending = asyncio.ensure_future(worker.complete_step_async(
                {"step_name": "work", "success": True, "result": {"n": 4}}))
            for _ in range(100):
                await asyncio.sleep(0.001)
                if ticks >= 20:
                    break
            assert not pending.done()      # still waiting for room, without freezing the loop
            release.set()
            assert await asyncio.wait_for(pending, 30)
            tick_task.cancel()
            assert worker.drain(30)
        finally:
            release.set()
            worker.stop()

    asyncio.run(main())
    assert processed == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------------------------
# Blocking calls made on the thread of the loop that async handlers run on.

def _handler_parked_on_the_loop():
    """An async handler that records its start and then awaits a future nobody completes."""
    started, outcome = [], []

    async def handler(event):
        started.append(event.payload["i"])
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    return handler, started, outcome


def _handler_failures(caplog, what):
    return [r for r in caplog.records
            if r.levelname == "ERROR" and f"StateError: the handler's event loop" in r.getMessage()
            and f"is blocked in {what}" in r.getMessage()]


def test_close_from_the_loop_thread_cancels_a_handler_waiting_on_that_loop_instead_of_hanging(caplog):
    # bus.close() inside asyncio.run(main()) while the last async handler was between two awaits
    # hung the interpreter: close() waited for the handler, the handler for the blocked loop.
    handler, started, outcome = _handler_parked_on_the_loop()
    async def main():
        bus = herald.EventBus(dispatcher_threads=1)
        sub = bus.subscribe(["t.x"], handler)
        bus.publish("t.x", {"i": 1})
        bus.publish("t.x", {"i": 2})
        while not started:
            await asyncio.sleep(0.001)
        report = bus.close(timeout=60)       # blocks this loop's thread
        stats = sub.stats()
        await asyncio.sleep(0)               # the loop runs again: the cancellation lands
        return report, stats

    report, stats = asyncio.run(main())
    assert started == [1]                     # the second event's coroutine never started
    assert stats["failed"] == 2 and stats["handled"] == 0
    assert len(_handler_failures(caplog, "EventBus.close()")) == 2  # each event named, with why
    assert report["drained"] is True
    assert outcome == ["cancelled"]


def test_unsubscribe_from_the_loop_thread_while_its_async_handler_awaits_returns(caplog):
    handler, started, outcome = _handler_parked_on_the_loop()

    async def main():
        bus = herald.EventBus(dispatcher_threads=1)
        sub = bus.subscribe(["t.x"], handler)
        bus.publish("t.x", {"i": 1})
        while not started:
            await asyncio.sleep(0.001)
        sub.unsubscribe()                    # waits for the handler, which is then cancelled
        assert not sub.active
        await asyncio.sleep(0)
        stats = sub.stats()
        bus.close()
        return stats

    stats = asyncio.run(main())
    assert stats["failed"] == 1
    assert len(_handler_failures(caplog, "Subscription.unsubscribe()")) == 1
    assert outcome == ["cancelled"]


def test_aclose_and_async_with_let_async_handlers_finish_on_the_running_loop():
    finished = []

    async def handler(event):
        await asyncio.sleep(0.01)            # needs the loop while the bus closes
        finished.append(event.payload["i"])

    async def main():
        async with herald.EventBus(dispatcher_threads=1) as bus:
            bus.subscribe(["t.x"], handler)
            for i in range(5):
                bus.publish("t.x", {"i": i})
        assert bus.closed
        other = herald.EventBus()
        other.subscribe(["t.y"], handler)
        other.publish("t.y", {"i": 5})
        report = await other.aclose(timeout=60)
        return report

    report = asyncio.run(main())
    assert finished == [0, 1, 2, 3, 4, 5]
    assert report["drained"] is True and report["undelivered"] == 0
