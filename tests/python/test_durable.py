"""herald.DurableConsumer and herald.durable.write_outbox against a real, throwaway PostgreSQL
cluster (issue 14, the Python side).

The cluster is started once per session the way tests/support/pg_cluster.hpp does it: initdb
into a temporary directory, pg_ctl on a Unix socket in it (no TCP port), a scram password for
`postgres`, run as the `postgres` user through runuser when the tests run as root, and
`pg_ctl stop -m immediate` at the end. Tests skip, saying what to install, when the server
binaries or psycopg are missing. Every wait is bounded (wait_until, Event.wait with a timeout)
and faulthandler turns a hang into a stack dump and a failed run."""
import asyncio
import datetime
import faulthandler
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid

import pytest

import herald
from herald import durable
from conftest import wait_until

PG_BIN = os.environ.get("HERALD_PG_BIN") or "/usr/lib/postgresql/15/bin"
PASSWORD = "herald-py-secret"
FAST = dict(lease=1.0, poll_interval=0.2, retry_initial=0.01, retry_max=0.02)

psycopg = pytest.importorskip("psycopg", reason="the outbox tests need psycopg 3 (Debian: python3-psycopg)")


@pytest.fixture(autouse=True)
def _hang_guard():
    faulthandler.dump_traceback_later(120, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


class Cluster:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.dsn = f"host={directory} port=5432 dbname=postgres user=postgres password={PASSWORD}"

    def dsn_with_password(self, password: str) -> str:
        return f"host={self.dir} port=5432 dbname=postgres user=postgres password={password}"


def _run(args, directory, as_root, what):
    if as_root:
        args = ["/usr/sbin/runuser", "-u", "postgres", "--"] + args
    # The server's tools run without the sanitizer runtimes that scripts/test.sh asan preloads
    # into this interpreter: preloaded into initdb (through runuser) they hang it.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    with open(os.path.join(directory, "commands.log"), "ab") as log:
        rc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            timeout=180, env=env).returncode
    if rc != 0:
        with open(os.path.join(directory, "commands.log"), errors="replace") as log:
            text = log.read()
        server_log = os.path.join(directory, "server.log")
        if os.path.exists(server_log):
            with open(server_log, errors="replace") as f:
                text += f.read()
        raise RuntimeError(f"{what} failed:\n{text}")


@pytest.fixture(scope="session")
def pg():
    initdb, pg_ctl = os.path.join(PG_BIN, "initdb"), os.path.join(PG_BIN, "pg_ctl")
    if not (os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK)):
        pytest.skip(f"no PostgreSQL server in {PG_BIN} (install the Debian package 'postgresql', "
                    "or set HERALD_PG_BIN)")
    if not hasattr(herald._herald, "_DurableConsumer"):
        pytest.skip("herald was built without the PostgreSQL module (install libpq-dev and rebuild)")
    directory = tempfile.mkdtemp(prefix="herald-pg-py-")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root but there is no 'postgres' user to run the server as")
        os.chown(directory, user.pw_uid, user.pw_gid)
    pwfile = os.path.join(directory, "pwfile")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    if as_root:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    started = False
    try:
        _run([initdb, "-D", os.path.join(directory, "data"), "-U", "postgres", f"--pwfile={pwfile}",
              "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "-N"],
             directory, as_root, "initdb")
        _run([pg_ctl, "-D", os.path.join(directory, "data"), "-l", os.path.join(directory, "server.log"),
              "-w", "-t", "120", "-o",
              f"-c listen_addresses='' -c unix_socket_directories='{directory}' -c fsync=off -c max_connections=60",
              "start"], directory, as_root, "pg_ctl start")
        started = True
        cluster = Cluster(directory)
        durable.ensure_schema(cluster.dsn)
        yield cluster
    finally:
        if started:
            try:
                _run([pg_ctl, "-D", os.path.join(directory, "data"), "-w", "-m", "immediate", "stop"],
                     directory, as_root, "pg_ctl stop")
            except Exception:  # noqa: BLE001 - best effort; the directory goes anyway
                pass
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def stream():
    """A stream of its own for each test (the cluster is shared)."""
    return f"t_{uuid.uuid4().hex[:12]}_domain_events"


def publish(dsn, stream, events):
    """Writes (name, payload) pairs through the Python outbox, one transaction; their offsets."""
    offsets = []
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            for name, payload in events:
                offsets.append(durable.write_outbox(conn, name, payload, stream=stream))
    return offsets


def rows(dsn, sql, *params):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


# ------------------------------------------------------------------------------------------------
# Consuming.

def test_a_sync_handler_receives_every_event_once_in_order(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": i}) for i in range(1, 26)])
    seen, threads = [], set()

    def handle(event, record):
        seen.append((record.offset, event.event_name, event.payload["n"]))
        threads.add(threading.get_ident())

    with herald.DurableConsumer(pg.dsn, stream, "billing", start="beginning", handle=handle, batch_size=7,
                                **FAST) as consumer:
        wait_until(lambda: len(seen) >= 25, timeout=30, message="25 events")
        wait_until(lambda: consumer.committed_offset == 25, timeout=30, message="commit of offset 25")
        stats = consumer.stats()
    assert seen == [(i, "order.created", i) for i in range(1, 26)]
    assert threading.get_ident() not in threads  # the consumer's own thread
    assert stats["handled"] == 25 and stats["state"] == "running"
    assert consumer.state == "stopped"
    assert rows(pg.dsn, "SELECT committed_offset, owner FROM herald.consumer_groups WHERE stream = %s",
                stream) == [(25, None)]  # committed, lease released at stop


def test_an_async_handler_receives_every_event_once_in_order_on_the_running_loop(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": i}) for i in range(1, 11)])

    async def main():
        seen, loops = [], set()
        done = asyncio.Event()

        async def handle(event):
            await asyncio.sleep(0)
            loops.add(asyncio.get_running_loop())
            seen.append(event.payload["n"])
            if len(seen) == 10:
                done.set()

        async with herald.DurableConsumer(pg.dsn, stream, "async", start="beginning", handle=handle,
                                          **FAST):
            await asyncio.wait_for(done.wait(), 30)
        return seen, loops, asyncio.get_running_loop()

    seen, loops, loop = asyncio.run(main())
    assert seen == list(range(1, 11))
    assert loops == {loop}  # coroutine hooks run on the loop that started the consumer


def test_an_async_handler_started_from_sync_code_runs_on_a_loop_the_consumer_owns(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": i}) for i in range(1, 4)])
    seen = []

    async def handle(event):
        await asyncio.sleep(0)
        seen.append((event.payload["n"], threading.current_thread().name))

    with herald.DurableConsumer(pg.dsn, stream, "owned-loop", start="beginning", handle=handle, **FAST):
        wait_until(lambda: len(seen) == 3, timeout=30, message="3 events")
    assert [n for n, _ in seen] == [1, 2, 3]
    assert all(name.startswith("herald-loop-") for _, name in seen)


def test_hooks_run_around_handle_and_before_handle_false_skips_the_event(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": 1}), ("order.skip", {"n": 2}),
                             ("order.created", {"n": 3})])
    calls = []

    def before(event):
        calls.append(("before", event.payload["n"]))
        return event.event_name != "order.skip"

    def handle(event):
        calls.append(("handle", event.payload["n"]))
        return herald.SubscriberResult.ok("charged")

    def after(event, result, record):
        calls.append(("after", event.payload["n"], result.success, result.message, record.offset))

    with herald.DurableConsumer(pg.dsn, stream, "hooks", start="beginning", handle=handle,
                                before_handle=before, after_handle=after, **FAST) as consumer:
        wait_until(lambda: consumer.committed_offset == 3, timeout=30, message="offset 3 committed")
        stats = consumer.stats()
    assert calls == [("before", 1), ("handle", 1), ("after", 1, True, "charged", 1),
                     ("before", 2),
                     ("before", 3), ("handle", 3), ("after", 3, True, "charged", 3)]
    assert stats["skipped"] == 1 and stats["handled"] == 2


def test_patterns_filter_events_and_the_class_style_uses_methods_and_class_attributes(pg, stream):
    publish(pg.dsn, stream, [("payment.processed", {"n": 1}), ("order.created", {"n": 2}),
                             ("payment.card.declined", {"n": 3})])
    seen = []

    class Billing(herald.DurableConsumer):
        group = "billing-class"
        patterns = ("payment.#",)
        start_position = "beginning"

        async def handle(self, event, record):
            seen.append((record.offset, event.event_name, self.group))

        def after_handle(self, event, result):
            seen.append(("after", event.payload["n"]))

    with Billing(pg.dsn, stream=stream, **FAST) as consumer:
        wait_until(lambda: consumer.committed_offset == 3, timeout=30, message="offset 3 committed")
        stats = consumer.stats()
    assert seen == [(1, "payment.processed", "billing-class"), ("after", 1),
                    (3, "payment.card.declined", "billing-class"), ("after", 3)]
    assert stats["filtered"] == 1


def test_a_consumer_without_a_handle_or_with_a_wrong_signature_is_a_type_error(pg, stream):
    with pytest.raises(TypeError, match="has no handle"):
        herald.DurableConsumer(pg.dsn, stream, "g")
    with pytest.raises(TypeError, match="on_handle_error must take 2 or 3"):
        herald.DurableConsumer(pg.dsn, stream, "g", handle=lambda e: None, on_handle_error=lambda e: None)


def test_a_failing_handler_is_retried_then_dead_lettered_and_the_group_moves_on(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": 1}), ("order.created", {"n": 2}),
                             ("order.created", {"n": 3})])
    attempts, errors, handled = [], [], []

    def handle(event, record):
        attempts.append((event.payload["n"], record.attempt))
        if event.payload["n"] == 2:
            raise ValueError("card declined")
        handled.append(event.payload["n"])

    def on_error(event, error, record):
        errors.append((event.payload["n"], type(error).__name__, str(error), record.attempt, record.error_stage))

    with herald.DurableConsumer(pg.dsn, stream, "retry", start="beginning", handle=handle,
                                on_handle_error=on_error, max_attempts=3, **FAST) as consumer:
        wait_until(lambda: consumer.committed_offset == 3, timeout=30, message="offset 3 committed")
        stats = consumer.stats()
    assert handled == [1, 3]
    assert attempts == [(1, 1), (2, 1), (2, 2), (2, 3), (3, 1)]
    assert errors == [(2, "ValueError", "card declined", a, "handle") for a in (1, 2, 3)]
    assert stats["dead_lettered"] == 1 and stats["retries"] == 2 and stats["failed_attempts"] == 3
    dead = rows(pg.dsn, "SELECT event_offset, event_name, error, attempts, state FROM herald.dead_letters "
                        "WHERE stream = %s AND group_name = 'retry'", stream)
    assert dead == [(2, "order.created", "handle: ValueError: card declined", 3, "dead")]


def test_a_re_driven_dead_letter_reaches_the_handler_again_marked_as_redrive(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": 1})])
    failing, seen = [True], []

    def handle(event, record):
        seen.append((record.offset, record.redrive))
        if failing[0]:
            raise ValueError("not yet")

    with herald.DurableConsumer(pg.dsn, stream, "redrive", start="beginning", handle=handle, max_attempts=1,
                                **FAST) as consumer:
        wait_until(lambda: consumer.stats()["dead_lettered"] == 1, timeout=30, message="dead letter")
        failing[0] = False
        # What `herald durable dead-letters --redrive` does.
        rows_changed = rows(pg.dsn, "UPDATE herald.dead_letters SET state = 'redrive' WHERE stream = %s "
                                    "AND group_name = 'redrive' RETURNING id", stream)
        assert len(rows_changed) == 1
        wait_until(lambda: consumer.stats()["redriven"] == 1, timeout=30, message="re-drive")
    assert seen == [(1, False), (1, True)]
    assert rows(pg.dsn, "SELECT state FROM herald.dead_letters WHERE stream = %s", stream) == [("redriven",)]


def test_a_failure_result_counts_as_a_failed_attempt_with_a_handler_failure(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": 1})])
    errors = []

    with herald.DurableConsumer(pg.dsn, stream, "failure-result", start="beginning",
                                handle=lambda e: herald.SubscriberResult.failure("out of stock"),
                                on_handle_error=lambda e, err: errors.append(err), max_attempts=2,
                                **FAST) as consumer:
        wait_until(lambda: consumer.committed_offset == 1, timeout=30, message="dead letter")
        assert consumer.stats()["dead_lettered"] == 1
    assert [type(e) for e in errors] == [herald.HandlerFailure, herald.HandlerFailure]
    assert str(errors[0]) == "out of stock"


def test_two_consumers_of_one_group_one_active_and_the_standby_takes_over_after_stop(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": i}) for i in range(1, 4)])
    by = {"a": [], "b": []}
    a = herald.DurableConsumer(pg.dsn, stream, "shared", start="beginning", member_id="member-a",
                               handle=lambda e: by["a"].append(e.payload["n"]), **FAST).start()
    b = None
    try:
        wait_until(lambda: a.committed_offset == 3, timeout=30, message="member a at offset 3")
        b = herald.DurableConsumer(pg.dsn, stream, "shared", start="beginning", member_id="member-b",
                                   handle=lambda e: by["b"].append(e.payload["n"]), **FAST).start()
        # b polls for the lease every lease/4 while a renews it every lease/3. Wait until a has
        # renewed past the lease it held when b started: had a not renewed, b would have taken
        # the group by then.
        (first_until,) = rows(pg.dsn, "SELECT lease_until FROM herald.consumer_groups WHERE stream = %s "
                                      "AND group_name = 'shared'", stream)[0]
        wait_until(lambda: rows(pg.dsn, "SELECT lease_until > %s + interval '1 second' FROM herald.consumer_groups "
                                        "WHERE stream = %s AND group_name = 'shared'", first_until, stream)[0][0],
                   timeout=30, message="member a renewing its lease past its first expiry")
        assert not b.active and a.active
        publish(pg.dsn, stream, [("order.created", {"n": 4})])
        wait_until(lambda: a.committed_offset == 4, timeout=30, message="member a at offset 4")
        assert not b.active and by["b"] == []
        assert rows(pg.dsn, "SELECT owner FROM herald.consumer_groups WHERE stream = %s AND group_name = 'shared'",
                    stream) == [("member-a",)]
        assert a.stop() is True  # releases the lease: b takes over within a standby poll
        wait_until(lambda: b.active, timeout=30, message="member b takes the lease")
        publish(pg.dsn, stream, [("order.created", {"n": 5})])
        wait_until(lambda: b.committed_offset == 5, timeout=30, message="member b at offset 5")
    finally:
        a.stop()
        if b is not None:
            b.stop()
    assert by == {"a": [1, 2, 3, 4], "b": [5]}


def test_start_positions_offset_end_and_time(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": i}) for i in range(1, 4)])
    (stored_3,) = rows(pg.dsn, "SELECT stored_at FROM herald.events WHERE stream = %s AND event_offset = 3",
                       stream)[0]
    publish(pg.dsn, stream, [("order.created", {"n": 4})])
    got = {"offset": [], "end": [], "time": []}
    consumers = [
        herald.DurableConsumer(pg.dsn, stream, "from-offset", start=2,
                               handle=lambda e: got["offset"].append(e.payload["n"]), **FAST),
        herald.DurableConsumer(pg.dsn, stream, "from-end", start="end",
                               handle=lambda e: got["end"].append(e.payload["n"]), **FAST),
        herald.DurableConsumer(pg.dsn, stream, "from-time",
                               start=stored_3 + datetime.timedelta(microseconds=1),
                               handle=lambda e: got["time"].append(e.payload["n"]), **FAST),
    ]
    for c in consumers:
        c.start()
    try:
        publish(pg.dsn, stream, [("order.created", {"n": 5})])
        wait_until(lambda: all(c.committed_offset == 5 for c in consumers), timeout=30, message="offset 5")
    finally:
        for c in consumers:
            c.stop()
    assert got == {"offset": [2, 3, 4, 5], "end": [5], "time": [4, 5]}


# ------------------------------------------------------------------------------------------------
# The outbox.

def test_an_outbox_commit_makes_the_event_visible_to_a_durable_consumer_with_the_c_plus_plus_row(pg, stream):
    event = herald.DomainEvent.create("payment.processed", {"amount": 42}, {"correlation_id": "corr-1"})
    with psycopg.connect(pg.dsn) as conn:
        with conn.transaction():
            conn.execute("CREATE TEMP TABLE accounts (id int)")  # the business change
            first = durable.write_outbox(conn, "payment.started", {"amount": 42}, stream=stream,
                                         metadata={"correlation_id": "corr-1"})
            second = durable.write_outbox(conn, event, stream=stream)
    assert (first, second) == (1, 2)
    stored = rows(pg.dsn, "SELECT event_offset, event_id, event_name, body FROM herald.events WHERE stream = %s "
                          "ORDER BY event_offset", stream)
    assert [r[0] for r in stored] == [1, 2]
    # The row the C++ write_outbox writes: the event's id and name, its JSON text as the body.
    assert stored[1][1:] == (event.event_id, "payment.processed", event.to_json())
    assert json.loads(stored[0][3])["metadata"]["correlation_id"] == "corr-1"
    assert rows(pg.dsn, "SELECT last_offset FROM herald.streams WHERE stream = %s", stream) == [(2,)]
    seen = []
    with herald.DurableConsumer(pg.dsn, stream, "outbox", start="beginning",
                                handle=lambda e: seen.append((e.event_id, e.event_name, e.payload,
                                                              e.correlation_id)), **FAST) as consumer:
        wait_until(lambda: consumer.committed_offset == 2, timeout=30, message="both outbox events")
        assert consumer.stats()["malformed"] == 0
    assert seen[1] == (event.event_id, "payment.processed", {"amount": 42}, "corr-1")
    assert seen[0][1:] == ("payment.started", {"amount": 42}, "corr-1")


def test_an_outbox_event_wakes_a_waiting_consumer_at_commit(pg, stream):
    seen = threading.Event()
    consumer = herald.DurableConsumer(pg.dsn, stream, "wake", start="end", handle=lambda e: seen.set(),
                                      lease=1.0, poll_interval=60.0).start()
    try:
        wait_until(lambda: consumer.active, timeout=30, message="consumer active")
        publish(pg.dsn, stream, [("order.created", {})])
        # With a 60 s poll interval only the NOTIFY sent at commit can wake it within the bound.
        assert seen.wait(30), "the consumer was not woken by the outbox's NOTIFY"
    finally:
        consumer.stop()


def test_an_outbox_rollback_leaves_no_event_and_the_offset_is_reused(pg, stream):
    with psycopg.connect(pg.dsn) as conn:
        with pytest.raises(RuntimeError, match="business rule"):
            with conn.transaction():
                durable.write_outbox(conn, "order.created", {"n": 1}, stream=stream)
                raise RuntimeError("business rule failed")
        assert rows(pg.dsn, "SELECT count(*) FROM herald.events WHERE stream = %s", stream) == [(0,)]
        # Non-autocommit: psycopg opens the transaction; rollback() discards the event.
        durable.write_outbox(conn, "order.created", {"n": 2}, stream=stream)
        conn.rollback()
        with conn.transaction():
            offset = durable.write_outbox(conn, "order.created", {"n": 3}, stream=stream)
    assert offset == 1  # offsets stay dense: the rolled back reservations were never visible
    assert [json.loads(b)["payload"] for (b,) in rows(pg.dsn, "SELECT body FROM herald.events WHERE stream = %s",
                                                      stream)] == [{"n": 3}]


def test_the_outbox_on_an_autocommit_connection_outside_a_transaction_is_a_state_error(pg, stream):
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        with pytest.raises(herald.DurableError, match="needs an open transaction") as info:
            durable.write_outbox(conn, "order.created", {}, stream=stream)
        assert info.value.kind == "state"
        with conn.transaction():  # the same connection inside a transaction block works
            assert durable.write_outbox(conn, "order.created", {}, stream=stream) == 1
    assert rows(pg.dsn, "SELECT count(*) FROM herald.events WHERE stream = %s", stream) == [(1,)]


def test_the_outbox_in_a_failed_transaction_or_with_a_missing_schema_is_a_clear_error(pg, stream):
    with psycopg.connect(pg.dsn) as conn:
        with pytest.raises(herald.DurableError, match="missing_schema|does not exist") as info:
            with conn.transaction():
                durable.write_outbox(conn, "order.created", {}, stream=stream, schema="nowhere")
        assert info.value.kind == "missing_schema" and info.value.sqlstate == "42P01"
        assert "outbox of stream" in str(info.value)
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        with pytest.raises(herald.DurableError, match="failed") as info:
            durable.write_outbox(conn, "order.created", {}, stream=stream)
        assert info.value.kind == "state"
        conn.rollback()


def test_the_async_outbox_commits_with_the_transaction_and_refuses_autocommit(pg, stream):
    async def main():
        async with await psycopg.AsyncConnection.connect(pg.dsn) as conn:
            async with conn.transaction():
                first = await durable.write_outbox_async(conn, "order.created", {"n": 1}, stream=stream)
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await durable.write_outbox_async(conn, "order.created", {"n": 2}, stream=stream)
                    raise RuntimeError("rolled back")
            await conn.set_autocommit(True)
            with pytest.raises(herald.DurableError, match="needs an open transaction"):
                await durable.write_outbox_async(conn, "order.created", {"n": 3}, stream=stream)
            with pytest.raises(TypeError, match="use write_outbox_async"):
                durable.write_outbox(conn, "order.created", {}, stream=stream)
            return first

    assert asyncio.run(main()) == 1
    assert [json.loads(b)["payload"] for (b,) in rows(pg.dsn, "SELECT body FROM herald.events WHERE stream = %s",
                                                      stream)] == [{"n": 1}]


def test_concurrent_outbox_transactions_on_one_stream_commit_in_offset_order(pg, stream):
    first = psycopg.connect(pg.dsn)
    results = {}
    try:
        first.execute("BEGIN")
        assert durable.write_outbox(first, "order.created", {"n": 1}, stream=stream) == 1

        def second_writer():
            with psycopg.connect(pg.dsn) as conn:
                with conn.transaction():
                    results["offset"] = durable.write_outbox(conn, "order.created", {"n": 2}, stream=stream)

        t = threading.Thread(target=second_writer)
        t.start()
        # The second writer waits for the stream's counter row lock held by the first.
        wait_until(lambda: rows(pg.dsn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND query LIKE %s", "%INSERT INTO%streams%")[0][0] == 1,
                   timeout=30, message="the second outbox transaction waiting for the first")
        assert "offset" not in results
        first.execute("COMMIT")
        t.join(30)
        assert not t.is_alive()
    finally:
        first.close()
    assert results["offset"] == 2
    assert [json.loads(b)["payload"]["n"] for (b,) in rows(
        pg.dsn, "SELECT body FROM herald.events WHERE stream = %s ORDER BY event_offset", stream)] == [1, 2]


# ------------------------------------------------------------------------------------------------
# Errors.

def test_an_unreachable_server_is_a_durable_error_with_the_password_redacted(tmp_path, stream):
    if not hasattr(herald._herald, "_DurableConsumer"):
        pytest.skip("herald was built without the PostgreSQL module")
    dsn = f"host={tmp_path} port=5432 dbname=app user=app password=s3cret-pw connect_timeout=5"
    consumer = herald.DurableConsumer(dsn, stream, "billing", handle=lambda e: None)
    with pytest.raises(herald.DurableError) as info:
        consumer.start()
    assert isinstance(info.value, herald.TransportError) and isinstance(info.value, herald.HeraldError)
    assert info.value.kind == "connection"
    assert "cannot connect to PostgreSQL" in str(info.value) and "password=***" in str(info.value)
    assert "s3cret-pw" not in str(info.value) and "s3cret-pw" not in repr(consumer) + consumer.dsn
    assert consumer.state == "stopped"
    with pytest.raises(herald.StateError, match="not restartable"):
        consumer.start()


def test_a_wrong_password_is_an_authentication_error_naming_the_redacted_dsn(pg, stream):
    consumer = herald.DurableConsumer(pg.dsn_with_password("wrong-pw"), stream, "billing", handle=lambda e: None)
    with pytest.raises(herald.DurableError, match="refused the credentials") as info:
        consumer.start()
    assert info.value.kind == "authentication"
    assert "wrong-pw" not in str(info.value) and "password=***" in str(info.value)


@pytest.mark.parametrize("field", ["stream", "group"])
def test_a_name_with_a_quote_is_rejected_before_any_sql_naming_the_character(field):
    if not hasattr(herald._herald, "_DurableConsumer"):
        pytest.skip("herald was built without the PostgreSQL module")
    names = {"stream": "payments", "group": "billing"}
    names[field] = "pay'; DROP TABLE x"
    with pytest.raises(herald.DurableError, match=f"invalid {field} name .*character ''' at position 3") as info:
        herald.DurableConsumer("host=/nowhere password=pw", names["stream"], names["group"], handle=lambda e: None)
    assert info.value.kind == "invalid_name"


def test_the_outbox_rejects_a_bad_stream_or_schema_name_before_any_sql(pg):
    with psycopg.connect(pg.dsn) as conn:
        with pytest.raises(herald.DurableError, match="invalid stream name 'a\"b'.*character '\"'") as info:
            durable.write_outbox(conn, "order.created", {}, stream='a"b')
        assert info.value.kind == "invalid_name"
        with pytest.raises(herald.DurableError, match="invalid schema name"):
            durable.write_outbox(conn, "order.created", {}, stream="ok", schema='her"ald')
        with pytest.raises(herald.EventNameError):
            durable.write_outbox(conn, "bad name", {}, stream="ok")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # no SQL ran


def test_bad_options_are_errors_naming_the_option(pg, stream):
    with pytest.raises(herald.DurableError, match="invalid start position 'yesterday'"):
        herald.DurableConsumer(pg.dsn, stream, "g", start="yesterday", handle=lambda e: None)
    with pytest.raises(herald.DurableError, match="start offset must be >= 1"):
        herald.DurableConsumer(pg.dsn, stream, "g", start=0, handle=lambda e: None)
    with pytest.raises(herald.PatternError):
        herald.DurableConsumer(pg.dsn, stream, "g", patterns=["a..b"], handle=lambda e: None)
    with pytest.raises(herald.ConfigError, match="HERALD_TEST_UNSET_DSN"):
        herald.DurableConsumer(stream=stream, group="g", dsn_env="HERALD_TEST_UNSET_DSN", handle=lambda e: None)
    with pytest.raises(ValueError, match="lease"):
        herald.DurableConsumer(pg.dsn, stream, "g", lease=-1, handle=lambda e: None)


def test_a_missing_schema_at_start_is_a_durable_error_naming_it(pg, stream):
    consumer = herald.DurableConsumer(pg.dsn, stream, "g", schema="not_there", handle=lambda e: None)
    with pytest.raises(herald.DurableError, match="schema 'not_there' does not exist") as info:
        consumer.start()
    assert info.value.kind == "missing_schema"


# ------------------------------------------------------------------------------------------------
# Stopping, threads and the GIL.

def test_stop_while_a_sync_handler_waits_releases_the_gil_and_finishes_that_event(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": 1}), ("order.created", {"n": 2})])
    entered, release, handled = threading.Event(), threading.Event(), []

    def handle(event):
        entered.set()
        assert release.wait(60), "never released"
        handled.append(event.payload["n"])

    consumer = herald.DurableConsumer(pg.dsn, stream, "stop-wait", start="beginning", handle=handle,
                                      **FAST).start()
    assert entered.wait(30)

    def release_when_stopping():
        # Runs Python while stop() waits: it can only do so if stop() released the GIL.
        wait_until(lambda: consumer.state == "stopping", timeout=30, message="stopping")
        release.set()

    helper = threading.Thread(target=release_when_stopping)
    helper.start()
    assert consumer.stop(timeout=60) is True
    helper.join(30)
    assert handled == [1]  # the event in hand finished; the next one was not started
    assert consumer.committed_offset == 1
    assert rows(pg.dsn, "SELECT committed_offset FROM herald.consumer_groups WHERE stream = %s", stream) == [(1,)]


def test_stop_cancels_an_async_handler_still_waiting_after_the_timeout_and_the_event_comes_again(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": 1})])
    started, errors = threading.Event(), []

    async def handle(event):
        started.set()
        await asyncio.sleep(3600)

    consumer = herald.DurableConsumer(pg.dsn, stream, "stop-async", start="beginning", handle=handle,
                                      on_handle_error=lambda e, err: errors.append(type(err).__name__),
                                      **FAST).start()
    assert started.wait(30)
    t0 = time.monotonic()
    assert consumer.stop(timeout=0.5) is True
    assert time.monotonic() - t0 < 30  # a bound on "did not hang", not a speed claim
    assert errors == ["CancelledError"]
    assert consumer.committed_offset == 0  # not handled: not committed
    again = []
    with herald.DurableConsumer(pg.dsn, stream, "stop-async", handle=lambda e: again.append(e.payload["n"]),
                                **FAST) as second:
        wait_until(lambda: second.committed_offset == 1, timeout=30, message="redelivery")
    assert again == [1]


def test_stop_with_a_sync_handler_that_never_returns_is_a_timeout_error_not_a_hang(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": 1})])
    entered, release = threading.Event(), threading.Event()

    def handle(event):
        entered.set()
        release.wait(60)

    consumer = herald.DurableConsumer(pg.dsn, stream, "stop-stuck", start="beginning", handle=handle,
                                      **FAST).start()
    assert entered.wait(30)
    with pytest.raises(TimeoutError, match="a hook is still running"):
        consumer.stop(timeout=0.2)
    assert consumer.state == "stopping"
    release.set()
    assert consumer.stop(timeout=60) is True
    assert consumer.state == "stopped"


def test_stop_from_inside_a_handler_is_a_request_honoured_after_that_event(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": i}) for i in range(1, 6)])
    handled, answers = [], []

    def handle(event):
        handled.append(event.payload["n"])
        if event.payload["n"] == 3:
            answers.append(consumer.stop())

    consumer = herald.DurableConsumer(pg.dsn, stream, "stop-inside", start="beginning", handle=handle,
                                      **FAST).start()
    wait_until(lambda: consumer.committed_offset == 3, timeout=30, message="offset 3 committed")
    assert consumer.stop(timeout=30) is True
    assert answers == [False] and handled == [1, 2, 3]
    assert consumer.committed_offset == 3


def test_stop_from_inside_an_async_handler_is_a_request_too(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": i}) for i in range(1, 4)])
    handled, answers = [], []

    async def handle(event):
        handled.append(event.payload["n"])
        if event.payload["n"] == 2:
            answers.append(consumer.stop())

    consumer = herald.DurableConsumer(pg.dsn, stream, "stop-inside-async", start="beginning", handle=handle,
                                      **FAST).start()
    wait_until(lambda: consumer.committed_offset == 2, timeout=30, message="offset 2 committed")
    assert consumer.stop(timeout=30) is True
    assert answers == [False] and handled == [1, 2]


def test_stop_on_the_loop_thread_that_runs_the_hooks_is_refused_and_astop_works(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": 1})])

    async def main():
        seen = asyncio.Event()

        async def handle(event):
            seen.set()

        consumer = herald.DurableConsumer(pg.dsn, stream, "loop-stop", start="beginning", handle=handle, **FAST)
        await consumer.astart()
        await asyncio.wait_for(seen.wait(), 30)
        with pytest.raises(herald.StateError, match="astop"):
            consumer.stop()
        assert await consumer.astop() is True
        return consumer

    consumer = asyncio.run(main())
    assert consumer.state == "stopped" and consumer.committed_offset == 1


def test_a_stopped_class_style_consumer_is_garbage_collected(pg, stream):
    import gc
    import weakref

    publish(pg.dsn, stream, [("order.created", {"n": 1})])

    class Audit(herald.DurableConsumer):
        group = "gc"
        start_position = "beginning"

        def handle(self, event):
            self.last = event  # the consumer's own bound method is held by the native side

    consumer = Audit(pg.dsn, stream=stream, **FAST).start()
    wait_until(lambda: consumer.committed_offset == 1, timeout=30, message="offset 1")
    consumer.stop()
    ref = weakref.ref(consumer)
    consumer = None  # the test's own reference goes
    gc.collect()
    assert ref() is None  # stop() released the hooks: no cycle through C++ is left


def test_a_handler_that_raises_at_every_event_does_not_block_stop(pg, stream):
    publish(pg.dsn, stream, [("order.created", {"n": 1})])
    tried = threading.Event()

    def handle(event):
        tried.set()
        raise RuntimeError("always")

    consumer = herald.DurableConsumer(pg.dsn, stream, "raises", start="beginning", handle=handle,
                                      max_attempts=1000, retry_initial=0.5, retry_max=1.0, lease=1.0,
                                      poll_interval=0.2).start()
    assert tried.wait(30)
    assert consumer.stop(timeout=30) is True  # the retry backoff is cut short
    assert consumer.committed_offset == 0


EXIT_HANDLERS = {
    # the consumer is idle (waiting for NOTIFY) when the interpreter exits
    "idle": "def handle(e):\n    seen.set()",
    # a plain handler is in the middle of the event (it waits 1 s, GIL released)
    "sync-running": "def handle(e):\n    seen.set()\n    threading.Event().wait(1.0)",
    # a coroutine handler on the consumer's own loop is in the middle of the event
    "async-running": "async def handle(e):\n    seen.set()\n    await asyncio.sleep(1.0)",
}


@pytest.mark.parametrize("situation", sorted(EXIT_HANDLERS))
def test_a_running_consumer_is_stopped_at_interpreter_exit(pg, stream, python_env, situation):
    publish(pg.dsn, stream, [("order.created", {"n": 1})])
    script = "import asyncio, threading, herald\nseen = threading.Event()\n" + EXIT_HANDLERS[situation] + \
        textwrap.dedent(f"""
        c = herald.DurableConsumer({pg.dsn!r}, {stream!r}, "exit", start="beginning", handle=handle,
                                   lease=1.0, poll_interval=0.2)
        c.start()
        assert seen.wait(30)
        del c  # still running: the exit handler stops it
        print("exiting", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=python_env, capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "exiting" in proc.stdout
    # Stopped gracefully: the event in hand finished and was committed, the lease released.
    assert rows(pg.dsn, "SELECT committed_offset, owner FROM herald.consumer_groups WHERE stream = %s "
                        "AND group_name = 'exit'", stream) == [(1, None)]


def test_the_herald_cli_reads_what_the_python_outbox_wrote(pg, stream, herald_bin):
    publish(pg.dsn, stream, [("payment.processed", {"amount": i}) for i in (1, 2)])
    proc = subprocess.run([str(herald_bin), "consume", "--dsn", pg.dsn, "--stream", stream, "--group", "cli",
                           "--from", "beginning", "--count", "2", "--timeout-ms", "60000", "#"],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(d["offset"], d["event_name"], d["payload"]) for d in lines] == [
        (1, "payment.processed", {"amount": 1}), (2, "payment.processed", {"amount": 2})]


def test_the_package_exports_the_durable_names_and_nothing_else_of_the_module():
    assert {"DurableConsumer", "DurableError", "DurableRecord", "durable"} <= set(herald.__all__)
    assert herald.durable.write_outbox is durable.write_outbox
    assert herald.DurableConsumer is durable.DurableConsumer
    assert issubclass(herald.DurableError, herald.TransportError)
    # The module's other names (helpers, its imports) stay in herald.durable.
    leaked = {n for n in vars(durable) if not n.startswith("_")} & set(dir(herald))
    assert leaked <= {"DurableConsumer", "DurableError", "DurableRecord", "ConfigError", "DomainEvent",
                      "Pattern", "StateError", "TransportError", "logger", "annotations", "asyncio",
                      "atexit", "dataclasses", "inspect", "os", "threading", "weakref", "Any", "Callable",
                      "Iterable", "Optional"}, leaked
    for name in ("write_outbox", "ensure_schema", "StartPosition", "Seconds", "redact_dsn"):
        assert not hasattr(herald, name), name


# ------------------------------------------------------------------------------------------------
# A Python worker on the durable road.

def test_a_python_worker_with_transports_postgres_stores_durable_and_broadcast_events(pg, stream):
    got = []

    class Local(herald.BaseSubscriber):
        subscriber_name = "local"
        overflow = "block"

        def subscribes_to(self):
            return ["payment.*"]

        def handle(self, event):
            got.append((event.event_name, event.event_id))

    herald.SubscriberRegistry.instance().register(Local)
    config = {
        "worker": {"name": "py-durable"},
        "transports": {"postgres": {"dsn": pg.dsn, "stream": stream}},
        "steps": [{"name": "charge", "publishes_events": [
            {"name": "payment.stored", "delivery_mode": "durable"},
            {"name": "payment.shared", "delivery_mode": "broadcast"}]}],
    }
    worker = herald.Worker(config=config)
    with worker:
        assert worker.complete_steps({"step_name": "charge", "success": True, "result": {"n": i}}
                                     for i in range(30)) == 30
        assert worker.drain(30)
        assert worker.status()["events"]["published_by_delivery_mode"]["durable"] == 30
    # The log holds both kinds, in completion order; the broadcast ones are the events the
    # in-process subscriber saw (same ids), the durable ones never reached it.
    stored = rows(pg.dsn, "SELECT event_name, event_id FROM herald.events WHERE stream = %s ORDER BY event_offset",
                  stream)
    assert [name for name, _ in stored] == ["payment.stored", "payment.shared"] * 30
    assert [i for name, i in stored if name == "payment.shared"] == [i for name, i in got]
    assert all(name == "payment.shared" for name, _ in got) and len(got) == 30


def test_a_python_worker_refuses_a_durable_declaration_without_a_database():
    with pytest.raises(herald.ConfigError, match=r"delivery_mode.*transports\.postgres"):
        herald.Worker(config={"steps": [{"name": "charge", "publishes_events": [
            {"name": "payment.stored", "delivery_mode": "durable"}]}]})
