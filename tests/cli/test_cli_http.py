"""`herald run --http`: /metrics, /health and /status scraped with urllib from a real process."""
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from herald_proc import herald_bin


def write_config(folder: Path) -> Path:
    config = {
        "worker": {"name": "http-cli-worker", "dispatcher_threads": 2},
        "steps": [
            {
                "name": "process_payment",
                "publishes_events": [
                    {"name": "payment.processed", "condition": "success"},
                    {"name": "payment.failed", "condition": "failure"},
                ],
            }
        ],
        "subscribers": [{"type": "metrics", "name": "metrics", "subscribes_to": ["payment.*"]}],
    }
    path = folder / "herald.json"
    path.write_text(json.dumps(config))
    return path


class Run:
    """`herald run --steps -` with its stderr collected by a reader thread. Its address is read
    from the line `herald run` prints once the worker is RUNNING (the log line before it comes
    while the worker is still STARTING, when /health answers 503)."""

    def __init__(self, config: Path, *extra: str):
        self.p = subprocess.Popen([herald_bin(), "run", "--config", str(config), "--steps", "-", *extra],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err: list[str] = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in iter(self.p.stderr.readline, b""):
            with self._cv:
                self.err.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def stderr_match(self, pattern: str, timeout: float = 15.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.err:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no stderr line matching {pattern!r}: {self.err}")
                self._cv.wait(min(left, 0.2))

    def send(self, lines: list[str]):
        self.p.stdin.write("".join(line + "\n" for line in lines).encode())
        self.p.stdin.flush()

    def finish(self, timeout: float = 30.0) -> int:
        if self.p.stdin and not self.p.stdin.closed:
            self.p.stdin.close()
        try:
            return self.p.wait(timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
            self._reader.join(5)


def completion(n: int, success: bool = True) -> str:
    return json.dumps({"step_name": "process_payment", "success": success, "correlation_id": f"c-{n}"})


def get(url: str):
    """(status, content type, body) of a GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def parse_metrics(text: str) -> dict:
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        key, value = line.rsplit(" ", 1)
        samples[key] = float(value)
    return samples


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_run_serves_metrics_health_and_status_on_the_address_it_prints(tmp_path):
    run = Run(write_config(tmp_path), "--http", "127.0.0.1:0", "--quiet")
    try:
        address = run.stderr_match(r"herald run: serving /metrics, /health and /status on http://(127\.0\.0\.1:\d+)").group(1)
        assert not address.endswith(":0")
        base = f"http://{address}"
        run.send([completion(i) for i in range(6)] + [completion(i, success=False) for i in range(6, 8)])

        def processed() -> float:
            return parse_metrics(get(base + "/metrics")[2]).get("herald_completions_processed_total", -1)

        assert wait_for(lambda: processed() == 8), get(base + "/metrics")[2]
        status, content_type, body = get(base + "/metrics")
        assert status == 200
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        m = parse_metrics(body)
        assert m["herald_completions_accepted_total"] == 8
        assert m["herald_completions_rejected_total"] == 0
        assert m['herald_events_published_total{event_name="payment.processed"}'] == 6
        assert m['herald_events_published_total{event_name="payment.failed"}'] == 2
        assert m['herald_events_skipped_total{event_name="payment.failed",reason="condition"}'] == 6
        assert m['herald_worker_state{state="RUNNING"}'] == 1
        assert "# TYPE herald_completions_accepted_total counter" in body

        status, content_type, body = get(base + "/health")
        assert (status, content_type) == (200, "application/json")
        assert json.loads(body)["healthy"] is True

        status, _, body = get(base + "/status")
        report = json.loads(body)
        assert status == 200 and report["worker"] == "http-cli-worker"
        assert report["completions"]["processed"] == 8
        assert wait_for(lambda: json.loads(get(base + "/status")[2])["subscribers"]["metrics"]["handled"] == 8)
    finally:
        rc = run.finish()
    assert rc == 0, run.err
    # Stopped with the worker: nothing listens there any more.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{address}/health", timeout=5)


def test_an_address_in_use_exits_1_naming_it(tmp_path):
    first = Run(write_config(tmp_path), "--http", "127.0.0.1:0", "--quiet")
    try:
        address = first.stderr_match(r"herald run: serving .* on http://(\S+)").group(1)
        second = Run(write_config(tmp_path), "--http", address, "--quiet")
        rc = second.finish()
        assert rc == 1, second.err
        assert any(address in line and "http" in line for line in second.err), second.err
        assert get(f"http://{address}/health")[0] == 200  # the first one still serves
    finally:
        assert first.finish() == 0, first.err


@pytest.mark.parametrize("bad", ["9464", "127.0.0.1:", "127.0.0.1:70000", "::1:9464"])
def test_a_malformed_address_exits_2_naming_it(tmp_path, bad):
    run = Run(write_config(tmp_path), "--http", bad, "--quiet")
    rc = run.finish()
    assert rc == 2, run.err
    assert any(bad in line and "malformed listen address" in line for line in run.err), run.err


def test_http_listen_in_the_configuration_file_is_served(tmp_path):
    config = json.loads(write_config(tmp_path).read_text())
    config["http"] = {"listen": "127.0.0.1:0"}
    path = tmp_path / "with-http.json"
    path.write_text(json.dumps(config))
    run = Run(path, "--quiet")
    try:
        address = run.stderr_match(r"herald run: serving .* on http://(\S+)").group(1)
        assert get(f"http://{address}/health")[0] == 200
    finally:
        assert run.finish() == 0, run.err
