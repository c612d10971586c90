#!/usr/bin/python3
"""Scenario S7 (issue 16): `herald run` end to end against a naive Python script.

    /usr/bin/python3 bench/s7_bench.py --herald build-bench/herald --sender build-bench/bench/s7_sender \
        [--lines 300000] [--reps 5] [--work DIR] [--out s7.json] [--variants file,listen,inline,one_dispatcher]

Every repetition runs, on the same input file (bench/s7_make_input.py: 300,000 completions of
about 200 bytes, made once):
  naive   bench/s7_naive.py STEPS AUDIT (json.loads, an event dict with uuid4 and timestamp,
          json.dumps to the audit file, a count by name);
  file    herald run --config bench/s7_config.json --steps STEPS (audit + metrics subscribers,
          both with overflow "block": like the script, every event is audited and counted; the
          hosted default, drop_oldest, may drop events of an audit that falls 10,000 behind);
  listen  herald run --listen ipc://... fed by bench/s7_sender (another process, PUSH): the wall
          time runs from the sender's start to the moment the audit trail holds every event;
  inline  `file` with "inline_dispatch": true (handlers on the intake thread), for comparison;
  one_dispatcher  `file` with "dispatcher_threads": 1 (on this 2-core machine the reader and
          the intake thread take the cores already; a second dispatcher mostly sleeps, and the
          bus wakes it for nearly every event of the fast metrics subscriber), for comparison.
Each process is measured with wait4(2): wall time, user+system CPU, voluntary and involuntary
context switches, peak RSS (the sender's figures are added to the listen run's CPU and switches).
Every run's audit trail is checked: one line per completion. The ratios (naive wall / herald
wall) are taken per repetition, then the median; figures are medians over the repetitions.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_measured(argv, cwd, stdin=None):
    """(wall seconds, rusage, exit status) of one process."""
    start = time.monotonic()
    p = subprocess.Popen(argv, cwd=cwd, stdin=stdin, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {p.returncode}: {err[-2000:]}")
    return wall, usage


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                return n
            n += block.count(b"\n")


def figures(wall, usages, lines):
    cpu = sum(u.ru_utime + u.ru_stime for u in usages)
    return {
        "wall_s": wall,
        "completions_per_s": lines / wall,
        "cpu_s": cpu,
        "cpu_us_per_completion": cpu / lines * 1e6,
        "voluntary_ctx": sum(u.ru_nvcsw for u in usages),
        "voluntary_ctx_per_completion": sum(u.ru_nvcsw for u in usages) / lines,
        "involuntary_ctx": sum(u.ru_nivcsw for u in usages),
        "max_rss_kib": max(u.ru_maxrss for u in usages),
        "max_rss_kib_herald": usages[0].ru_maxrss,
    }


def write_config(folder, inline=False, dispatchers=None):
    with open(os.path.join(HERE, "s7_config.json")) as f:
        config = json.load(f)
    if inline:
        config["worker"]["inline_dispatch"] = True
    if dispatchers:
        config["worker"]["dispatcher_threads"] = dispatchers
    path = os.path.join(folder, "herald.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def fresh(folder):
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def run_naive(work, steps, lines):
    folder = fresh(os.path.join(work, "naive"))
    audit = os.path.join(folder, "audit.jsonl")
    wall, usage = run_measured([sys.executable, os.path.join(HERE, "s7_naive.py"), steps, audit],
                               folder)
    assert count_lines(audit) == lines, "naive: audit line count"
    os.remove(audit)  # ~130 MB per run
    return figures(wall, [usage], lines)


def run_file(herald, work, steps, lines, inline=False, dispatchers=None):
    folder = fresh(os.path.join(work, "inline" if inline else f"file{dispatchers or ''}"))
    config = write_config(folder, inline, dispatchers)
    wall, usage = run_measured([herald, "run", "-q", "--config", config, "--steps", steps], folder)
    got = count_lines(os.path.join(folder, "audit.jsonl"))
    assert got == lines, f"herald: {got} audit lines, expected {lines}"
    os.remove(os.path.join(folder, "audit.jsonl"))
    return figures(wall, [usage], lines)


def run_listen(herald, sender, work, steps, lines):
    folder = fresh(os.path.join(work, "listen"))
    config = write_config(folder, False)
    endpoint = f"ipc://{folder}/intake.ipc"
    audit = os.path.join(folder, "audit.jsonl")
    server = subprocess.Popen([herald, "run", "-q", "--config", config, "--listen", endpoint],
                              cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not os.path.exists(endpoint[len("ipc://"):]):  # bound: the worker is running
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError("herald run --listen did not bind: " + server.stderr.read().decode())
        time.sleep(0.005)
    start = time.monotonic()
    snd = subprocess.Popen([sender, endpoint, steps], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    # Count the audit trail's lines as it grows (only the new bytes each time).
    seen, offset, sender_usage = 0, 0, None
    deadline = time.monotonic() + 300
    while seen < lines:
        if sender_usage is None:
            pid, status, usage = os.wait4(snd.pid, os.WNOHANG)
            if pid:
                sender_usage = usage
                snd.returncode = os.waitstatus_to_exitcode(status)
        if os.path.exists(audit):
            with open(audit, "rb") as f:
                f.seek(offset)
                block = f.read()
            offset += len(block)
            seen += block.count(b"\n")
        if seen >= lines:
            break
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            snd.kill()
            raise RuntimeError(f"listen: {seen} of {lines} audited")
        time.sleep(0.002)
    wall = time.monotonic() - start
    if sender_usage is None:
        _, status, sender_usage = os.wait4(snd.pid, 0)
    server.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(server.pid, 0)
    server.stderr.close()
    assert count_lines(audit) == lines
    os.remove(audit)
    return figures(wall, [usage, sender_usage], lines)


def summarize(runs):
    keys = runs[0].keys()
    out = {}
    for k in keys:
        values = [r[k] for r in runs]
        mean = statistics.mean(values)
        out[k] = {"median": statistics.median(values),
                  "cv": (statistics.pstdev(values) / mean) if mean else 0.0}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--herald", required=True)
    ap.add_argument("--sender")
    ap.add_argument("--lines", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--work", default="/tmp/herald-s7")
    ap.add_argument("--out")
    ap.add_argument("--variants", default="file,listen,inline,one_dispatcher")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    known = ("file", "listen", "inline", "one_dispatcher")
    unknown = [v for v in variants if v not in known]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}: expected some of {', '.join(known)}")
    if "listen" in variants and not args.sender:
        ap.error("--sender is needed for the listen variant")
    herald = os.path.abspath(args.herald)
    sender = os.path.abspath(args.sender) if args.sender else None
    work = os.path.abspath(args.work)  # the runs' working folders differ from ours
    args.work = work
    os.makedirs(work, exist_ok=True)
    steps = os.path.join(args.work, f"steps-{args.lines}.jsonl")
    if not os.path.exists(steps):
        subprocess.run([sys.executable, os.path.join(HERE, "s7_make_input.py"), steps,
                        str(args.lines)], check=True)

    reps = {v: [] for v in ["naive"] + variants}
    for rep in range(args.reps):
        reps["naive"].append(run_naive(args.work, steps, args.lines))
        for v in variants:
            if v == "file":
                reps[v].append(run_file(herald, args.work, steps, args.lines))
            elif v == "inline":
                reps[v].append(run_file(herald, args.work, steps, args.lines, inline=True))
            elif v == "one_dispatcher":
                reps[v].append(run_file(herald, args.work, steps, args.lines, dispatchers=1))
            elif v == "listen":
                reps[v].append(run_listen(herald, sender, args.work, steps, args.lines))
        line = ", ".join(f"{v} {reps[v][-1]['wall_s']:.3f} s" for v in reps)
        print(f"s7 rep {rep + 1}/{args.reps}: {line}", file=sys.stderr)

    result = {"lines": args.lines, "input_bytes": os.path.getsize(steps), "reps": args.reps,
              "runs": reps, "summary": {v: summarize(r) for v, r in reps.items()}, "ratios": {}}
    for v in variants:
        ratios = [n["wall_s"] / h["wall_s"] for n, h in zip(reps["naive"], reps[v])]
        result["ratios"][v] = {"median": statistics.median(ratios), "all": ratios}
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    for v in variants:
        s = result["summary"][v]
        print(f"s7 {v}: {result['ratios'][v]['median']:.2f}x naive, "
              f"{s['completions_per_s']['median']:,.0f} completions/s, "
              f"{s['cpu_us_per_completion']['median']:.2f} us CPU each, "
              f"{s['voluntary_ctx_per_completion']['median']:.3f} voluntary switches each, "
              f"peak RSS {s['max_rss_kib']['median'] / 1024:.1f} MiB", file=sys.stderr)
    s = result["summary"]["naive"]
    print(f"s7 naive: {s['completions_per_s']['median']:,.0f} completions/s, "
          f"{s['cpu_us_per_completion']['median']:.2f} us CPU each, "
          f"peak RSS {s['max_rss_kib']['median'] / 1024:.1f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
