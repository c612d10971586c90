"""Running `herald` processes in tests: output captured by reader threads, waits with deadlines."""
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def herald_bin() -> str:
    if os.environ.get("HERALD_BIN"):
        return os.environ["HERALD_BIN"]
    build = os.environ.get("HERALD_BUILD_DIR", str(REPO / "build"))
    return str(Path(build) / "herald")


class Proc:
    """A herald process whose stdout and stderr lines are collected as they arrive."""

    def __init__(self, *args: str):
        self.args = [herald_bin(), *args]
        self.p = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: list[str] = []
        self.err: list[str] = []
        self._cv = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.p.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.p.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self._cv:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_until(self, predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        with self._cv:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.2))  # also re-checks a process that died
        return True

    def wait_stderr(self, pattern, timeout=60.0) -> re.Match:
        rx = re.compile(pattern)
        found = []

        def check():
            for line in self.err:
                m = rx.search(line)
                if m:
                    found.append(m)
                    return True
            return self.p.poll() is not None and not self._readers[1].is_alive()

        self.wait_until(check, timeout)
        assert found, f"{self.args}: no stderr line matching {pattern!r}; stderr: {self.err}"
        return found[0]

    def endpoint(self, label="listening on", timeout=60.0) -> str:
        return self.wait_stderr(rf"{label} (\S+)", timeout).group(1)

    def finish(self, timeout=60.0) -> int:
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError(f"{self.args} did not exit within {timeout}s; stderr: {self.err}")
        for t in self._readers:
            t.join(5)
        return rc

    def signal(self, sig=signal.SIGINT):
        self.p.send_signal(sig)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.finish()

    def envelopes(self) -> list[dict]:
        with self._cv:
            return [json.loads(line) for line in self.out if line.strip()]

    def summary(self) -> dict:
        """The last stderr line that is a JSON object (tail/publish/proxy summaries)."""
        for line in reversed(self.err):
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError(f"no JSON summary on stderr: {self.err}")


def cleanup(*procs: Proc):
    for p in procs:
        if p is not None and p.p.poll() is None:
            p.p.kill()
            p.p.wait()
