#!/usr/bin/python3
"""Writes scenario S7's input: N step completions as JSON Lines, about 190 bytes each.

    /usr/bin/python3 bench/s7_make_input.py OUT.jsonl [N=300000]

Deterministic (seeded): 95% succeed, 5% fail permanently; every line names the step
`process_payment` of bench/s7_config.json, so each completion publishes exactly one event.
"""
import argparse
import json
import random
import uuid


def main():
    ap = argparse.ArgumentParser(description="Writes scenario S7's input (JSON Lines step completions).")
    ap.add_argument("out", help="the JSON Lines file to write")
    ap.add_argument("n", type=int, nargs="?", default=300_000, help="how many completions (default 300000)")
    args = ap.parse_args()
    if args.n < 0:
        ap.error(f"n must be >= 0, got {args.n}")
    out, n = args.out, args.n
    rng = random.Random(7)
    with open(out, "w") as f:
        for i in range(n):
            ok = rng.random() < 0.95
            c = {
                "task_uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "step_name": "process_payment",
                "namespace": "payments",
                "correlation_id": f"order-{i:08d}",
                "success": ok,
                "result": {"amount": rng.randint(100, 99_999), "currency": "EUR"},
            }
            if not ok:
                c["error"] = "card declined"
            f.write(json.dumps(c, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
