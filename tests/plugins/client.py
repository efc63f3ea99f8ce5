"""A plugin's view of perfpipe's cache manager and state manager.

The client below sends exactly what Opsview's plugin library (plugnpy's CacheManagerClient and
StateManagerClient) sends: geventhttpclient, the path without a leading slash, a JSON body,
`Content-Type: application/json` and a `Referer` holding the host. Each scenario asserts what a
plugin relies on; the Rust test `tests/plugin_cache.rs` starts the nodes and runs them:

    python3 tests/plugins/client.py SCENARIO HOST:PORT [HOST:PORT ...] [-- ARGS]

Exit status 0 when every assertion held; otherwise the failed assertion is printed.
"""

import base64
import json
import os
import sys
import time

import gevent
import gevent.monkey

gevent.monkey.patch_all()

from geventhttpclient import HTTPClient  # noqa: E402


class Refused(Exception):
    """A status outside 200-299, with the body the server gave."""

    def __init__(self, status, body):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class Client:
    """One plugin's connection, as plugnpy makes it."""

    def __init__(self, address, namespace, network_timeout=30, tls=None):
        """`tls`: geventhttpclient's ssl_options (ca_certs, certfile, keyfile) for HTTPS."""
        host, port = address.rsplit(":", 1)
        self.namespace = namespace
        self.headers = {"Referer": host, "Content-Type": "application/json"}
        self.http = HTTPClient(
            host,
            int(port),
            concurrency=1,
            connection_timeout=30,
            network_timeout=network_timeout,
            ssl=tls is not None,
            ssl_options=tls,
        )

    def _send(self, method, path, data=None):
        if data is not None:
            response = method(path, body=json.dumps(data), headers=self.headers)
        else:
            response = method(path, headers=self.headers)
        raw = response.read()
        if not 200 <= response.status_code <= 299:
            raise Refused(response.status_code, raw.decode("utf-8", "replace"))
        return json.loads(raw) if raw else None

    def get_data(self, key, max_wait_time=30):
        body = {"namespace": self.namespace, "key": key, "max_wait_time": max_wait_time}
        return self._send(self.http.post, "get_data", body)

    def set_data(self, key, data, ttl=900):
        body = {"namespace": self.namespace, "key": key, "data": data, "ttl": ttl}
        return self._send(self.http.post, "set_data", body)

    def status(self):
        return self._send(self.http.get, "status")

    def store_data(self, key, data, ttl, timestamp=None):
        body = {
            "namespace": self.namespace,
            "key": key,
            "data": data,
            "ttl": ttl,
            "timestamp": timestamp or time.time(),
        }
        return self._send(self.http.post, "store_data", body)

    def fetch_data(self, key):
        try:
            return self._send(self.http.post, "fetch_data", {"namespace": self.namespace, "key": key})["data"]
        except Refused as refused:
            if refused.status == 404:
                return None
            raise

    def close(self):
        self.http.close()


def refused(call, *args, **kwargs):
    """The Refused a call must raise."""
    try:
        call(*args, **kwargs)
    except Refused as error:
        return error
    raise AssertionError(f"{call.__name__}{args} was accepted")


def scenario_basics(nodes, args):
    client = Client(nodes[0], "basics")
    unicode_data = json.dumps({"name": "Zürich ☃ 東京", "quote": "\"'\\", "nul": "a\u0000b"})
    client.set_data("k1", unicode_data, ttl=60)
    answer = client.get_data("k1", max_wait_time=0)
    assert answer == {"data": unicode_data, "lock": False}, answer
    one_mb = "x" * (1 << 20)
    client.set_data("big", one_mb, ttl=60)
    assert client.get_data("big", max_wait_time=0)["data"] == one_mb
    # A plain read of a missing item never locks.
    assert client.get_data("missing", max_wait_time=0) == {"data": None, "lock": False}
    # Namespaces are separate.
    assert Client(nodes[0], "other").get_data("k1", max_wait_time=0)["data"] is None
    # '|' is refused, naming the field.
    error = refused(Client(nodes[0], "a|b").set_data, "k", "d")
    assert error.status == 400 and "namespace" in error.body, error
    error = refused(client.get_data, "x|y")
    assert error.status == 400 and "key" in error.body, error
    error = refused(client.set_data, "k", "d", ttl=0)
    assert error.status == 400 and "ttl" in error.body, error
    # max_item_size (the test's config: 2MB).
    limit = int(args[0])
    client.set_data("at-limit", "y" * limit, ttl=60)
    error = refused(client.set_data, "over-limit", "y" * (limit + 1), ttl=60)
    assert error.status == 413 and str(limit) in error.body, error
    assert client.get_data("over-limit", max_wait_time=0)["data"] is None
    # A malformed body names what is wrong.
    response = client.http.post("set_data", body='{"namespace": "n"}', headers=client.headers)
    body = response.read().decode()
    assert response.status_code == 400 and "key" in body, (response.status_code, body)
    status = client.status()
    assert isinstance(status["ref"], str) and len(status["ref"]) == 36, status
    assert isinstance(status["uptime"], int), status
    assert status["cache_items"] == 3, status
    assert isinstance(status["available_peer_refs"], list), status
    assert isinstance(status["peers"], list), status


def scenario_ttl(nodes, args):
    client = Client(nodes[0], "ttl")
    client.set_data("short", "data", ttl=1)
    assert client.get_data("short", max_wait_time=0)["data"] == "data"
    time.sleep(1.3)
    # Expired, although the purge (every 60 s in the test's config) has not run.
    assert client.get_data("short", max_wait_time=0)["data"] is None


def scenario_lock(nodes, args):
    """50 concurrent askers for one missing item, spread over the given nodes: one computes."""
    key = "lock-" + args[0]
    answers = {}

    def ask(i):
        client = Client(nodes[i % len(nodes)], "lock")
        answers[i] = (client.get_data(key, max_wait_time=10), time.monotonic())
        if answers[i][0]["lock"]:
            gevent.sleep(0.5)
            set_at[0] = time.monotonic()
            client.set_data(key, "computed", ttl=60)

    set_at = [None]
    askers = [gevent.spawn(ask, i) for i in range(50)]
    gevent.joinall(askers, timeout=20, raise_error=True)
    assert len(answers) == 50, len(answers)
    holders = [i for i, (answer, _) in answers.items() if answer["lock"]]
    assert len(holders) == 1, f"lock holders: {holders}"
    waits = []
    for i, (answer, at) in answers.items():
        if i in holders:
            continue
        assert answer == {"data": "computed", "lock": False}, (i, answer)
        waits.append(at - set_at[0])
    slowest = max(waits)
    assert slowest < 0.1, f"a waiter was answered {slowest:.3f} s after the set"
    print(f"lock: 1 holder, 49 answered at most {slowest * 1000:.1f} ms after the set")


def scenario_lock_expiry(nodes, args):
    """A holder that never sets: the lock passes to the next waiter after its max_wait_time."""
    holder = Client(nodes[0], "expiry")
    first = holder.get_data("k", max_wait_time=1)
    assert first == {"data": None, "lock": True}, first
    started = time.monotonic()
    second = Client(nodes[0], "expiry").get_data("k", max_wait_time=5)
    waited = time.monotonic() - started
    assert second == {"data": None, "lock": True}, second
    assert 0.8 < waited < 2.0, f"the lock passed after {waited:.2f} s"


def scenario_state(nodes, args):
    client = Client(nodes[0], "state")
    now = time.time()
    data = json.dumps({"counter": 41, "text": "état ✓"})
    client.store_data("k", data, ttl=3600, timestamp=now)
    assert client.fetch_data("k") == data
    # An older timestamp is a conflict; the stored item stays.
    error = refused(client.store_data, "k", "older", ttl=3600, timestamp=now - 10)
    assert error.status == 409 and "conflict" in error.body, error
    assert client.fetch_data("k") == data
    # Equal timestamps: the later arrival wins.
    client.store_data("k", "same-time", ttl=3600, timestamp=now)
    assert client.fetch_data("k") == "same-time"
    # TTL counts from the item's timestamp: an hour-old item with a minute's TTL is gone.
    client.store_data("old", "stale", ttl=60, timestamp=now - 3600)
    assert client.fetch_data("old") is None
    assert client.fetch_data("never-stored") is None
    # Item size: 16KB (16,000 bytes) is the default limit.
    client.store_data("at-limit", "z" * 16000, ttl=3600)
    error = refused(client.store_data, "too-big", "z" * 16001, ttl=3600)
    assert error.status == 413, error
    # The 1025th item is refused with 507; nothing is evicted.
    live = 2  # k and at-limit
    for i in range(1024 - live):
        client.store_data(f"fill-{i}", "f", ttl=3600)
    error = refused(client.store_data, "one-too-many", "f", ttl=3600)
    assert error.status == 507 and "1024" in error.body, error
    assert client.fetch_data("fill-0") == "f"
    client.store_data("k", "replacing is allowed", ttl=3600)


def scenario_store(nodes, args):
    Client(nodes[0], "restart").store_data(args[0], args[1], ttl=3600)


def scenario_fetch(nodes, args):
    for node in nodes:
        got = Client(node, "restart").fetch_data(args[0])
        assert got == args[1], (node, got)


def scenario_set(nodes, args):
    Client(nodes[0], args[0]).set_data(args[1], args[2], ttl=int(args[3]))


def scenario_get(nodes, args):
    """Reads an item through every node given; each must answer within the timeout given.
    An expected data of "" means no item."""
    expected = args[2] or None
    for node in nodes:
        started = time.monotonic()
        got = Client(node, args[0], network_timeout=10).get_data(args[1], max_wait_time=0)
        took = time.monotonic() - started
        assert got["data"] == expected, (node, got)
        assert took < float(args[3]), f"{node} took {took:.2f} s"


def seal(key_hex, namespace, at):
    """A namespace token made independently of perfpipe, from the format alone."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    plain = json.dumps({"ns": namespace, "ts": at}).encode()
    sealed = AESGCM(bytes.fromhex(key_hex)).encrypt(nonce, plain, None)
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def scenario_tokens(nodes, args):
    minted_a, key_hex = args[0], args[1]
    a = Client(nodes[0], minted_a)
    a.set_data("secret", "for a only", ttl=60)
    assert a.get_data("secret", max_wait_time=0)["data"] == "for a only"
    # A token made from the format by another implementation works the same.
    assert Client(nodes[0], seal(key_hex, "a", time.time())).get_data("secret", 0)["data"] == "for a only"
    # A token for namespace b cannot read a's item.
    b = Client(nodes[0], seal(key_hex, "b", time.time()))
    assert b.get_data("secret", max_wait_time=0)["data"] is None
    # A plain namespace name is not a token.
    tampered = minted_a[:-4] + ("AAAA" if not minted_a.endswith("AAAA") else "BBBB")
    for bad in ["a", seal(key_hex, "a", time.time() - 3600), tampered, "!!garbage!!"]:
        error = refused(Client(nodes[0], bad).get_data, "secret", 0)
        assert error.status == 403, (bad, error)
        error = refused(Client(nodes[0], bad).fetch_data, "secret")
        assert error.status == 403, (bad, error)


def scenario_tls(nodes, args):
    """Over HTTPS: a client with a certificate of the node's client CA works; one whose
    certificate another CA signed is refused in the handshake."""
    ca, cert, key, foreign_cert, foreign_key = args
    trusted = Client(nodes[0], "tls", tls={"ca_certs": ca, "certfile": cert, "keyfile": key})
    trusted.set_data("k", "över TLS", ttl=60)
    assert trusted.get_data("k", max_wait_time=0)["data"] == "över TLS"
    assert isinstance(trusted.status()["ref"], str)
    foreign = Client(
        nodes[0], "tls", tls={"ca_certs": ca, "certfile": foreign_cert, "keyfile": foreign_key}
    )
    try:
        foreign.get_data("k", max_wait_time=0)
    except Refused as error:
        raise AssertionError(f"a foreign client certificate got an HTTP answer: {error}")
    except Exception as error:  # the handshake (or the first read) fails
        print(f"foreign certificate refused: {type(error).__name__}: {error}")
    else:
        raise AssertionError("a foreign client certificate was accepted")
    anonymous = Client(nodes[0], "tls", tls={"ca_certs": ca})
    try:
        anonymous.get_data("k", max_wait_time=0)
    except Refused as error:
        raise AssertionError(f"a client without a certificate got an HTTP answer: {error}")
    except Exception:
        pass
    else:
        raise AssertionError("a client without a certificate was accepted")


def main():
    scenario = sys.argv[1]
    rest = sys.argv[2:]
    if "--" in rest:
        split = rest.index("--")
        nodes, args = rest[:split], rest[split + 1 :]
    else:
        nodes, args = rest, []
    globals()["scenario_" + scenario](nodes, args)
    print(f"{scenario}: ok")


if __name__ == "__main__":
    main()
