"""How long a node takes to answer `GET /api/v1/eval?expr=baseline(…, 4W)` for a series with
4 weeks of 1-minute values in its last-values cache, end to end over HTTP (keep-alive).

    cargo build --release && python3 benches/eval_baseline.py [target/release/perfpipe]

Starts the node on a free loopback port in a temporary directory, posts 29 days of 1-minute
points, waits until they are written, then times 500 evaluations and prints min / median /
p99 / max. The node is stopped with SIGTERM and the directory removed.
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from bench_node import post_results, running_node, wait_until_written  # noqa: E402

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/perfpipe"
directory = tempfile.mkdtemp(prefix="perfpipe-eval-")
config = (
    '[enqueuer]\nmax_batch_age = "200ms"\n'
    '[[last_values]]\nmatch = "bench/*"\noffset = 5\nperiod = "W"\n'
    '[[last_values]]\nmatch = "*"\nmaxcount = 500\n'
)
try:
    with running_node(binary, directory, config) as connection:
        now = int(time.time()) // 60 * 60
        times = list(range(now - 29 * 86400, now + 1, 60))
        for start in range(0, len(times), 5000):
            body = "".join(f"{t}||bench||svc||OK||m={t % 997}\n" for t in times[start : start + 5000])
            post_results(connection, body)
        wait_until_written(connection, len(times))
        path = "/api/v1/eval?expr=baseline(bench-svc-m%2C%204W)"
        durations = []
        for _ in range(500):
            started = time.perf_counter()
            connection.request("GET", path)
            answer = json.loads(connection.getresponse().read())
            durations.append(time.perf_counter() - started)
            assert answer.get("value") is not None, answer
        durations.sort()
        ms = lambda seconds: f"{seconds * 1000:.3f} ms"
        print(
            f"baseline(…, 4W) over {len(times)} values: min {ms(durations[0])}, "
            f"median {ms(statistics.median(durations))}, p99 {ms(durations[int(len(durations) * 0.99)])}, "
            f"max {ms(durations[-1])} (value {answer['value']})"
        )
finally:
    shutil.rmtree(directory, ignore_errors=True)
