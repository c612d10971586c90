#!/usr/bin/python3
"""Writes scenario S7's input: N step completions as JSON Lines, about 190 bytes each.

    /usr/bin/python3 bench/s7_make_input.py OUT.jsonl [N=300000]

Deterministic (seeded): 95% succeed, 5% fail permanently; every line names the step
`process_payment` of bench/s7_config.json, so each completion publishes exactly one event.
"""
import json
import random
import sys
import uuid


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300_000
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
