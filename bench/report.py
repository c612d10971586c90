#!/usr/bin/python3
"""Reads the raw benchmark outputs of scripts/bench.sh and writes the issue 6 report.

    /usr/bin/python3 bench/report.py RAW_DIR OUT_DIR

RAW_DIR holds bench_inline.json, bench_pipeline.json, bench_fanout.json (Google Benchmark JSON,
repetitions with aggregates), bench_memory.jsonl (one JSON object per run) and optionally
zmq_scenario4.json (bench/zmq_scenario4/: every repetition of scenario 4) and optionally
s7.json (bench/s7_bench.py: scenario S7, `herald run` end to end against a naive script). Writes
OUT_DIR/latest.json, OUT_DIR/latest.md and, when matplotlib imports,
OUT_DIR/events_vs_subscribers.png and OUT_DIR/latency_percentiles.png. Every figure is a median
over the repetitions; the spread is the coefficient of variation (stddev / mean) over the same
repetitions; every goal is a ratio of figures measured in the same run.
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


S4_SYSTEMS = (("raw", "raw bytes (bare cppzmq, pre-encoded)"),
              ("json", "hand-rolled JSON (cppzmq + nlohmann::json)"),
              ("herald", "herald ZmqPublisher -> ZmqSubscriber"),
              ("json_proxy", "hand-rolled JSON via a bare libzmq proxy"),
              ("herald_proxy", "herald via `herald proxy`"))
S4_PERCENTILES = ("p50_us", "p90_us", "p99_us", "p999_us")


def spread(values):
    """stddev / mean of a list (None with fewer than two values or a zero mean)."""
    if len(values) < 2 or not statistics.mean(values):
        return None
    return statistics.stdev(values) / statistics.mean(values)


def fmt_payload(n):
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


def scenario4(doc):
    """Scenario 4 medians, spreads and paired ratios from zmq_scenario4.json."""
    s4 = {"repetitions": doc.get("repetitions"), "wall_seconds": doc.get("wall_seconds"),
          "window_mb": doc.get("window_mb"), "loadavg_start": doc.get("loadavg_start"),
          "loadavg_end": doc.get("loadavg_end"), "throughput": [], "latency": []}
    groups = {}
    for r in doc.get("throughput", []):
        groups.setdefault((r["transport"], r["payload_bytes"]), {}).setdefault(r["system"], []).append(r)
    for (transport, payload), systems in groups.items():
        entry = {"transport": transport, "payload_bytes": payload, "systems": {}, "ratios": {}}
        for name, runs in systems.items():
            rates = [x.get("events_per_s", 0.0) for x in runs]
            # CPU time of every process involved (sender, receiver, proxy) per delivered event.
            cpu = [1e6 * (x.get("cpu_seconds", 0.0) + x.get("sender", {}).get("cpu_seconds", 0.0) +
                          max(0.0, x.get("proxy_cpu_seconds", 0.0))) / x["received"]
                   for x in runs if x.get("received") and "cpu_seconds" in x]
            entry["systems"][name] = {
                "events_per_s_median": statistics.median(rates), "cv": spread(rates),
                "min": min(rates), "max": max(rates), "runs": len(runs),
                "cpu_us_per_event_median": statistics.median(cpu) if cpu else None,
                "cpu_us_per_event_cv": spread(cpu),
                "lost_events": sum(max(0, x.get("expected", 0) - x.get("received", 0)) for x in runs)}
        # Paired ratios: repetition i of one system against repetition i of the other (they ran
        # back to back), then the median over repetitions.
        def paired(a, b):
            ra = {x["rep"]: x.get("events_per_s", 0.0) for x in systems.get(a, [])}
            rb = {x["rep"]: x.get("events_per_s", 0.0) for x in systems.get(b, [])}
            vals = [ra[k] / rb[k] for k in ra if k in rb and rb[k]]
            return (statistics.median(vals), min(vals), max(vals)) if vals else (None, None, None)
        for a, b in (("herald", "json"), ("herald", "raw"), ("herald_proxy", "json_proxy"),
                     ("herald_proxy", "json"), ("herald_proxy", "raw"), ("json", "raw"),
                     ("json_proxy", "json")):
            med, lo, hi = paired(a, b)
            entry["ratios"][f"{a}/{b}"] = {"median": med, "min": lo, "max": hi}
        s4["throughput"].append(entry)
    lgroups = {}
    for r in doc.get("latency", []):
        lgroups.setdefault((r["transport"], r["payload_bytes"]), {}).setdefault(r["system"], []).append(r)
    for (transport, payload), systems in lgroups.items():
        entry = {"transport": transport, "payload_bytes": payload, "systems": {}}
        for name, runs in systems.items():
            e = {"rate": runs[0].get("rate"), "runs": len(runs),
                 "samples_per_run": statistics.median([x.get("samples", 0) for x in runs])}
            for c in S4_PERCENTILES + ("max_us",):
                vals = [x.get(c, 0.0) for x in runs]
                e[c] = statistics.median(vals)
                e[c + "_cv"] = spread(vals)
            entry["systems"][name] = e
        s4["latency"].append(entry)
    return s4


def scenario4_lines(s4):
    """The scenario 4 section of latest.md."""
    lines = ["", "## Scenario 4: ZeroMQ PUB -> SUB across processes", "",
             f"Publisher and subscriber are separate processes (`bench/zmq_scenario4`), the proxy "
             f"path runs the real `herald proxy` between them, and its baseline the hand-rolled "
             f"JSON sender and receiver through a bare libzmq proxy (`zmq::proxy`, XSUB -> XPUB) "
             f"in a process of its own. Throughput: events/s at the "
             f"receiver, first to last message, {s4['repetitions']} repetitions (systems "
             f"interleaved); the sender keeps at most ~{s4['window_mb']} MB (<= 4000 events) in "
             f"flight, acknowledged by the receiver over a side channel, the same for every "
             f"system. Ratios are paired per repetition, then the median. Scenario 4 took "
             f"{s4['wall_seconds']:.0f} s; load average {s4['loadavg_start']} at its start, "
             f"{s4['loadavg_end']} at its end (sender, receiver and proxy share the machine's CPUs: "
             f"absolute figures are noisy, the paired ratios less so).", "",
             "| transport | payload | raw bytes | hand-rolled JSON | herald | JSON via bare proxy | "
             "herald via proxy | herald / JSON | herald / raw | proxy: herald / JSON | "
             "herald via proxy / direct JSON |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in s4["throughput"]:
        cells = []
        for name, _ in S4_SYSTEMS:
            x = e["systems"].get(name)
            if not x:
                cells.append("n/a")
                continue
            lost = f", lost {x['lost_events']}" if x["lost_events"] else ""
            cells.append(f"{fmt_rate(x['events_per_s_median'])} {fmt_cv(x['cv'])}{lost}")
        ratios = []
        for key in ("herald/json", "herald/raw", "herald_proxy/json_proxy", "herald_proxy/json"):
            r = e["ratios"][key]
            ratios.append("n/a" if r["median"] is None else f"{r['median']:.2f}")
        lines.append(f"| {e['transport']} | {fmt_payload(e['payload_bytes'])} | " +
                     " | ".join(cells + ratios) + " |")
    lines += ["", "CPU time per delivered event, all processes of the run together (sender, receiver "
              "and proxy; user + system, every thread), median µs: less sensitive to the shared "
              "machine's load than events/s.", "",
              "| transport | payload | raw bytes | hand-rolled JSON | herald | JSON via bare proxy | "
              "herald via proxy | herald / JSON |", "|---|---|---|---|---|---|---|---|"]
    for e in s4["throughput"]:
        cells = []
        for name, _ in S4_SYSTEMS:
            x = e["systems"].get(name)
            v = x.get("cpu_us_per_event_median") if x else None
            cells.append("n/a" if v is None else f"{v:.1f} {fmt_cv(x['cpu_us_per_event_cv'])}")
        h = e["systems"].get("herald", {}).get("cpu_us_per_event_median")
        j = e["systems"].get("json", {}).get("cpu_us_per_event_median")
        cells.append(f"{h / j:.2f}" if h and j else "n/a")
        lines.append(f"| {e['transport']} | {fmt_payload(e['payload_bytes'])} | " + " | ".join(cells) + " |")
    lines += ["", "Latency, one way (publisher starts building the event -> subscriber has the "
              "decoded payload; CLOCK_MONOTONIC stamped in the payload), every system paced at the "
              "same rate, 5k/s or half the slowest system's saturating rate when that is lower. Medians of "
              "the per-repetition percentiles (first 10% of each run discarded as warm-up):", "",
              "| transport | payload | system | rate | p50 µs | p90 µs | p99 µs | p99.9 µs | p99 spread |",
              "|---|---|---|---|---|---|---|---|---|"]
    for e in s4["latency"]:
        for name, label in S4_SYSTEMS:
            x = e["systems"].get(name)
            if not x:
                continue
            lines.append(f"| {e['transport']} | {fmt_payload(e['payload_bytes'])} | {label} | "
                         f"{fmt_rate(x['rate'])} | {x['p50_us']:.0f} | {x['p90_us']:.0f} | "
                         f"{x['p99_us']:.0f} | {x['p999_us']:.0f} | {fmt_cv(x['p99_us_cv'])} |")
    return lines


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
             for n in (0, 10, 100, 1000)] + \
            [("Boost.Signals2, 1 slot, process with threads", "BM_Signals2_Threaded", 1),
             ("herald inline, 0 non-matching, process with threads", "BM_HeraldInline_Threaded", 0)]:
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
    # The rows above run in a single-threaded process (glibc, libstdc++ and herald then skip
    # atomic read-modify-writes); a worker process has threads: the same goal there.
    h0t = s1["herald inline, 0 non-matching, process with threads"]["ns_per_event"]
    sigt = s1["Boost.Signals2, 1 slot, process with threads"]["ns_per_event"]
    if h0t and sigt:
        r = sigt / h0t
        goal("S1 same, in a process with threads", r, ">= 1.0", r >= 1.0,
             f"{r:.2f}x ({h0t:.1f} ns vs {sigt:.1f} ns)")
    if h0 and h1000:
        r = h1000 / h0
        goal("S1 cost with 1000 non-matching / cost with 0", r, "<= 1.2", r <= 1.2,
             f"{r:.2f}x ({h1000:.1f} ns vs {h0:.1f} ns)")

    # ---- Scenario 2: fan-out on the dispatcher pool ----
    s2 = {"throughput": {}, "latency": {}}
    spin_label = "herald idle_spin=50µs"
    for n in (1, 4, 16):
        hr, hcv = stat(find(fanout, "BM_HeraldThroughput", n), "items_per_second")
        sr, scv = stat(find(fanout, "BM_HeraldSpinThroughput", n), "items_per_second")
        qr, qcv = stat(find(fanout, "BM_QueueThroughput", n), "items_per_second")
        s2["throughput"][str(n)] = {"herald_delivered_per_s": hr, "herald_cv": hcv,
                                    "herald_spin_delivered_per_s": sr, "herald_spin_cv": scv,
                                    "queue_delivered_per_s": qr, "queue_cv": qcv}
        rows.append(("2 fan-out (pool)", f"herald, {n} subscriber(s), delivered", fmt_rate(hr), fmt_cv(hcv)))
        if sr:
            rows.append(("2 fan-out (pool)", f"{spin_label}, {n} subscriber(s), delivered",
                         fmt_rate(sr), fmt_cv(scv)))
        rows.append(("2 fan-out (pool)", f"mutex+condvar queue, {n} consumer thread(s), delivered",
                     fmt_rate(qr), fmt_cv(qcv)))
        if hr and qr:
            r = hr / qr
            goal(f"S2 herald / queue delivered events/s, {n} subscriber(s)", r, ">= 0.5", r >= 0.5,
                 f"{r:.2f}x")
        if sr and qr:
            r = sr / qr
            goal(f"S2 {spin_label} / queue delivered events/s, {n} subscriber(s)", r, ">= 0.5",
                 r >= 0.5, f"{r:.2f}x")
    for sysname, prefix in (("herald", "BM_HeraldLatency"), ("herald_spin", "BM_HeraldSpinLatency"),
                            ("queue", "BM_QueueLatency")):
        for n in (1, 4):
            aggs = find(fanout, prefix, n)
            entry = {}
            for c in ("p50_us", "p90_us", "p99_us", "p999_us", "paced_events_per_s"):
                entry[c], entry[c + "_cv"] = stat(aggs, c)
            s2["latency"][f"{sysname}_{n}"] = entry
            if entry["p50_us"] is not None:
                shown = spin_label if sysname == "herald_spin" else sysname
                rows.append(("2 latency @ half saturating rate",
                             f"{shown}, {n} subscriber(s), paced at {fmt_rate(entry['paced_events_per_s'])}",
                             f"p50 {entry['p50_us']:.1f} µs / p90 {entry['p90_us']:.1f} / "
                             f"p99 {entry['p99_us']:.1f} / p99.9 {entry['p999_us']:.1f}",
                             fmt_cv(entry["p99_us_cv"]) + " (p99)"))
    hl = s2["latency"].get("herald_1", {})
    if hl.get("p99_us") is not None:
        goal("S2 herald p99 publish-to-handler latency, 1 subscriber, half saturating rate",
             hl["p99_us"], "< 50 µs", hl["p99_us"] < 50, f"{hl['p99_us']:.1f} µs")
    sl = s2["latency"].get("herald_spin_1", {})
    if sl.get("p99_us") is not None:
        goal(f"S2 {spin_label} p99 publish-to-handler latency, 1 subscriber, half its saturating rate",
             sl["p99_us"], "< 50 µs", sl["p99_us"] < 50, f"{sl['p99_us']:.1f} µs")
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

    # ---- Scenario 4: ZeroMQ across processes ----
    s4 = None
    zpath = os.path.join(raw, "zmq_scenario4.json")
    if os.path.exists(zpath):
        with open(zpath) as f:
            s4 = scenario4(json.load(f))
        result["scenarios"]["4_zmq"] = s4
        for e in s4["throughput"]:
            where = f"{e['transport']}, payload {fmt_payload(e['payload_bytes'])}"
            # Direct against direct; the proxy path against the same JSON through a bare proxy
            # (its ratio to direct JSON reported beside it).
            for system, base, label in (("herald", "json", "herald / hand-rolled JSON"),
                                        ("herald_proxy", "json_proxy",
                                         "herald via herald proxy / hand-rolled JSON via bare proxy")):
                r, raw_r = e["ratios"].get(f"{system}/{base}"), e["ratios"][f"{system}/raw"]
                if not r or r["median"] is None:
                    continue
                h = e["systems"][system]["events_per_s_median"]
                j = e["systems"][base]["events_per_s_median"]
                extra = ""
                if system == "herald_proxy" and e["ratios"]["herald_proxy/json"]["median"] is not None:
                    extra = f"; {e['ratios']['herald_proxy/json']['median']:.2f} of direct JSON"
                goal(f"S4 {label} events/s, {where}", r["median"], ">= 1.0",
                     r["median"] >= 1.0,
                     f"{r['median']:.2f}x (reps {r['min']:.2f}-{r['max']:.2f}; {fmt_rate(h)} vs "
                     f"{fmt_rate(j)}); {raw_r['median']:.2f} of raw bytes{extra}")

    # ---- Scenario S7: herald run end to end (issue 16) ----
    s7 = None
    s7path = os.path.join(raw, "s7.json")
    if os.path.exists(s7path):
        with open(s7path) as f:
            s7 = json.load(f)
        result["scenarios"]["7_run"] = s7
        summary, ratios = s7["summary"], s7["ratios"]
        naive_rate = summary["naive"]["completions_per_s"]["median"]
        for variant, label, target in (("file", "herald run --steps FILE", 5.0),
                                       ("listen", "herald run --listen (sender process)", 3.0),
                                       ("inline", "herald run --steps FILE, inline_dispatch", None),
                                       ("one_dispatcher", "herald run --steps FILE, 1 dispatcher thread", None)):
            if variant not in ratios:
                continue
            x, r = summary[variant], ratios[variant]
            goal(f"S7 {label} / naive Python script, throughput", r["median"],
                 f">= {target:.0f}x" if target else "(reported)",
                 (r["median"] >= target) if target else None,
                 f"{r['median']:.2f}x (reps {min(r['all']):.2f}-{max(r['all']):.2f}; "
                 f"{fmt_rate(x['completions_per_s']['median'])} vs {fmt_rate(naive_rate)})")
            if variant == "file":
                v = x["voluntary_ctx_per_completion"]["median"]
                goal("S7 voluntary context switches per completion (herald run --steps FILE)", v,
                     "<= 0.05", v <= 0.05, f"{v:.3f}")
            for key, name, unit in (("completions_per_s", "completions/s", ""),
                                    ("cpu_us_per_completion", "CPU per completion", " µs"),
                                    ("voluntary_ctx_per_completion",
                                     "voluntary context switches per completion", ""),
                                    ("max_rss_kib", "peak RSS", " MiB")):
                med, cv = x[key]["median"], x[key]["cv"]
                text = (fmt_rate(med) if key == "completions_per_s" else
                        f"{med / 1024:.1f}{unit}" if key == "max_rss_kib" else
                        f"{med:.2f}{unit}" if key == "cpu_us_per_completion" else f"{med:.3f}")
                rows.append(("S7 " + variant, name, text, fmt_cv(cv)))
        n = summary["naive"]
        rows.append(("S7 naive script", "completions/s", fmt_rate(n["completions_per_s"]["median"]),
                     fmt_cv(n["completions_per_s"]["cv"])))
        rows.append(("S7 naive script", "CPU per completion",
                     f"{n['cpu_us_per_completion']['median']:.2f} µs",
                     fmt_cv(n["cpu_us_per_completion"]["cv"])))
        rows.append(("S7 naive script", "peak RSS", f"{n['max_rss_kib']['median'] / 1024:.1f} MiB",
                     fmt_cv(n["max_rss_kib"]["cv"])))

    # ---- The durable road (issue 14): durable.jsonl, one object per scenario and repetition ----
    dpath = os.path.join(raw, "durable.jsonl")
    if os.path.exists(dpath):
        by = {}
        with open(dpath) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    row = json.loads(line)
                    by.setdefault(row["scenario"], []).append(row)
        if by:
            med = lambda sc, key: statistics.median(r[key] for r in by[sc]) if sc in by else None
            durable = {sc: rows_ for sc, rows_ in by.items()}
            result["scenarios"]["durable"] = durable
            copy_multi = med("ratios", "copy_vs_multirow")
            copy_single = med("ratios", "copy_vs_single")
            reps_d = len(by.get("ratios", []))
            if copy_multi is not None:
                goal("durable publish (COPY batches) / plain libpq, one multi-row INSERT per batch", copy_multi,
                     ">= 0.8x", copy_multi >= 0.8, f"{copy_multi:.2f}x ({reps_d} reps)")
            if copy_single is not None:
                goal("durable publish / plain libpq, one INSERT per event", copy_single,
                     ">= 10x", copy_single >= 10, f"{copy_single:.0f}x ({reps_d} reps)")
            for sc, key, label in (("publish_copy", "events_per_s", "publish, COPY batches (events/s)"),
                                   ("publish_insert", "events_per_s", "publish, multi-row INSERT (events/s)"),
                                   ("baseline_multirow", "events_per_s", "plain libpq multi-row INSERT (events/s)"),
                                   ("baseline_single", "events_per_s", "plain libpq INSERT per event (events/s)"),
                                   ("consume_1_group", "events_per_s_per_group", "consume, 1 group (events/s)"),
                                   ("consume_4_groups", "events_per_s_per_group", "consume, 4 groups (events/s per group)")):
                v = med(sc, key)
                if v is not None:
                    rows.append(("durable", label, fmt_rate(v), ""))
            for key, label in (("p50_us", "latency publish -> handler, p50"), ("p99_us", "latency p99")):
                v = med("latency", key)
                if v is not None:
                    rows.append(("durable", label, f"{v / 1000:.2f} ms", ""))

    result["goals"] = goals

    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=False)
        f.write("\n")

    m = result["machine"]
    lines = ["# herald benchmarks (issue 6)", "",
             f"Generated {result['generated_at']} by `scripts/bench.sh` on {m['nproc']} CPU(s), "
             f"{m['cpu_model']}, Linux {m['kernel']} (load average at report time {m['loadavg_at_report']}, "
             "the benchmarks' own processes included"
             + (f"; {os.environ['HERALD_BENCH_NOTE']}" if os.environ.get("HERALD_BENCH_NOTE") else "")
             + "). Every figure is the median of 5 repetitions; "
             "spread is stddev/mean over them; every goal is a ratio within this run.", "",
             "## Goals", "", "| goal | measured | target | result |", "|---|---|---|---|"]
    for g in goals:
        res = "info" if g["pass"] is None else ("PASS" if g["pass"] else "MISS")
        lines.append(f"| {g['goal']} | {g['text']} | {g['target']} | {res} |")
    lines += ["", "## Measurements", "", "| scenario | measurement | median | spread |",
              "|---|---|---|---|"]
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    if s4:
        lines += scenario4_lines(s4)
    if s7:
        lines += ["", "## Scenario S7: `herald run` end to end", "",
                  f"{s7['lines']:,} step completions ({s7['input_bytes'] / s7['lines']:.0f} B each, "
                  "bench/s7_make_input.py) from a JSON Lines file to an audit and a metrics "
                  "subscriber (bench/s7_config.json), against bench/s7_naive.py doing the same work "
                  "on the same file (json.loads, an event dict with uuid4 and timestamp, json.dumps "
                  "to an audit file, a count by name). `listen`: the completions arrive over "
                  "ZeroMQ PUSH from bench/s7_sender (its CPU and switches are added). `inline`: "
                  "the same run with `inline_dispatch`; `one_dispatcher`: with "
                  "`dispatcher_threads: 1`. Wall time, CPU, context switches and peak "
                  f"RSS from wait4(2); {s7['reps']} repetitions, naive and herald back to back in "
                  "each, ratios paired per repetition, then the median; every audit trail checked "
                  "(one line per completion)."]
    if "durable" in result["scenarios"] and plot_durable(result["scenarios"]["durable"], out):
        lines += ["", "![the durable road](durable.png)"]
    if plot(result, out):
        lines += ["", "![events/s vs subscribers](events_vs_subscribers.png)"]
    if s4 and plot_latency(result, out):
        lines += ["", "![latency percentiles, in-process and ZeroMQ](latency_percentiles.png)"]
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
    if all(s2[str(n)].get("herald_spin_delivered_per_s") for n in ns):
        b.plot(ns, [s2[str(n)]["herald_spin_delivered_per_s"] for n in ns], "^-.",
               label="herald, idle_spin=50µs")
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


def plot_durable(durable, out, path="durable.png"):
    """The durable road (issue 14): publish throughput against the plain libpq programs,
    consumption per group, and publish -> handler latency, one point per repetition."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.5))
    bars = [("publish_copy", "events_per_s", "herald COPY"),
            ("publish_insert", "events_per_s", "herald multi-row\nINSERT"),
            ("baseline_multirow", "events_per_s", "libpq multi-row\nINSERT"),
            ("baseline_single", "events_per_s", "libpq INSERT\nper event")]
    for i, (sc, key, label) in enumerate(bars):
        ys = [r[key] for r in durable.get(sc, [])]
        if ys:
            a.bar(i, statistics.median(ys), color="tab:blue" if sc.startswith("publish") else "tab:gray")
            a.plot([i] * len(ys), ys, "k.", markersize=4)
    a.set_xticks(range(len(bars)), [b_[2] for b_ in bars], fontsize=8)
    a.set_yscale("log")
    a.set_ylabel("events/s (fsync on)")
    a.set_title("durable publish vs plain libpq")
    groups = [("consume_1_group", "1 group"), ("consume_4_groups", "4 groups (per group)")]
    for i, (sc, label) in enumerate(groups):
        ys = [r["events_per_s_per_group"] for r in durable.get(sc, [])]
        if ys:
            b.bar(i, statistics.median(ys), color="tab:green")
            b.plot([i] * len(ys), ys, "k.", markersize=4)
    b.set_xticks(range(len(groups)), [g[1] for g in groups])
    b.set_ylabel("events/s per group")
    b.set_title("consume (one stream)")
    lat = durable.get("latency", [])
    if lat:
        c.plot(range(1, len(lat) + 1), [r["p50_us"] / 1000 for r in lat], "o-", label="p50")
        c.plot(range(1, len(lat) + 1), [r["p99_us"] / 1000 for r in lat], "s--", label="p99")
        c.set_xlabel("repetition")
        c.set_ylabel("ms")
        c.legend(fontsize=8)
    c.set_title("publish -> handler (LISTEN/NOTIFY)")
    fig.suptitle("herald durable road, PostgreSQL 15, fsync on")
    fig.tight_layout()
    fig.savefig(os.path.join(out, path), dpi=100)
    return True


def plot_latency(result, out):
    """Latency distribution (p50/p90/p99/p99.9): in-process (scenario 2) and ZeroMQ (scenario 4)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    s4 = result["scenarios"].get("4_zmq")
    if not s4 or not s4["latency"]:
        return False
    inproc = result["scenarios"].get("2_fanout", {}).get("latency", {})
    transports = sorted({e["transport"] for e in s4["latency"]})
    payloads = sorted({e["payload_bytes"] for e in s4["latency"]})
    fig, axes = plt.subplots(len(transports), len(payloads), figsize=(5 * len(payloads), 4 * len(transports)),
                             squeeze=False, sharey=True)
    xs = list(range(len(S4_PERCENTILES)))
    labels = ["p50", "p90", "p99", "p99.9"]
    styles = {"raw": ("o-", "tab:gray"), "json": ("s-", "tab:orange"), "herald": ("^-", "tab:blue"),
              "json_proxy": ("D--", "tab:brown"), "herald_proxy": ("v--", "tab:cyan")}
    for row, transport in enumerate(transports):
        for col, payload in enumerate(payloads):
            ax = axes[row][col]
            entry = next((e for e in s4["latency"]
                          if e["transport"] == transport and e["payload_bytes"] == payload), None)
            rate = None
            for name, label in S4_SYSTEMS:
                x = entry["systems"].get(name) if entry else None
                if not x:
                    continue
                rate = x["rate"]
                style, color = styles[name]
                ax.plot(xs, [x[c] for c in S4_PERCENTILES], style, color=color, label=label)
            for key, label, style in (("herald_1", "in-process herald, 1 subscriber (S2)", "k-"),
                                      ("herald_spin_1", "in-process herald idle_spin=50µs (S2)", "k-."),
                                      ("queue_1", "in-process mutex+condvar queue (S2)", "k:")):
                x = inproc.get(key)
                if x and x.get("p50_us") is not None:
                    paced = x.get("paced_events_per_s")
                    ax.plot(xs, [x[c] for c in S4_PERCENTILES], style,
                            label=f"{label} @ {fmt_rate(paced)}" if paced else label)
            ax.set_yscale("log")
            ax.set_xticks(xs, labels)
            ax.set_title(f"{transport}, payload {fmt_payload(payload)}"
                         + (f", ZeroMQ paced at {fmt_rate(rate)}" if rate else ""), fontsize=9)
            if col == 0:
                ax.set_ylabel("latency (µs, log)")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Latency percentiles, medians of {s4['repetitions']} repetitions "
                 f"({result['machine']['nproc']} CPU(s), shared machine)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency_percentiles.png"), dpi=100)
    plt.close(fig)
    return True


if __name__ == "__main__":
    main()
