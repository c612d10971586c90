"""Stress suite from Python (issue 13): Python threads and an asyncio loop publishing together into
inline and pool buses, handlers that raise, release the GIL, are async or publish, subscribe /
unsubscribe churn, and close() racing the publishers. After each round, for every subscription:
received == handled + failed + dropped, nothing delivered twice, each publisher's events in order.

Seeded and repeatable: HERALD_STRESS_SEED (printed on failure), HERALD_STRESS_ROUNDS rounds per
mode (scripts/stress.sh runs more). A hang fails the run with every thread's stack
(faulthandler)."""
import asyncio
import faulthandler
import os
import random
import sys
import threading
import time

import pytest

import herald

SEED = int(os.environ.get("HERALD_STRESS_SEED", "20261203"))
ROUNDS = int(os.environ.get("HERALD_STRESS_ROUNDS", "3"))


@pytest.fixture(autouse=True)
def _hang_guard():
    faulthandler.dump_traceback_later(300, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


class Record:
    def __init__(self, kind):
        self.kind = kind
        self.lock = threading.Lock()
        self.calls = {}
        self.last = {}
        self.disorder = None
        self.raised = 0
        self.sub = None

    def see(self, event):
        key = (event.payload["t"], event.payload["s"])
        with self.lock:
            self.calls[key] = self.calls.get(key, 0) + 1
            last = self.last.get(key[0])
            if last is not None and key[1] <= last and self.disorder is None:
                self.disorder = f"publisher {key[0]}: {key[1]} after {last}"
            self.last[key[0]] = key[1]


def make_handler(bus, record, follow_base):
    kind = record.kind

    def sync_handler(event):
        record.see(event)
        seq = event.payload["s"]
        if kind == "raises" and seq % 3 == 0:
            with record.lock:
                record.raised += 1
            raise ValueError("stress: planned failure")
        if kind == "sleeps" and seq % 40 == 0:
            time.sleep(0.0005)  # releases the GIL inside the handler
        if kind == "publishes" and event.payload["t"] < 1000 and not bus.closed:
            try:
                bus.publish("follow.x", {"t": follow_base + event.payload["t"], "s": seq})
            except herald.StateError:
                pass  # close() won the race

    async def async_handler(event):
        record.see(event)
        await asyncio.sleep(0)

    return async_handler if kind == "async" else sync_handler


def run_round(seed, inline, close_races):
    rng = random.Random(seed)
    bus = herald.EventBus(inline=inline, dispatcher_threads=rng.randint(1, 3), batch_size=rng.randint(1, 32))
    records = []
    records_lock = threading.Lock()
    kinds = ["plain", "raises", "sleeps", "publishes"] + ([] if inline else ["async"])

    def subscribe(kind, sub_rng):
        record = Record(kind)
        record.sub = bus.subscribe(["s.#", "follow.*"], make_handler(bus, record, 1000 * (len(records) + 1)),
                                   capacity=sub_rng.randint(1, 64),
                                   overflow=sub_rng.choice(["block", "drop_newest", "drop_oldest"]),
                                   block_timeout=0.02)
        records.append(record)

    for _ in range(rng.randint(3, 6)):
        subscribe(rng.choice(kinds), random.Random(rng.random()))

    per_thread = rng.randint(150, 500)
    done = threading.Event()

    def publisher(t):
        for seq in range(per_thread):
            try:
                bus.publish(f"s.e{seq % 3}", {"t": t, "s": seq})
            except herald.StateError:
                return

    async def loop_publisher(t):
        for seq in range(per_thread):
            try:
                if seq % 2:
                    await bus.publish_async(f"s.e{seq % 3}", {"t": t, "s": seq}, timeout=0.05)
                else:
                    bus.publish(f"s.e{seq % 3}", {"t": t, "s": seq})
            except herald.StateError:
                return
            if seq % 16 == 0:
                await asyncio.sleep(0)

    def churn(churn_rng):
        while not done.is_set():
            with records_lock:
                record = churn_rng.choice(records)
                choice = churn_rng.randint(0, 5)
                if choice == 0:
                    record.sub.unsubscribe()
                elif choice == 1 and len(records) < 16 and not bus.closed:
                    try:
                        subscribe("plain", random.Random(churn_rng.random()))
                    except herald.StateError:
                        pass
                else:
                    record.sub.pause()
                    record.sub.resume()
            time.sleep(0)

    threads = [threading.Thread(target=publisher, args=(t,)) for t in range(3)]
    threads.append(threading.Thread(target=lambda: asyncio.run(loop_publisher(3))))
    churner = threading.Thread(target=churn, args=(random.Random(rng.random()),))
    for t in threads:
        t.start()
    churner.start()
    if close_races:
        deadline = time.monotonic() + 30
        while bus.stats()["published"] < per_thread and time.monotonic() < deadline:
            time.sleep(0.001)
        bus.close(5.0)
    for t in threads:
        t.join(120)
    done.set()
    churner.join(60)
    assert not any(t.is_alive() for t in threads + [churner])
    if not close_races:
        bus.close(30.0)

    assert sum(len(r.calls) for r in records) > 0, f"seed {seed}: no handler ran"
    for record in records:
        stats = record.sub.stats()
        where = f"seed {seed} inline={inline} close_races={close_races} kind={record.kind}: {stats}"
        assert stats["in_flight"] == 0, where
        assert stats["received"] == stats["handled"] + stats["failed"] + stats["dropped"], where
        assert sum(record.calls.values()) == stats["handled"] + stats["failed"], where
        assert record.raised == stats["failed"], where
        assert record.disorder is None, f"{where}: {record.disorder}"
        twice = [k for k, n in record.calls.items() if n > 1]
        assert not twice, f"{where}: delivered more than once: {twice[:5]}"


@pytest.mark.parametrize("inline", [False, True], ids=["pool", "inline"])
def test_buses_under_threads_loops_and_churn_keep_the_delivery_invariant(inline):
    for r in range(ROUNDS):
        run_round(SEED + r + (1000 if inline else 0), inline, close_races=r % 2 == 1)
