#!/usr/bin/python3
"""Reads the raw benchmark outputs of scripts/bench.sh and writes the issue 6 report.

    /usr/bin/python3 bench/report.py RAW_DIR OUT_DIR

RAW_DIR holds bench_inline.json, bench_pipeline.json, bench_fanout.json (Google Benchmark JSON,
repetitions with aggregates), bench_memory.jsonl (one JSON object per run) and optionally
zmq_throughput.md. Writes OUT_DIR/latest.json, OUT_DIR/latest.md and, when matplotlib imports,
OUT_DIR/events_vs_subscribers.png. Every figure is a median over the repetitions; the spread is
the coefficient of variation (stddev / mean) over the same repetitions; every goal is a ratio of
figures measured in the same run.
"""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys


def load_gbench(path):
    """{run_name: {"median": {...}, "mean": {...}, "stddev": {...}}} plus the context."""
    if not os.path.exists(path):
        return {}, {}
    with open(path) as f:
        doc = json.load(f)
    runs = {}
    for b in doc.get("benchmarks", []):
        if b.get("run_type") != "aggregate":
            continue
        runs.setdefault(b["run_name"], {})[b["aggregate_name"]] = b
    return runs, doc.get("context", {})


def find(runs, prefix, arg):
    """The run whose name is prefix/arg[/modifiers...]."""
    for name, aggs in runs.items():
        parts = name.split("/")
        if parts[0] == prefix and (arg is None or (len(parts) > 1 and parts[1] == str(arg))):
            return aggs
    return None


def stat(aggs, field):
    """(median, cv) of a field over the repetitions; None when missing."""
    if not aggs or "median" not in aggs or field not in aggs["median"]:
        return None, None
    med = aggs["median"][field]
    mean = aggs.get("mean", {}).get(field)
    sd = aggs.get("stddev", {}).get(field)
    cv = (sd / mean) if (mean and sd is not None) else None
    return med, cv


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        cpus = str(os.cpu_count())
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {"cpu_model": model, "nproc": cpus, "kernel": platform.release(),
            "loadavg_at_report": load}


def fmt_rate(x):
    if x is None:
        return "n/a"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M/s"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k/s"
    return f"{x:.0f} /s"


def fmt_cv(cv):
    return "n/a" if cv is None else f"±{100 * cv:.1f}%"


def main():
    raw, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    inline, ctx = load_gbench(os.path.join(raw, "bench_inline.json"))
    pipeline, _ = load_gbench(os.path.join(raw, "bench_pipeline.json"))
    fanout, _ = load_gbench(os.path.join(raw, "bench_fanout.json"))

    result = {"generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "benchmark_library_build_type": ctx.get("library_build_type"),
              "scenarios": {}, "goals": []}
    rows = []  # (scenario, measurement, median, spread)
    goals = []  # (goal, value text, target text, pass bool or None)

    def goal(name, value, target, ok, text):
        goals.append({"goal": name, "value": value, "target": target,
                      "pass": ok, "text": text})

    # ---- Scenario 1: inline publish, cost per event (cpu time, ns) ----
    s1 = {}
    for label, prefix, arg in [("std::function (direct call)", "BM_DirectFunction", None),
                               ("Boost.Signals2, 1 slot", "BM_Signals2", 1)] + \
            [(f"herald inline, 1 match + {n} non-matching", "BM_HeraldInline", n)
             for n in (0, 10, 100, 1000)]:
        med, cv = stat(find(inline, prefix, arg), "cpu_time")
        s1[label] = {"ns_per_event": med, "cv": cv,
                     "events_per_s": (1e9 / med) if med else None}
        rows.append(("1 inline publish", label, f"{med:.1f} ns" if med else "n/a", fmt_cv(cv)))
    result["scenarios"]["1_inline_publish"] = s1
    h0 = s1["herald inline, 1 match + 0 non-matching"]["ns_per_event"]
    h1000 = s1["herald inline, 1 match + 1000 non-matching"]["ns_per_event"]
    sig = s1["Boost.Signals2, 1 slot"]["ns_per_event"]
    if h0 and sig:
        r = sig / h0
        goal("S1 herald (0 non-matching) speed vs Boost.Signals2 1 slot", r, ">= 1.0", r >= 1.0,
             f"{r:.2f}x ({h0:.1f} ns vs {sig:.1f} ns)")
    if h0 and h1000:
        r = h1000 / h0
        goal("S1 cost with 1000 non-matching / cost with 0", r, "<= 1.2", r <= 1.2,
             f"{r:.2f}x ({h1000:.1f} ns vs {h0:.1f} ns)")

    # ---- Scenario 2: fan-out on the dispatcher pool ----
    s2 = {"throughput": {}, "latency": {}}
    for n in (1, 4, 16):
        hr, hcv = stat(find(fanout, "BM_HeraldThroughput", n), "items_per_second")
        qr, qcv = stat(find(fanout, "BM_QueueThroughput", n), "items_per_second")
        s2["throughput"][str(n)] = {"herald_delivered_per_s": hr, "herald_cv": hcv,
                                    "queue_delivered_per_s": qr, "queue_cv": qcv}
        rows.append(("2 fan-out (pool)", f"herald, {n} subscriber(s), delivered", fmt_rate(hr), fmt_cv(hcv)))
        rows.append(("2 fan-out (pool)", f"mutex+condvar queue, {n} consumer thread(s), delivered",
                     fmt_rate(qr), fmt_cv(qcv)))
        if hr and qr:
            r = hr / qr
            goal(f"S2 herald / queue delivered events/s, {n} subscriber(s)", r, ">= 0.5", r >= 0.5,
                 f"{r:.2f}x")
    for sysname, prefix in (("herald", "BM_HeraldLatency"), ("queue", "BM_QueueLatency")):
        for n in (1, 4):
            aggs = find(fanout, prefix, n)
            entry = {}
            for c in ("p50_us", "p90_us", "p99_us", "p999_us", "paced_events_per_s"):
                entry[c], entry[c + "_cv"] = stat(aggs, c)
            s2["latency"][f"{sysname}_{n}"] = entry
            if entry["p50_us"] is not None:
                rows.append(("2 latency @ half saturating rate",
                             f"{sysname}, {n} subscriber(s), paced at {fmt_rate(entry['paced_events_per_s'])}",
                             f"p50 {entry['p50_us']:.1f} µs / p90 {entry['p90_us']:.1f} / "
                             f"p99 {entry['p99_us']:.1f} / p99.9 {entry['p999_us']:.1f}",
                             fmt_cv(entry["p99_us_cv"]) + " (p99)"))
    hl = s2["latency"].get("herald_1", {})
    if hl.get("p99_us") is not None:
        goal("S2 herald p99 publish-to-handler latency, 1 subscriber, half saturating rate",
             hl["p99_us"], "< 50 µs", hl["p99_us"] < 50, f"{hl['p99_us']:.1f} µs")
    result["scenarios"]["2_fanout"] = s2

    # ---- Scenario 3: pipeline ----
    s3 = {}
    for flag, label in ((0, "no schema"), (1, "schema check")):
        rate, cv = stat(find(pipeline, "BM_PipelinePublish", f"schema:{flag}"), "items_per_second")
        s3[label] = {"completions_per_s": rate, "cv": cv}
        rows.append(("3 step completion -> event", f"PublishingPipeline, {label}", fmt_rate(rate), fmt_cv(cv)))
    result["scenarios"]["3_pipeline"] = s3
    r = s3["no schema"]["completions_per_s"]
    if r:
        goal("S3 completions/s on one thread, no schema", r, ">= 500k/s", r >= 5e5, fmt_rate(r))

    # ---- Scenario 6: memory ----
    runs = []
    mpath = os.path.join(raw, "bench_memory.jsonl")
    if os.path.exists(mpath):
        with open(mpath) as f:
            runs = [json.loads(line) for line in f if line.strip()]
    if runs:
        peaks = [x["peak_minus_idle_mb"] for x in runs]
        drops_exact = all(x["dropped"] == x["expected_dropped"] for x in runs)
        rate = statistics.median(x["events_per_s"] for x in runs)
        s6 = {"runs": runs, "peak_minus_idle_mb_median": statistics.median(peaks),
              "peak_minus_idle_mb_max": max(peaks), "drops_exact_in_every_run": drops_exact,
              "publish_events_per_s_median": rate}
        result["scenarios"]["6_memory"] = s6
        rows.append(("6 memory", f"{runs[0]['events']:,} events -> paused drop_oldest cap "
                     f"{runs[0]['capacity']:,}: peak RSS - idle RSS",
                     f"{s6['peak_minus_idle_mb_median']:.1f} MB (max {max(peaks):.1f})",
                     f"{len(runs)} runs"))
        rows.append(("6 memory", "dropped (every run)",
                     ", ".join(str(x["dropped"]) for x in runs), f"expected {runs[0]['expected_dropped']}"))
        rows.append(("6 memory", "publish rate (event created per publish)", fmt_rate(rate), ""))
        goal("S6 peak RSS - idle RSS (worst run)", max(peaks), "< 64 MB", max(peaks) < 64,
             f"{max(peaks):.1f} MB")
        goal("S6 drop count exact in every run", drops_exact, f"== {runs[0]['expected_dropped']}",
             drops_exact, ", ".join(str(x["dropped"]) for x in runs))

    result["goals"] = goals
    zmq_md = None
    zpath = os.path.join(raw, "zmq_throughput.md")
    if os.path.exists(zpath):
        with open(zpath) as f:
            zmq_md = f.read().strip()
        result["scenarios"]["4_zmq_single_run_markdown"] = zmq_md

    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=False)
        f.write("\n")

    m = result["machine"]
    lines = ["# herald benchmarks (issue 6, in-process scenarios)", "",
             f"Generated {result['generated_at']} by `scripts/bench.sh` on {m['nproc']} CPU(s), "
             f"{m['cpu_model']}, Linux {m['kernel']} (load average at report time {m['loadavg_at_report']}; "
             "the machine was shared with a CI run). Every figure is the median of 5 repetitions; "
             "spread is stddev/mean over them; every goal is a ratio within this run.", "",
             "## Goals", "", "| goal | measured | target | result |", "|---|---|---|---|"]
    for g in goals:
        res = "PASS" if g["pass"] else "MISS"
        lines.append(f"| {g['goal']} | {g['text']} | {g['target']} | {res} |")
    lines += ["", "## Measurements", "", "| scenario | measurement | median | spread |",
              "|---|---|---|---|"]
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    if zmq_md:
        lines += ["", "## Scenario 4 (partial): existing `bench/zmq_throughput`, single run", "", zmq_md]
    if plot(result, out):
        lines += ["", "![events/s vs subscribers](events_vs_subscribers.png)"]
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(result, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    s1 = result["scenarios"]["1_inline_publish"]
    s2 = result["scenarios"]["2_fanout"]["throughput"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    xs = [0, 10, 100, 1000]
    ys = [s1[f"herald inline, 1 match + {n} non-matching"]["events_per_s"] for n in xs]
    xplot = [1 + n for n in xs]  # log axis: plot total subscribers (1 matching + n)
    a.plot(xplot, ys, "o-", label="herald inline (1 matching + n non-matching)")
    for label, style in (("Boost.Signals2, 1 slot", "--"), ("std::function (direct call)", ":")):
        v = s1[label]["events_per_s"]
        if v:
            a.axhline(v, linestyle=style, color="gray" if style == "--" else "black", label=label)
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("subscribers on the bus (1 matching)")
    a.set_ylabel("events/s (one thread)")
    a.set_title("Scenario 1: inline publish, non-matching subscribers")
    a.legend(fontsize=8)
    ns = [1, 4, 16]
    b.plot(ns, [s2[str(n)]["herald_delivered_per_s"] for n in ns], "o-", label="herald dispatcher pool")
    b.plot(ns, [s2[str(n)]["queue_delivered_per_s"] for n in ns], "s--",
           label="mutex+condvar queue, thread per subscriber")
    b.set_xscale("log", base=2)
    b.set_xticks(ns, [str(n) for n in ns])
    b.set_xlabel("matching subscribers")
    b.set_ylabel("delivered events/s")
    b.set_title("Scenario 2: fan-out")
    b.legend(fontsize=8)
    fig.suptitle(f"herald, {result['machine']['nproc']} CPU(s) {result['machine']['cpu_model']} (medians of 5)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "events_vs_subscribers.png"), dpi=100)
    return True


if __name__ == "__main__":
    main()
