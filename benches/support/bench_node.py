"""A perfpipe node for the Python bench scripts: started on a free loopback port with a
configuration of the caller's, answered on one keep-alive HTTP connection, stopped (SIGTERM)
at the end of the `with` block."""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time


@contextlib.contextmanager
def running_node(binary, directory, extra_config=""):
    """Yields an `http.client.HTTPConnection` to a node of `binary` whose data and config live
    in `directory`; `extra_config` is appended to its `listen` and `data_dir` lines."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = os.path.join(directory, "perfpipe.toml")
    with open(config, "w") as out:
        out.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{directory}/data"\n{extra_config}')
    node = subprocess.Popen([binary, "serve", "--config", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port)
                connection.request("GET", "/health")
                connection.getresponse().read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"{binary} did not answer on port {port}")
        yield connection
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)


def post_results(connection, body):
    """Posts results in the text format; fails unless the node took them all."""
    connection.request("POST", "/api/v1/write", body, {"Content-Type": "text/plain"})
    answer = connection.getresponse()
    text = answer.read()
    assert answer.status == 200, text


def wait_until_written(connection, points):
    """Waits until the node's first backend has written `points` points."""
    while True:
        connection.request("GET", "/status")
        if json.loads(connection.getresponse().read())["backends"][0]["written"] >= points:
            return
        time.sleep(0.05)
