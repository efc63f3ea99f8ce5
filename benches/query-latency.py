#!/usr/bin/env python3
"""Latency of small API reads on one node, one keep-alive connection, one request at a time:

    benches/query-latency.py [PERFPIPE_BINARY] [REQUESTS]   # default target/release/perfpipe, 2000

Starts the node on a free loopback port in a temporary directory (defaults otherwise, 200 ms
batch age), posts 10 results of one host, waits for them to be written, then times REQUESTS
requests each of /health (the HTTP floor), a one-series /api/v1/query and the host's metric
listing, and prints median, p90 and p99 in microseconds."""
import os, statistics, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from bench_node import post_results, running_node, wait_until_written  # noqa: E402

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/perfpipe"
requests = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
with tempfile.TemporaryDirectory() as directory, \
        running_node(binary, directory, '[enqueuer]\nmax_batch_age = "200ms"\n') as connection:
    start = int(time.time()) - 600
    body = "".join(f"{start + i * 60}||web||http||OK||time={i}ms size={i * 100}B\n" for i in range(10))
    post_results(connection, body)
    wait_until_written(connection, 20)
    for path in ("/health", "/api/v1/query?hsm=web::http::time&start=-1h",
                 "/api/v1/hosts/web/metrics"):
        latencies = []
        for _ in range(requests):
            began = time.perf_counter()
            connection.request("GET", path)
            answer = connection.getresponse()
            answer.read()
            latencies.append((time.perf_counter() - began) * 1e6)
            assert answer.status == 200, path
        latencies.sort()
        print(f"{path:45} median {statistics.median(latencies):6.0f} us, "
              f"p90 {latencies[len(latencies) * 9 // 10]:6.0f} us, "
              f"p99 {latencies[len(latencies) * 99 // 100]:6.0f} us")
