"""Interoperability of herald's ZeroMQ wire format (docs/wire-format.md) with pyzmq, a client
nobody here wrote: pyzmq decodes what `herald publish` sends, and `herald tail` prints what
pyzmq sends by hand. Needs the herald binary: $HERALD_BUILD_DIR/herald (default <repo>/build)."""
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

zmq = pytest.importorskip("zmq")

REPO = Path(__file__).resolve().parents[2]
HERALD = Path(os.environ.get("HERALD_BUILD_DIR", REPO / "build")) / "herald"
MARKER = b"\xffherald-subscriber:"  # docs/wire-format.md, "Counting subscribers"

pytestmark = pytest.mark.skipif(not HERALD.exists(), reason=f"{HERALD} not built")


class Herald:
    """A herald process with stdout/stderr lines collected by reader threads."""

    def __init__(self, *args):
        self.p = subprocess.Popen([str(HERALD), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.cv = threading.Condition()
        self.readers = [threading.Thread(target=self._read, args=(stream, sink), daemon=True)
                        for stream, sink in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self.cv:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cv.notify_all()

    def wait_stderr(self, needle, timeout=60.0):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for line in self.err:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                assert left > 0 and self.p.poll() is None, f"no {needle!r} on stderr: {self.err}"
                self.cv.wait(min(left, 0.2))

    def finish(self, timeout=60.0):
        """Waits for the process to exit, then for the readers to reach end of file: the
        process can exit before a reader thread has taken its last lines from the pipe."""
        try:
            return self.p.wait(timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
            for reader in self.readers:
                reader.join(timeout)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def summary(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self.cv:
                for line in reversed(self.err):
                    if line.startswith("{"):
                        return json.loads(line)
                self.cv.wait(0.1)
        raise AssertionError(f"no summary on stderr: {self.err}")


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def test_pyzmq_sub_decodes_a_herald_publish_envelope(ctx):
    pub = Herald("publish", "--bind", "tcp://127.0.0.1:*", "--wait-subscribers", "1", "--count", "3",
                 "order.created", '{"order_id": 42, "note": "héllo"}')
    try:
        endpoint = pub.wait_stderr("listening on").split()[-1]
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVTIMEO, 60000)
        sub.setsockopt(zmq.SUBSCRIBE, b"order.")
        sub.setsockopt(zmq.SUBSCRIBE, MARKER + uuid.uuid4().hex.encode())  # be counted
        sub.connect(endpoint)
        seen = []
        for _ in range(3):
            frames = sub.recv_multipart()
            assert len(frames) == 2
            topic, body = frames
            assert body[:1] == b"{"  # JSON encoding
            env = json.loads(body.decode("utf-8"))
            assert env["wire_version"] == 1
            assert topic.decode() == env["event_name"] == "order.created"
            assert env["payload"] == {"order_id": 42, "note": "héllo"}
            for key in ("event_id", "publisher_id", "metadata", "execution_result", "event_version"):
                assert key in env, key
            assert env["metadata"]["fired_at"].endswith("Z")
            assert env["execution_result"]["success"] is True
            seen.append((env["publisher_id"], env["seq"], env["name_seq"]))
        assert len({p for p, _, _ in seen}) == 1
        assert [s for _, s, _ in seen] == [1, 2, 3]
        assert [n for _, _, n in seen] == [1, 2, 3]
        assert pub.finish() == 0
    finally:
        pub.kill()


def test_pyzmq_sub_sees_msgpack_marked_by_its_first_byte(ctx):
    pub = Herald("publish", "--bind", "tcp://127.0.0.1:*", "--wait-subscribers", "1", "--encoding", "msgpack",
                 "order.created", '{"x": 1}')
    try:
        endpoint = pub.wait_stderr("listening on").split()[-1]
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVTIMEO, 60000)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.SUBSCRIBE, MARKER + b"py-msgpack")
        sub.connect(endpoint)
        topic, body = sub.recv_multipart()
        assert topic == b"order.created"
        assert body[0] in range(0x80, 0x90) or body[0] in (0xDE, 0xDF)  # a MessagePack map
        try:
            import msgpack  # optional
        except ImportError:
            msgpack = None
        if msgpack is not None:
            env = msgpack.unpackb(body)
            assert env["wire_version"] == 1 and env["payload"] == {"x": 1}
        assert pub.finish() == 0
    finally:
        pub.kill()


def bind_xpub(ctx):
    xpub = ctx.socket(zmq.XPUB)
    xpub.setsockopt(zmq.LINGER, 0)
    xpub.setsockopt(zmq.RCVTIMEO, 60000)
    xpub.bind("tcp://127.0.0.1:*")
    return xpub, xpub.getsockopt(zmq.LAST_ENDPOINT).decode()


def wait_for_herald_subscriber(xpub):
    """Subscriptions arrive as b'\\x01' + topic; a herald subscriber's marker comes last."""
    while True:
        msg = xpub.recv()
        if msg[:1] == b"\x01" and msg[1:].startswith(MARKER):
            return


def hand_built(name, seq, **over):
    env = {
        "wire_version": 1,
        "publisher_id": "python-publisher",
        "seq": seq,
        "event_id": str(uuid.uuid4()),
        "event_name": name,
        "event_version": "1.0",
        "payload": {"from": "python", "n": seq},
        "metadata": {"correlation_id": "corr-py"},
        "execution_result": {"success": True},
    }
    env.update(over)
    return env


def test_herald_tail_prints_an_envelope_built_by_hand_in_python(ctx):
    xpub, endpoint = bind_xpub(ctx)
    tail = Herald("tail", "--connect", endpoint, "--count", "2", "--timeout-ms", "60000", "invoice.*")
    try:
        wait_for_herald_subscriber(xpub)
        first, second = hand_built("invoice.paid", 1), hand_built("invoice.sent", 2)
        for env in (first, second):
            xpub.send_multipart([env["event_name"].encode(), json.dumps(env).encode()])
        assert tail.finish() == 0, tail.err
        lines = [json.loads(line) for line in tail.out]
        assert [e["event_id"] for e in lines] == [first["event_id"], second["event_id"]]
        assert lines[0]["payload"] == {"from": "python", "n": 1}
        assert lines[0]["publisher_id"] == "python-publisher" and lines[1]["seq"] == 2
        assert lines[0]["metadata"]["correlation_id"] == "corr-py"
        s = tail.summary()
        assert s["gaps"] == 0 and s["rejected"] == 0
    finally:
        tail.kill()


def test_garbage_and_oversized_frames_are_counted_and_do_not_crash_the_tail(ctx):
    xpub, endpoint = bind_xpub(ctx)
    tail = Herald("tail", "--connect", endpoint, "--count", "1", "--timeout-ms", "60000",
                  "--max-message-size", "4096", "#")
    try:
        wait_for_herald_subscriber(xpub)
        xpub.send_multipart([b"a.b"])                                   # frame_count
        xpub.send_multipart([b"a.b", b"{}", b"extra"])                  # frame_count
        xpub.send_multipart([b"a.b", b"\x00\xffgarbage"])               # invalid_encoding
        xpub.send_multipart([b"a.b", b"{not json"])                     # invalid_encoding
        xpub.send_multipart([b"a.b", json.dumps({"wire_version": 1}).encode()])  # missing_field
        big = hand_built("a.b", 1, payload={"blob": "x" * 6000})
        xpub.send_multipart([b"a.b", json.dumps(big).encode()])         # oversized
        wrong = hand_built("a.b", 2)
        xpub.send_multipart([b"a.c", json.dumps(wrong).encode()])       # topic_mismatch
        bad_name = hand_built("a b!", 3)
        xpub.send_multipart([b"a b!", json.dumps(bad_name).encode()])   # bad_event_name
        good = hand_built("a.ok", 4)
        xpub.send_multipart([b"a.ok", json.dumps(good).encode()])
        assert tail.finish() == 0, tail.err
        assert [json.loads(line)["event_id"] for line in tail.out] == [good["event_id"]]
        s = tail.summary()
        by = s["rejected_by_reason"]
        assert by["frame_count"] == 2
        assert by["invalid_encoding"] == 2
        assert by["missing_field"] == 1
        assert by["oversized"] == 1
        assert by["topic_mismatch"] == 1
        assert by["bad_event_name"] == 1
        assert s["rejected"] == 8
        assert any("dropped message" in line for line in tail.err)  # logged (rate limited)
    finally:
        tail.kill()
