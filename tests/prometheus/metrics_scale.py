#!/usr/bin/env python3
"""tests/prometheus/metrics_scale.py — how long GET /metrics takes with a
large backlog (docs/performance.md "GET /metrics with a large backlog").
Not part of the suite: it fills a store with millions of events.

    metrics_scale.py [--events N] [--delayed M] [--handoffd PATH]

Starts handoffd on a temporary folder (map_size sized for N; fills with
HANDOFF_TEST_NOSYNC=1, which changes how fast the fill is, not what a
scrape reads), publishes N small events in batches of 1000 over HTTP to
one topic with two subscriptions, then times 20 scrapes of /metrics (and
of /v1/stats for comparison). With --delayed M it then leases M
deliveries of the first subscription and nacks them with a 1 h delay, and
times the first scrape (which counts the delayed entries once) and the
next 20 (which walk only what changed since); with --restart it then
restarts the broker and times the first stats request, which counts the
delayed entries once (the counts are kept in memory only).
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Conn:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def call(self, method, path, body=None):
        h = {}
        if body is not None:
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        self.c.request(method, path, body=body, headers=h)
        r = self.c.getresponse()
        raw = r.read()
        if r.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status,
                                                 raw[:300]))
        return json.loads(raw) if "json" in (r.getheader("Content-Type")
                                              or "") else raw


def timed(conn, path, n):
    """Median and max ms of n GETs of path, and the body size; None when
    the broker has no such path (an older build, for comparison)."""
    try:
        conn.call("GET", path)
    except RuntimeError:
        return None
    t = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        size = len(conn.call("GET", path))
        t.append(time.perf_counter() - t0)
    return statistics.median(t) * 1000, max(t) * 1000, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--delayed", type=int, default=0)
    ap.add_argument("--handoffd", default="build/broker/handoffd")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--restart", action="store_true",
                    help="with --delayed: restart, then time the first stats")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="handoff-metrics-scale-")
    port = free_port()
    map_gib = max(2, (a.events * 1500) >> 30)
    cfg = os.path.join(d, "h.ini")
    with open(cfg, "w") as f:
        f.write("[broker]\nmap_size = %dG\n" % map_gib)
    env = dict(os.environ, HANDOFF_TEST_NOSYNC="1")

    def start():
        log = open(os.path.join(d, "log"), "ab")
        proc = subprocess.Popen(
            [a.handoffd, "--data", os.path.join(d, "data"),
             "--listen", "tcp://127.0.0.1:%d" % free_port(),
             "--http-listen", "127.0.0.1:%d" % port, "--config", cfg],
            stdout=log, stderr=log, env=env)
        log.close()
        for _ in range(2400):
            try:
                Conn(port).call("GET", "/v1/health")
                return proc
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("broker did not start")
    p = start()
    try:
        c = Conn(port)
        c.call("PUT", "/v1/subscriptions/s1", {"topic": "t"})
        c.call("PUT", "/v1/subscriptions/s2", {"topic": "t"})
        batch = {"events": [{"payload": "x" * 16}] * 1000}
        per = a.events // 1000 // a.threads
        t0 = time.time()

        def fill():
            cc = Conn(port)
            for _ in range(per):
                cc.call("POST", "/v1/topics/t/events:batch", batch)
        ts = [threading.Thread(target=fill) for _ in range(a.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        n = per * a.threads * 1000
        print("filled %d events (x2 subscriptions) in %.0f s" %
              (n, time.time() - t0))
        c = Conn(port)  # the first one idled past the server's timeout
        r = timed(c, "/metrics", 20)
        if r:
            print("/metrics with %d ready per subscription: median %.1f ms, "
                  "max %.1f ms (%d bytes)" % ((n,) + r))
        print("/v1/stats: median %.1f ms, max %.1f ms" %
              timed(c, "/v1/stats", 20)[:2])
        if a.delayed:
            left = a.delayed
            t0 = time.time()
            while left:
                k = min(1000, left)
                r = c.call("POST", "/v1/subscriptions/s1/fetch",
                           {"max_events": k, "consumer": "c"})
                items = [{"event_id": x["event_id"],
                          "lease_token": x["lease_token"],
                          "delay_ms": 3600000}
                         for x in r["deliveries"]]
                c.call("POST", "/v1/subscriptions/s1/nack",
                       {"items": items})
                left -= len(items)
            print("delayed %d deliveries in %.0f s" % (a.delayed,
                                                       time.time() - t0))
            for path in ("/metrics", "/v1/stats"):
                r = timed(c, path, 20)
                if r:
                    print("%s with %d delayed: median %.1f ms, max %.1f ms"
                          % (path, a.delayed, r[0], r[1]))
            if a.restart:
                p.send_signal(signal.SIGTERM)
                p.wait(120)
                p = start()
                c = Conn(port)
                t0 = time.perf_counter()
                c.call("GET", "/v1/stats")
                print("after a restart, the first stats (counts the "
                      "delayed entries once): %.1f ms" %
                      ((time.perf_counter() - t0) * 1000))
                for path in ("/metrics", "/v1/stats"):
                    r = timed(c, path, 20)
                    if r:
                        print("%s then: median %.1f ms, max %.1f ms" %
                              (path, r[0], r[1]))
            st = c.call("GET", "/v1/stats")
            print("ready, delayed:", [(x["name"], x["ready"], x["delayed"])
                                      for x in st["subscriptions"]])
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(120)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
