"""`herald run` and `herald demo` as real processes: signals, bad input, summaries, reload."""
import array
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import termios
import threading
import time
from pathlib import Path

import pytest

from herald_proc import herald_bin


def write_config(folder: Path, steps=None) -> Path:
    config = {
        "worker": {"name": "cli-test-worker", "dispatcher_threads": 2},
        "steps": steps
        or [
            {
                "name": "process_payment",
                "publishes_events": [
                    {"name": "payment.processed", "condition": "success"},
                    {"name": "payment.failed", "condition": "failure"},
                ],
            }
        ],
        "subscribers": [
            {"type": "audit", "name": "audit", "subscribes_to": ["#"], "path": "audit.jsonl", "overflow": "block"},
            {"type": "metrics", "name": "metrics", "subscribes_to": ["payment.*"], "path": "metrics.prom"},
        ],
    }
    path = folder / "herald.json"
    path.write_text(json.dumps(config))
    return path


def completion(n: int, step: str = "process_payment", success: bool = True) -> str:
    return json.dumps(
        {"step_name": step, "success": success, "correlation_id": f"c-{n}", "result": {"n": n}}
    )


def audit_lines(folder: Path, written_so_far: bool = False) -> list:
    """Every line of the audit trail, each of which must parse. With written_so_far (polling a
    trail that herald is still writing) the text after the last newline is left out: a read
    that overlaps herald's write(2) of a line can see the first part of it."""
    path = folder / "audit.jsonl"
    if not path.exists():
        return []
    text = path.read_text()
    if written_so_far:
        text = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in text.splitlines()]


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def start_run(config: Path, *extra):
    return subprocess.Popen(
        [herald_bin(), "run", "--config", str(config), "--steps", "-", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_run_publishes_every_completion_of_a_file_and_prints_a_summary(tmp_path):
    config = write_config(tmp_path)
    steps = tmp_path / "steps.jsonl"
    steps.write_text("\n".join(completion(i, success=i % 4 != 0) for i in range(200)) + "\n")
    status = tmp_path / "status.json"
    r = subprocess.run(
        [herald_bin(), "run", "--config", str(config), "--steps", str(steps), "--status-json", str(status)],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    events = audit_lines(tmp_path)
    assert [e["metadata"]["correlation_id"] for e in events] == [f"c-{i}" for i in range(200)]
    assert sum(e["event_name"] == "payment.failed" for e in events) == 50
    assert "200 completions accepted" in r.stderr
    assert re.search(r"event payment\.processed\s+150", r.stderr), r.stderr
    final = json.loads(status.read_text())
    assert final["state"] == "STOPPED"
    assert final["completions"]["processed"] == 200
    assert 'herald_events_total{event_name="payment.failed"} 50' in (tmp_path / "metrics.prom").read_text()


def test_bad_lines_are_reported_with_their_number_and_field_and_skipped(tmp_path):
    config = write_config(tmp_path)
    lines = [completion(1), "{not json", '{"step_name": 5, "success": true}', completion(4)]
    r = subprocess.run(
        [herald_bin(), "run", "--config", str(config), "--steps", "-"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert re.search(r"line 2: invalid JSON", r.stderr), r.stderr
    assert "line 3: step_name: expected string, got number" in r.stderr
    assert "2 bad lines" in r.stderr
    assert [e["metadata"]["correlation_id"] for e in audit_lines(tmp_path)] == ["c-1", "c-4"]


def test_strict_mode_exits_1_at_the_first_bad_line(tmp_path):
    config = write_config(tmp_path)
    r = subprocess.run(
        [herald_bin(), "run", "--config", str(config), "--steps", "-", "--strict"],
        input=completion(1) + "\n" + '{"success": true}\n' + completion(3) + "\n",
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 1
    assert "line 2: step_name: required field is missing" in r.stderr


def test_a_bad_configuration_exits_2_naming_the_key_path(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"worker": {"dispatcher_thread": 2}}))
    r = subprocess.run([herald_bin(), "run", "--config", str(path)], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert "worker.dispatcher_thread: unknown key (did you mean 'dispatcher_threads'?)" in r.stderr


def test_bad_arguments_exit_2_naming_the_argument(tmp_path):
    r = subprocess.run([herald_bin(), "run", "--config", str(tmp_path / "absent.json")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "absent.json" in r.stderr or "--config" in r.stderr


def test_sigterm_mid_stream_stops_gracefully_and_loses_nothing_read(tmp_path):
    config = write_config(tmp_path)
    proc = start_run(config)
    written = []
    stop_writing = threading.Event()

    def writer():
        n = 0
        try:
            while not stop_writing.is_set():
                proc.stdin.write((completion(n) + "\n").encode())
                proc.stdin.flush()
                written.append(n)
                n += 1
                if n % 50 == 0:
                    time.sleep(0.005)  # a stream, not one burst
        except (BrokenPipeError, ValueError):
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert wait_for(lambda: len(audit_lines(tmp_path, written_so_far=True)) >= 500), "events never reached the audit file"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    stop_writing.set()
    err = err.decode()
    assert proc.returncode == 0, err
    accepted = int(re.search(r"(\d+) completions accepted", err).group(1))
    events = audit_lines(tmp_path)
    # Exactly the events of the completions read so far, in order: a prefix of what was written.
    assert len(events) == accepted
    assert [e["metadata"]["correlation_id"] for e in events] == [f"c-{i}" for i in range(accepted)]
    assert len(written) > accepted or accepted == len(written)
    assert "graceful" in err


def test_sigusr1_logs_the_status_report_and_keeps_running(tmp_path):
    config = write_config(tmp_path)
    proc = start_run(config)
    proc.stdin.write((completion(1) + "\n").encode())
    proc.stdin.flush()
    assert wait_for(lambda: len(audit_lines(tmp_path, written_so_far=True)) == 1)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: any(b"status:" in l for l in lines)), lines
    status_line = next(l.decode() for l in lines if b"status:" in l)
    status = json.loads(status_line.split("status: ", 1)[1])
    assert status["state"] == "RUNNING"
    assert status["completions"]["processed"] == 1
    proc.stdin.write((completion(2) + "\n").encode())
    proc.stdin.close()  # end of input: graceful stop
    assert proc.wait(timeout=60) == 0
    assert len(audit_lines(tmp_path)) == 2


def test_sighup_reloads_new_step_declarations_and_refuses_an_invalid_file(tmp_path):
    config = write_config(tmp_path)
    proc = start_run(config)
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    assert wait_for(lambda: any(b"RUNNING" in l for l in lines))
    # An invalid file is refused; the old configuration keeps running.
    config.write_text('{"steps": [{"name": 1}]}')
    proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: any(b"reload refused" in l for l in lines)), (proc.poll(), lines)
    proc.stdin.write((completion(1) + "\n").encode())
    proc.stdin.flush()
    assert wait_for(lambda: len(audit_lines(tmp_path, written_so_far=True)) == 1)
    # A valid new file adds a step.
    write_config(tmp_path, steps=[
        {"name": "process_payment", "publishes_events": [{"name": "payment.processed"}]},
        {"name": "ship_order", "publishes_events": [{"name": "order.shipped"}]},
    ])
    proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: any(b"configuration reloaded" in l for l in lines)), lines
    proc.stdin.write((completion(2, step="ship_order") + "\n").encode())
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert [e["event_name"] for e in audit_lines(tmp_path)] == ["payment.processed", "order.shipped"]


PG_BIN = Path(os.environ.get("HERALD_PG_BIN", "/usr/lib/postgresql/15/bin"))


def test_demo_runs_end_to_end_and_checks_every_road(tmp_path):
    # 900 completions: every road and outcome, small enough for sanitizer builds. The folder is
    # a fresh one in /tmp rather than pytest's (whose parents only root may enter): the durable
    # road's server runs as `postgres` inside it.
    demo = Path(tempfile.mkdtemp(prefix="herald-demo-test-"))
    try:
        r = subprocess.run([herald_bin(), "demo", "--completions", "900", "--dir", str(demo)],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "demo OK" in r.stdout
        audit = [json.loads(l) for l in (demo / "audit.jsonl").read_text().splitlines()]
        tail = [json.loads(l) for l in (demo / "tail.jsonl").read_text().splitlines()]
        assert len(audit) > 300 and len(tail) > 300
        assert all(e["event_name"] != "notification.receipt_sent" for e in audit)  # zeromq-only
        assert any(e["event_name"] == "notification.receipt_sent" for e in tail)
        durable = next(l for l in r.stdout.splitlines() if l.strip().startswith("durable:"))
        if (PG_BIN / "initdb").exists():
            # Every broadcast event committed and read back once by the external consumer group.
            m = re.search(r"(\d+) of (\d+) broadcast events committed; consumer group 'demo-check' "
                          r"read back (\d+), 0 twice", durable)
            assert m, durable
            committed, expected, read = map(int, m.groups())
            assert committed == expected == read > 300
            broadcast = {"payment.processed", "payment.failed", "order.fulfilled"}
            assert read == sum(1 for e in audit if e["event_name"] in broadcast)
        else:
            assert "skipped: no PostgreSQL server" in durable, durable
    finally:
        shutil.rmtree(demo, ignore_errors=True)


def test_demo_without_the_durable_road_says_so():
    demo = Path(tempfile.mkdtemp(prefix="herald-demo-test-"))
    try:
        r = subprocess.run([herald_bin(), "demo", "--completions", "90", "--no-durable", "--dir", str(demo)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "durable:    off (--no-durable)" in r.stdout
    finally:
        shutil.rmtree(demo, ignore_errors=True)


def test_listen_takes_completions_from_a_zeromq_push_socket(tmp_path):
    zmq = pytest.importorskip("zmq")
    config = write_config(tmp_path)
    endpoint = f"ipc://{tmp_path}/intake.ipc"
    proc = subprocess.Popen(
        [herald_bin(), "run", "--config", str(config), "--listen", endpoint],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(endpoint)  # connects once the worker has bound; PUSH queues until then
    try:
        for i in range(100):
            push.send_string(completion(i))
        push.send_string('{"step_name": true}')  # reported, skipped
        assert wait_for(lambda: len(audit_lines(tmp_path, written_so_far=True)) == 100), "completions did not arrive"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        push.close()
        ctx.term()
        if proc.poll() is None:
            proc.kill()
    err = err.decode()
    assert proc.returncode == 0, err
    assert "step_name: expected string, got boolean" in err
    assert [e["metadata"]["correlation_id"] for e in audit_lines(tmp_path)] == [f"c-{i}" for i in range(100)]


def test_a_second_sigterm_during_a_slow_graceful_stop_exits_at_once(tmp_path):
    # The audit trail is a FIFO that the test stops reading: once its pipe buffer is full the
    # subscriber's write blocks, so the graceful stop cannot finish and the second signal always
    # arrives during it (fsync per event used to be the slowness, and a fast disk let the drain
    # win about 1 run in 6 under TSan).
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # keeps the FIFO open; read at the end
    config = {
        "worker": {"dispatcher_threads": 1, "intake_capacity": 100000, "shutdown_drain_timeout_ms": 120000},
        "steps": [{"name": "process_payment", "publishes_events": [{"name": "payment.processed"}]}],
        "subscribers": [{"type": "audit", "name": "audit", "subscribes_to": ["#"], "path": str(fifo),
                         "overflow": "block", "block_timeout_ms": 120000}],
    }
    (tmp_path / "herald.json").write_text(json.dumps(config))
    steps = tmp_path / "steps.jsonl"
    steps.write_text("".join(completion(i) + "\n" for i in range(50000)))
    proc = subprocess.Popen([herald_bin(), "run", "--config", str(tmp_path / "herald.json"), "--steps", str(steps)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    try:
        # The pipe fills (64 KiB, a few hundred events) and herald's audit write blocks. Before
        # the first signal, herald must hold far more accepted completions than the pipe can
        # take (2,000 completions are ~600 KiB of audit lines), so that the graceful stop,
        # which must write them all, cannot finish: at the first bytes in the FIFO, a slow
        # (sanitized) build may have accepted so few that they fit in the pipe. The worker's
        # status (SIGUSR1) says how many it accepted.
        assert wait_for(lambda: _unread_bytes(reader) > 0), "herald wrote nothing to the audit FIFO"

        def accepted() -> int:
            before = sum(b"status: {" in l for l in lines)
            proc.send_signal(signal.SIGUSR1)
            if not wait_for(lambda: sum(b"status: {" in l for l in lines) > before, 10):
                return 0
            line = [l for l in lines if b"status: {" in l][-1].decode()
            return json.loads(line.split("status: ", 1)[1])["completions"]["received"]

        assert wait_for(lambda: accepted() >= 2000, 60), "herald did not accept 2,000 completions"
        proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: any(b"stopping gracefully" in l for l in lines)), lines
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        assert wait_for(lambda: any(b"exiting at once" in l for l in lines)), lines
        data = b""
        while True:
            try:
                chunk = os.read(reader, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(reader)
    # Whole lines up to the last newline, in completion order (a forced exit may cut the
    # write it interrupted; a FIFO cannot be repaired like a file).
    text = data[: data.rfind(b"\n") + 1].decode()
    events = [json.loads(line) for line in text.splitlines()]
    assert 0 < len(events) < 50000
    assert [e["metadata"]["correlation_id"] for e in events] == [f"c-{i}" for i in range(len(events))]


def _unread_bytes(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]
