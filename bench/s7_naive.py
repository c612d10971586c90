#!/usr/bin/python3
"""Scenario S7's baseline: the naive Python script that does herald run's job on a JSON Lines
file (issue 16): json.loads each line, build an event dict with a uuid4 and a timestamp,
json.dumps it to an audit file, count by event name.

    /usr/bin/python3 bench/s7_naive.py STEPS.jsonl AUDIT.jsonl
"""
import collections
import datetime
import json
import sys
import uuid

counts = collections.Counter()
with open(sys.argv[1]) as steps, open(sys.argv[2], "a") as audit:
    for line in steps:
        c = json.loads(line)
        name = "payment.processed" if c["success"] else "payment.failed"
        event = {"event_id": str(uuid.uuid4()), "event_name": name,
                 "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                 "payload": c.get("result", {}),
                 "metadata": {"step_name": c["step_name"], "namespace": c.get("namespace", ""),
                              "correlation_id": c.get("correlation_id", "")}}
        audit.write(json.dumps(event) + "\n")
        counts[name] += 1
print(dict(counts), file=sys.stderr)
