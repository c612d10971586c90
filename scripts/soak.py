#!/usr/bin/python3
"""herald soak test: real `herald publish` / `herald tail` processes through one `herald proxy`,
with kill -9 and restart of subscribers and of one publisher, and one deliberately slow
subscriber. Run it through scripts/soak.sh.

Accounting (docs/wire-format.md): every publisher incarnation has its own publisher_id (given
with --publisher-id), and numbers each event name from 1 (name_seq). For every subscriber
incarnation and every (publisher incarnation, name) it saw, the observed name_seqs must be
strictly increasing; `first - 1` events came before it joined (initial gap), the holes between
first and last are events lost while it was connected (inner gaps). So, exactly:

    last - first + 1 == received + inner gaps             (every incarnation, every stream)
    herald tail's own count: gaps == initial + inner      (incarnations that exited gracefully)
    inner gaps == 0                                       (the normal subscribers: nothing lost
                                                           while connected)
    sent == received + initial + inner gaps               (a publisher incarnation that stopped
                                                           gracefully, seen by a subscriber alive
                                                           from before its first to after its last event)

Across a subscriber slot (its incarnations one after another), the events it never got are
exactly the windows between its incarnations' ranges: nothing missing inside a range.
Killed publisher incarnations have no final count: their events are checked the same way, and
"sent" is reported as at least the highest name_seq seen.

Exit status 0 when every check passed, 1 otherwise; a summary goes to stdout (and JSON with
--json FILE)."""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def find_herald(explicit):
    for candidate in (explicit, os.environ.get("HERALD_BIN"),
                      os.environ.get("HERALD_BUILD_DIR") and str(Path(os.environ["HERALD_BUILD_DIR"]) / "herald"),
                      str(REPO / "build" / "herald")):
        if candidate and Path(candidate).is_file():
            return candidate
    sys.exit("soak: no herald binary (build first, or give --herald / HERALD_BIN / HERALD_BUILD_DIR)")


def sanitizer(binary: str) -> str:
    """"asan", "tsan" or "" for the runtime the binary links."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return "tsan" if "libtsan" in out else "asan" if "libasan" in out else ""


# How much more resident memory a sanitized process takes for the same work (the RSS bound is
# multiplied by it). Measured with this soak (30 s, seed 7): the slow subscriber 61 MiB plain,
# 520-541 MiB under ThreadSanitizer (8.5-8.9x: its shadow memory and history), within 4x under
# AddressSanitizer; the proxy 18.6 MiB plain, 84-94 MiB under TSan.
RSS_FACTOR = {"": 1, "asan": 4, "tsan": 12}


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Incarnation:
    role: str            # "proxy", "publisher", "subscriber", "slow-subscriber"
    slot: int
    index: int           # incarnation number within the slot
    proc: subprocess.Popen
    out: Path | None
    err: Path
    publisher_id: str = ""
    names: list = field(default_factory=list)
    started: float = 0.0
    ended: float | None = None
    killed: bool = False
    rc: int | None = None
    max_rss_kb: int = 0

    @property
    def label(self):
        return f"{self.role}{self.slot}#{self.index}"


class SlowReader(threading.Thread):
    """Reads the slow subscriber's stdout a little at a time into its file; `fast` drains it."""

    def __init__(self, pipe, path: Path, chunk: int, pause: float):
        super().__init__(daemon=True)
        self.pipe, self.path, self.chunk, self.pause = pipe, path, chunk, pause
        self.fast = threading.Event()
        self.last_line = b""

    def run(self):
        with open(self.path, "wb", buffering=0) as sink:
            pending = b""
            while True:
                data = os.read(self.pipe.fileno(), self.chunk if not self.fast.is_set() else 1 << 20)
                if not data:
                    break
                sink.write(data)
                pending = (pending + data)[-4096:]
                lines = pending.split(b"\n")
                if len(lines) >= 2 and lines[-2]:
                    self.last_line = lines[-2]
                if not self.fast.is_set():
                    time.sleep(self.pause)


class Soak:
    def __init__(self, args):
        self.args = args
        self.herald = find_herald(args.herald)
        self.sanitizer = sanitizer(self.herald)
        self.sanitized = bool(self.sanitizer)
        self.rng = random.Random(args.seed)
        self.dir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="herald-soak-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.front = f"ipc://{self.dir}/front.ipc"
        self.back = f"ipc://{self.dir}/back.ipc"
        self.all: list[Incarnation] = []
        self.live: dict[tuple[str, int], Incarnation] = {}
        self.counts = {"publisher_kills": 0, "subscriber_kills": 0, "restarts": 0}
        self.crashes: list[str] = []
        self.failures: list[str] = []
        self.pending_restarts: list[tuple[float, str, int]] = []
        self.slow_reader: SlowReader | None = None
        self.progress = {}  # path -> (offset, {(publisher_id, name): highest name_seq}, partial line)
        self.run_id = f"{os.getpid()}-{int(time.time())}"
        self.rss_limit_kb = args.rss_limit_mb * 1024 * RSS_FACTOR[self.sanitizer]

    # ------------------------------------------------------------------ processes

    def spawn(self, role, slot, argv, stdout_path=None, pipe_stdout=False, **extra) -> Incarnation:
        index = sum(1 for i in self.all if i.role == role and i.slot == slot)
        err = self.dir / f"{role}{slot}-{index}.err"
        out = stdout_path
        stdout = subprocess.PIPE if pipe_stdout else (open(out, "wb") if out else subprocess.DEVNULL)
        with open(err, "wb") as err_file:
            proc = subprocess.Popen([self.herald, *argv], stdout=stdout, stderr=err_file, stdin=subprocess.DEVNULL)
        if out and not pipe_stdout:
            stdout.close()
        inc = Incarnation(role, slot, index, proc, out, err, started=time.monotonic(), **extra)
        self.all.append(inc)
        self.live[(role, slot)] = inc
        return inc

    def start_proxy(self):
        inc = self.spawn("proxy", 0, ["proxy", "--frontend", self.front, "--backend", self.back,
                                      "--hwm", str(self.args.proxy_hwm)])
        self.wait(lambda: "backend" in inc.err.read_text(errors="replace"), 30, "proxy did not start")

    def start_subscriber(self, slot):
        index = sum(1 for i in self.all if i.role == "subscriber" and i.slot == slot)
        out = self.dir / f"subscriber{slot}-{index}.jsonl"
        self.spawn("subscriber", slot, ["tail", "--connect", self.back, "soak.#"], stdout_path=out)

    def start_slow_subscriber(self):
        out = self.dir / "slow-subscriber0-0.jsonl"
        inc = self.spawn("slow-subscriber", 0, ["tail", "--connect", self.back, "soak.#"],
                         stdout_path=out, pipe_stdout=True)
        self.slow_reader = SlowReader(inc.proc.stdout, out, self.args.slow_chunk, self.args.slow_pause_ms / 1000)
        self.slow_reader.start()

    def start_publisher(self, slot, wait_subscribers):
        index = sum(1 for i in self.all if i.role == "publisher" and i.slot == slot)
        pid = f"soak-{self.run_id}-p{slot}-{index}"
        names = [f"soak.p{slot}.alpha", f"soak.p{slot}.beta"]
        payload = json.dumps({"publisher": slot, "incarnation": index, "pad": "p" * self.args.payload_bytes})
        self.spawn("publisher", slot,
                   ["publish", "--connect", self.front, "--publisher-id", pid,
                    "--wait-subscribers", str(wait_subscribers), "--wait-timeout-ms", "60000",
                    "--count", "1000000000", "--interval-ms", str(self.args.interval_ms), ",".join(names), payload],
                   publisher_id=pid, names=names)

    def kill(self, inc: Incarnation):
        inc.killed = True
        if inc.proc.poll() is None:
            inc.proc.send_signal(signal.SIGKILL)
        inc.rc = inc.proc.wait(30)
        inc.ended = time.monotonic()
        self.live.pop((inc.role, inc.slot), None)

    def stop(self, inc: Incarnation, sig=signal.SIGINT, timeout=60.0):
        if inc.proc.poll() is None:
            inc.proc.send_signal(sig)
        try:
            inc.rc = inc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.failures.append(f"{inc.label} did not exit within {timeout:.0f}s of {signal.Signals(sig).name}")
            inc.proc.kill()
            inc.rc = inc.proc.wait()
        inc.ended = time.monotonic()
        self.live.pop((inc.role, inc.slot), None)
        if inc.rc != 0:
            self.failures.append(f"{inc.label} exited {inc.rc} after {signal.Signals(sig).name}: {self.tail_of(inc)}")

    def tail_of(self, inc, n=600):
        try:
            return inc.err.read_text(errors="replace")[-n:].replace("\n", " | ")
        except OSError:
            return ""

    def wait(self, predicate, timeout, message):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.check_health()
            time.sleep(0.05)
        if predicate():
            return True
        raise SystemExit(f"soak: {message} within {timeout}s (work dir {self.dir})")

    def check_health(self):
        now = time.monotonic()
        for inc in list(self.live.values()):
            rss = rss_kb(inc.proc.pid)
            inc.max_rss_kb = max(inc.max_rss_kb, rss)
            if inc.proc.poll() is not None:
                inc.rc, inc.ended = inc.proc.returncode, now
                self.live.pop((inc.role, inc.slot), None)
                self.crashes.append(f"{inc.label} died on its own with status {inc.rc}: {self.tail_of(inc)}")

    # ------------------------------------------------------------------ the run

    def run(self):
        a = self.args
        print(f"soak: {a.duration}s, {a.publishers} publishers, {a.subscribers} subscribers + 1 slow, "
              f"seed {a.seed}, herald {self.herald}{' (sanitized)' if self.sanitized else ''}, dir {self.dir}",
              flush=True)
        t0 = time.monotonic()
        self.start_proxy()
        for slot in range(a.subscribers):
            self.start_subscriber(slot)
        self.start_slow_subscriber()
        for slot in range(a.publishers):
            self.start_publisher(slot, wait_subscribers=a.subscribers + 1)
        end_chaos = t0 + a.duration
        next_fault = time.monotonic() + self.rng.uniform(*a.fault_every)
        while time.monotonic() < end_chaos:
            self.check_health()
            now = time.monotonic()
            for item in [p for p in self.pending_restarts if p[0] <= now]:
                self.pending_restarts.remove(item)
                _, role, slot = item
                self.counts["restarts"] += 1
                if role == "publisher":
                    self.start_publisher(slot, wait_subscribers=1)
                else:
                    self.start_subscriber(slot)
            if now >= next_fault:
                self.inject()
                next_fault = now + self.rng.uniform(*a.fault_every)
            time.sleep(0.1)
        for _, role, slot in self.pending_restarts:  # bring every slot back for the end
            self.start_publisher(slot, 1) if role == "publisher" else self.start_subscriber(slot)
            self.counts["restarts"] += 1
        self.pending_restarts.clear()
        self.finish()
        return self.analyse(time.monotonic() - t0)

    def inject(self):
        down = {(r, s) for _, r, s in self.pending_restarts}
        if self.rng.random() < self.args.publisher_kill_share and ("publisher", 0) not in down:
            victim = self.live.get(("publisher", 0))
            role, delay = "publisher", self.rng.uniform(0.2, 1.0)
            self.counts["publisher_kills"] += 1
        else:
            slots = [s for s in range(self.args.subscribers) if ("subscriber", s) not in down]
            if not slots:
                return
            slot = self.rng.choice(slots)
            victim = self.live.get(("subscriber", slot))
            role, delay = "subscriber", self.rng.uniform(0.2, 1.5)
            self.counts["subscriber_kills"] += 1
        if victim is None:
            return
        self.kill(victim)
        self.pending_restarts.append((time.monotonic() + delay, role, victim.slot))

    def last_seqs(self, path: Path) -> dict:
        """(publisher_id, name) -> highest name_seq in the file so far (read incrementally)."""
        offset, seen, rest = self.progress.get(path, (0, {}, b""))
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            return seen
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()  # an incomplete last line waits for the next read
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            key = (e["publisher_id"], e["event_name"])
            seen[key] = max(seen.get(key, 0), e["name_seq"])
        self.progress[path] = (offset + len(chunk), seen, rest)
        return seen

    def finish(self):
        a = self.args
        # 1. The slow subscriber catches up while publishing goes on (no drop at the very end,
        #    where a sequence number could not reveal it).
        self.slow_reader.fast.set()
        slow = self.live.get(("slow-subscriber", 0))
        ref = self.dir / f"subscriber0-{max(i.index for i in self.all if i.role == 'subscriber' and i.slot == 0)}.jsonl"

        def caught_up():
            fast, slow_seen = self.last_seqs(ref), self.last_seqs(slow.out)
            return bool(fast) and all(slow_seen.get(k, 0) >= v - 50 for k, v in fast.items()
                                      if any(k[0] == i.publisher_id for i in self.live.values()))
        if slow:
            self.wait(caught_up, a.drain_timeout, "the slow subscriber did not catch up")
        # 2. Publishers stop gracefully and report what they sent.
        publishers = [i for i in self.live.values() if i.role == "publisher"]
        for inc in publishers:
            inc.proc.send_signal(signal.SIGINT)  # all at once, then collect them
        for inc in publishers:
            self.stop(inc, signal.SIGINT)
        for inc in self.all:
            if inc.role == "publisher" and not inc.killed and inc.rc == 0:
                summary = self.summary_of(inc)
                inc.sent_per_name = summary["published"] // len(inc.names) if summary else None
                if summary and (summary.get("send_errors") or summary.get("oversized")):
                    self.failures.append(f"{inc.label}: send errors {summary}")
        # 3. Every live subscriber receives up to the last event of every graceful publisher.
        targets = {(i.publisher_id, n): i.sent_per_name for i in self.all
                   if i.role == "publisher" and getattr(i, "sent_per_name", None)
                   for n in i.names}
        subs = [i for i in self.live.values() if i.role in ("subscriber", "slow-subscriber")]

        def drained():
            return all(all(self.last_seqs(s.out).get(k, 0) >= v for k, v in targets.items()
                           if self.covers(s, k[0])) for s in subs)
        try:
            self.wait(drained, a.drain_timeout, "subscribers did not receive the publishers' last events")
        except SystemExit as e:
            missing = [f"{s.label} {k[0]} {k[1]}: {self.last_seqs(s.out).get(k, 0)} of {v}"
                       for s in subs for k, v in targets.items()
                       if self.covers(s, k[0]) and self.last_seqs(s.out).get(k, 0) < v]
            self.failures.append(f"{e}: {missing[:6]}")
        for inc in subs:
            self.stop(inc, signal.SIGINT)
        if self.slow_reader:
            self.slow_reader.join(30)
        proxy = self.live.get(("proxy", 0))
        if proxy:
            self.stop(proxy, signal.SIGTERM)

    def covers(self, sub: Incarnation, publisher_id: str) -> bool:
        """The subscriber was alive before the publisher incarnation started."""
        pub = next(i for i in self.all if i.publisher_id == publisher_id)
        return sub.started < pub.started

    def summary_of(self, inc):
        try:
            for line in reversed(inc.err.read_text(errors="replace").splitlines()):
                if line.startswith("{"):
                    return json.loads(line)
        except (OSError, ValueError):
            pass
        return None

    # ------------------------------------------------------------------ checks

    def analyse(self, elapsed):
        pubs = {i.publisher_id: i for i in self.all if i.role == "publisher"}
        totals = {"received": 0, "initial_gaps": 0, "inner_gaps": 0, "torn_lines": 0, "lines": 0}
        inner_by_role = {"subscriber": 0, "slow-subscriber": 0}
        # slot -> publisher_id -> name -> list of (first, last) per incarnation
        ranges = {}
        for sub in [i for i in self.all if i.role in ("subscriber", "slow-subscriber")]:
            streams = {}
            data = sub.out.read_bytes() if sub.out and sub.out.exists() else b""
            lines = data.split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            elif lines:
                # A line cut by kill -9 while tail was writing it (herald only promises whole
                # lines for the audit file). Never acceptable after a graceful stop.
                totals["torn_lines"] += 1
                if not sub.killed:
                    self.failures.append(f"{sub.label}: torn last line after a graceful stop")
                lines.pop()
            for line in lines:
                e = json.loads(line)
                streams.setdefault((e["publisher_id"], e["event_name"]), []).append(e["name_seq"])
            totals["lines"] += len(lines)
            computed = {}
            for (pid, name), seqs in streams.items():
                if pid not in pubs:
                    self.failures.append(f"{sub.label}: events from an unknown publisher {pid}")
                    continue
                if any(b <= a for a, b in zip(seqs, seqs[1:])):
                    self.failures.append(f"{sub.label}: {pid} {name} not strictly increasing (duplicate or reordered)")
                    continue
                first, last = seqs[0], seqs[-1]
                inner = last - first + 1 - len(seqs)
                totals["received"] += len(seqs)
                totals["initial_gaps"] += first - 1
                totals["inner_gaps"] += inner
                inner_by_role[sub.role] += inner
                if sub.role == "subscriber" and inner:
                    self.failures.append(f"{sub.label}: lost {inner} events of {pid} {name} while connected")
                c = computed.setdefault(pid, {"received": 0, "gaps": 0})
                c["received"] += len(seqs)
                c["gaps"] += first - 1 + inner
                ranges.setdefault((sub.role, sub.slot), {}).setdefault((pid, name), []).append((first, last, len(seqs)))
                # sent == received + gaps, for a graceful publisher the subscriber saw whole.
                sent = getattr(pubs[pid], "sent_per_name", None)
                if sent is not None and not sub.killed and self.covers(sub, pid) and \
                        len(seqs) + (first - 1) + inner != sent:
                    self.failures.append(f"{sub.label}: {pid} {name}: sent {sent} != received {len(seqs)} "
                                         f"+ gaps {first - 1 + inner}")
            # herald's own gap accounting agrees with the sequence numbers it printed.
            if not sub.killed:
                summary = self.summary_of(sub)
                if summary is None:
                    self.failures.append(f"{sub.label}: no summary after a graceful stop")
                else:
                    for pid, c in computed.items():
                        mine = summary["publishers"].get(pid)
                        if mine is None or mine["received"] != c["received"] or mine["gaps"] != c["gaps"]:
                            self.failures.append(f"{sub.label}: herald counted {mine} for {pid}, lines say {c}")
                    if summary["rejected"] or summary["duplicates"] or summary["out_of_order"]:
                        self.failures.append(f"{sub.label}: rejected/duplicates/out_of_order in {summary}")
        # Across a slot's incarnations: ranges in order, no overlap (nothing received twice).
        # Per (publisher incarnation, name) and subscriber slot: sent == received + missed before
        # the slot's first incarnation joined + missed while it was down + lost while connected.
        missed_while_down = missed_before_joining = pairs_checked = 0
        for (role, slot), per_stream in ranges.items():
            for (pid, name), rs in per_stream.items():
                down = 0
                for (f1, l1, _), (f2, l2, _) in zip(rs, rs[1:]):
                    if f2 <= l1:
                        self.failures.append(f"{role}{slot}: incarnations overlap on {pid} {name}")
                    down += f2 - l1 - 1
                before = rs[0][0] - 1
                received = sum(c for _, _, c in rs)
                lost = sum(l - f + 1 - c for f, l, c in rs)
                missed_while_down += down
                missed_before_joining += before
                sent = getattr(pubs[pid], "sent_per_name", None)
                final = [i for i in self.all if i.role == role and i.slot == slot][-1]
                if sent is not None and not final.killed:
                    pairs_checked += 1
                    if received + before + down + lost != sent:
                        self.failures.append(f"{role}{slot} {pid} {name}: sent {sent} != received {received} + "
                                             f"before {before} + while down {down} + lost {lost}")
        sent_exact = sum(i.sent_per_name * len(i.names) for i in pubs.values()
                         if getattr(i, "sent_per_name", None) is not None)
        killed_pubs = [i for i in pubs.values() if i.killed]
        highest = {}
        for per_stream in ranges.values():
            for key, rs in per_stream.items():
                highest[key] = max([highest.get(key, 0)] + [last for _, last, _ in rs])
        sent_killed_at_least = sum(highest.get((inc.publisher_id, name), 0)
                                   for inc in killed_pubs for name in inc.names)
        for inc in self.all:
            if inc.role in ("proxy", "subscriber", "slow-subscriber") and inc.max_rss_kb > self.rss_limit_kb:
                self.failures.append(f"{inc.label}: RSS {inc.max_rss_kb // 1024} MiB over the "
                                     f"{self.rss_limit_kb // 1024} MiB bound")
        proxy = next(i for i in self.all if i.role == "proxy")
        proxy_counters = self.summary_of(proxy)
        max_rss = {}
        for inc in self.all:
            max_rss[inc.role] = max(max_rss.get(inc.role, 0), inc.max_rss_kb)
        result = {
            "duration_s": round(elapsed, 1),
            "seed": self.args.seed,
            "publisher_incarnations": len(pubs),
            "subscriber_incarnations": sum(i.role == "subscriber" for i in self.all),
            "kills": {"publisher": self.counts["publisher_kills"], "subscriber": self.counts["subscriber_kills"]},
            "restarts": self.counts["restarts"],
            "events_sent_exact": sent_exact,
            "events_sent_by_killed_publishers_at_least": sent_killed_at_least,
            "events_received": totals["received"],
            "missed_before_joining": missed_before_joining,
            "pairs_checked_exactly": pairs_checked,
            "publisher_unrouted": sum((self.summary_of(i) or {}).get("unrouted", 0) for i in pubs.values() if not i.killed),
            "inner_gaps_normal_subscribers": inner_by_role["subscriber"],
            "inner_gaps_slow_subscriber": inner_by_role["slow-subscriber"],
            "missed_while_down": missed_while_down,
            "torn_lines_after_kill": totals["torn_lines"],
            "crashes": self.crashes,
            "max_rss_mib": {k: round(v / 1024, 1) for k, v in max_rss.items()},
            "rss_bound_mib": self.rss_limit_kb // 1024,
            "proxy": proxy_counters,
            "failures": self.failures + self.crashes,
            "ok": not (self.failures or self.crashes),
        }
        return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=180, help="seconds of publishing with faults (default 180)")
    p.add_argument("--publishers", type=int, default=3)
    p.add_argument("--subscribers", type=int, default=3, help="normal subscribers (plus one slow one)")
    p.add_argument("--interval-ms", type=int, default=5, help="pause between a publisher's rounds (2 events)")
    p.add_argument("--payload-bytes", type=int, default=64)
    p.add_argument("--proxy-hwm", type=int, default=1000,
                   help="the proxy's high-water mark: small, so that the slow subscriber overflows soon")
    p.add_argument("--slow-chunk", type=int, default=4096, help="bytes the slow reader takes at a time")
    p.add_argument("--slow-pause-ms", type=float, default=40)
    p.add_argument("--fault-every", type=float, nargs=2, default=(1.5, 4.0), metavar=("MIN", "MAX"),
                   help="seconds between injected faults")
    p.add_argument("--publisher-kill-share", type=float, default=0.3)
    p.add_argument("--rss-limit-mb", type=int, default=128, help="bound for proxy and subscribers (x4 under ASan, x12 under TSan)")
    p.add_argument("--drain-timeout", type=float, default=120)
    p.add_argument("--seed", type=int, default=int(os.environ.get("HERALD_SOAK_SEED", "7")))
    p.add_argument("--herald", help="herald binary (default: $HERALD_BIN, $HERALD_BUILD_DIR/herald, build/herald)")
    p.add_argument("--workdir", help="keep files here (default: a temporary directory, removed if all passed)")
    p.add_argument("--json", help="also write the summary as JSON to this file")
    args = p.parse_args()

    soak = Soak(args)
    try:
        result = soak.run()
    finally:
        for inc in soak.all:
            if inc.proc.poll() is None:
                inc.proc.kill()
                inc.proc.wait()
    print(f"soak: {'OK' if result['ok'] else 'FAILED'} after {result['duration_s']} s (seed {result['seed']})")
    print(f"  events sent: {result['events_sent_exact']} by graceful publishers, >= "
          f"{result['events_sent_by_killed_publishers_at_least']} by killed ones")
    print(f"  events received: {result['events_received']} over {result['subscriber_incarnations']} subscriber "
          f"incarnations + the slow one")
    print(f"  not received: {result['missed_before_joining']} sent before a subscriber slot first saw that "
          f"publisher, {result['missed_while_down']} while a subscriber was down (kill -9 to restart), lost while "
          f"connected: {result['inner_gaps_normal_subscribers']} (normal subscribers), "
          f"{result['inner_gaps_slow_subscriber']} (slow subscriber, all counted as gaps by herald)")
    print(f"  exact: sent == received + gaps for {result['pairs_checked_exactly']} (publisher, name, subscriber) "
          f"streams of gracefully stopped publishers; publishers' events with no subscriber yet: "
          f"{result['publisher_unrouted']}")
    print(f"  kills: {result['kills']['subscriber']} subscribers, {result['kills']['publisher']} publisher; "
          f"{result['restarts']} restarts; torn tail lines after kill -9: {result['torn_lines_after_kill']}")
    print(f"  max RSS (MiB): {result['max_rss_mib']} (bound {result['rss_bound_mib']})")
    if result["proxy"]:
        print(f"  proxy: {result['proxy']}")
    for f in result["failures"]:
        print(f"  FAIL: {f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if result["ok"] and not args.workdir:
        shutil.rmtree(soak.dir, ignore_errors=True)
    elif not result["ok"]:
        print(f"  files kept in {soak.dir}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
