#!/usr/bin/env python3
"""tests/prometheus/test_prometheus.py — GET /metrics against real programs.

Starts a real handoffd (its own temporary folder, free ports) and a real
Prometheus server (Debian's `prometheus`: its own temporary config and
TSDB folder, a free port, scrape and rule evaluation every second, loading
deploy/prometheus/handoff-alerts.yml). Then:

  1. `promtool check metrics` accepts the broker's /metrics, and the
     exposition passes the checks promtool does not make: one HELP and TYPE
     per family, each family in one piece, no duplicate series, buckets
     increasing and cumulative up to le="+Inf" equal to _count;
  2. after a known workload over the HTTP API (subscriptions, publishes
     with a duplicate and a refusal, acks, a permanent nack that
     dead-letters, a nack with a long delay, a pause), queries through
     Prometheus's own HTTP API (/api/v1/query) return the expected values,
     and the dead-letter alert of the rules file is active for the
     subscription that dead-lettered (and only that one).

Run by meson (suite 'integration'): HANDOFFD, PROMETHEUS, PROMTOOL and
ALERTS come from the environment. Python standard library only.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

HANDOFFD = os.environ.get("HANDOFFD", "build/broker/handoffd")
PROMETHEUS = os.environ.get("PROMETHEUS", "prometheus")
PROMTOOL = os.environ.get("PROMTOOL", "promtool")
ALERTS = os.environ.get("ALERTS", "deploy/prometheus/handoff-alerts.yml")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def request(port, method, path, body=None, headers=None, timeout=30):
    h = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        raw = r.read()
        ctype = r.getheader("Content-Type") or ""
        return r.status, ctype, (json.loads(raw) if "json" in ctype else raw)
    finally:
        c.close()


def wait_for(what, fn, timeout=20):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


# ---- the exposition's shape (what promtool does not check) ---------------

SAMPLE = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)(\{(.*)\})? (\S+)$')


def check_exposition(text):
    check(text.endswith("\n") and "\r" not in text, "line endings")
    helps, types, order, seen = {}, {}, [], set()
    buckets = {}  # (family, labels without le) -> [(le, value)]
    counts = {}
    for line in text.split("\n")[:-1]:
        check(line == line.rstrip(), "trailing space: %r" % line)
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            check(name not in helps, "second HELP for %s" % name)
            helps[name] = True
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            check(name not in types, "second TYPE for %s" % name)
            types[name] = kind
            order.append(name)
            continue
        m = SAMPLE.match(line)
        check(m, "not a sample: %r" % line)
        name, labels, value = m.group(1), m.group(3) or "", m.group(4)
        family = order[-1]
        kind = types[family]
        if kind == "histogram":
            check(name in (family + "_bucket", family + "_sum",
                           family + "_count"), "%s outside %s" % (name,
                                                                 family))
        else:
            check(name == family, "%s outside its family %s" % (name,
                                                                 family))
        check((name, labels) not in seen, "duplicate series %s{%s}" %
              (name, labels))
        seen.add((name, labels))
        if name.endswith("_bucket"):
            le = re.search(r'(^|,)le="([^"]*)"', labels).group(2)
            rest = re.sub(r'(^|,)le="[^"]*"', "", labels)
            buckets.setdefault((family, rest), []).append(
                (float(le), float(value)))
        elif kind == "histogram" and name.endswith("_count"):
            counts[(family, labels)] = float(value)
    for name in order:
        check(name in helps, "no HELP for %s" % name)
    check(buckets, "no histogram")
    for key, bs in buckets.items():
        les = [b[0] for b in bs]
        vals = [b[1] for b in bs]
        check(les == sorted(les) and len(set(les)) == len(les),
              "le not increasing %r" % (key,))
        check(les[-1] == float("inf"), "no +Inf bucket %r" % (key,))
        check(vals == sorted(vals), "buckets not cumulative %r" % (key,))
        check(vals[-1] == counts.get(key), "+Inf != _count %r" % (key,))
    return types


# ---- the programs ---------------------------------------------------------

class Programs:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="handoff-prom-")
        self.http = free_port()
        self.prom = free_port()
        self.broker = self.prometheus = None

    def start_broker(self):
        cfg = os.path.join(self.dir, "handoffd.ini")
        open(cfg, "w").close()
        log = open(os.path.join(self.dir, "broker.log"), "ab")
        self.broker = subprocess.Popen(
            [HANDOFFD, "--data", os.path.join(self.dir, "data"),
             "--listen", "tcp://127.0.0.1:%d" % free_port(),
             "--http-listen", "127.0.0.1:%d" % self.http, "--config", cfg],
            stdout=log, stderr=log)
        log.close()
        wait_for("the broker", lambda: self.broker.poll() is None and
                 request(self.http, "GET", "/v1/health")[0] == 200)

    def start_prometheus(self):
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "rule_files:\n"
                    "  - %s\n"
                    "scrape_configs:\n"
                    "  - job_name: handoff\n"
                    "    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" %
                    (os.path.abspath(ALERTS), self.http))
        log = open(os.path.join(self.dir, "prometheus.log"), "ab")
        self.prometheus = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + cfg,
             "--storage.tsdb.path=" + os.path.join(self.dir, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.prom,
             "--log.level=warn"],
            stdout=log, stderr=log)
        log.close()
        wait_for("prometheus", lambda: self.prometheus.poll() is None and
                 request(self.prom, "GET", "/-/ready")[0] == 200)

    def query(self, q):
        """The instant vector of q: [(labels, float value)]."""
        st, _, d = request(self.prom, "GET", "/api/v1/query?query=" +
                           urllib.parse.quote(q))
        check(st == 200 and d["status"] == "success", "query %s: %r" %
              (q, d))
        return [(r["metric"], float(r["value"][1]))
                for r in d["data"]["result"]]

    def value(self, q):
        r = self.query(q)
        return r[0][1] if len(r) == 1 else None

    def stop(self):
        for p in (self.prometheus, self.broker):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def logs(self):
        out = ""
        for name in ("broker.log", "prometheus.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out += "---- %s\n%s" % (name, f.read()[-4000:])
            except OSError:
                pass
        return out


def run(p):
    p.start_broker()
    b = p.http

    def api(method, path, body=None, headers=None, want=(200, 201)):
        st, _, d = request(b, method, path, body, headers)
        check(st in want, "%s %s: %d %r" % (method, path, st, d))
        return d

    api("PUT", "/v1/subscriptions/billing", {"topic": "orders"})
    api("PUT", "/v1/subscriptions/archive", {"topic": "orders"})

    # 1. the exposition itself
    st, ctype, body = request(b, "GET", "/metrics")
    check(st == 200, "/metrics status %d" % st)
    check(ctype == "text/plain; version=0.0.4; charset=utf-8",
          "content type %r" % ctype)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body,
                       capture_output=True)
    check(r.returncode == 0, "promtool check metrics: %d %s %s" %
          (r.returncode, r.stdout.decode(), r.stderr.decode()))
    types = check_exposition(body.decode())
    for name in ("handoff_subscription_ready_messages",
                 "handoff_subscription_delayed_messages",
                 "handoff_subscription_leased_messages",
                 "handoff_subscription_dead_letters",
                 "handoff_subscription_paused",
                 "handoff_subscription_oldest_ready_age_seconds",
                 "handoff_store_used_bytes", "handoff_store_limit_bytes",
                 "handoff_store_headroom_bytes", "handoff_held_fetches",
                 "handoff_build_info", "handoff_push_endpoint_state"):
        check(types.get(name) == "gauge", "%s: %r" % (name, types.get(name)))
    for name in ("handoff_deliveries_total", "handoff_publish_total"):
        check(types.get(name) == "counter", name)
    for name in ("handoff_publish_confirm_seconds",
                 "handoff_commit_duration_seconds", "handoff_turn_requests"):
        check(types.get(name) == "histogram", name)

    # 2. Prometheus scrapes it: wait until it has seen the subscriptions, so
    # that the workload's dead letter is an increase it can see
    p.start_prometheus()
    wait_for("a scrape with the subscriptions", lambda: p.value(
        'handoff_subscription_ready_messages{subscription="billing"}') == 0)

    for i in range(5):
        api("POST", "/v1/topics/orders/events", "event %d" % i)
    api("POST", "/v1/topics/orders/events", "keyed",
        {"Idempotency-Key": "K1"})
    api("POST", "/v1/topics/orders/events", "keyed",
        {"Idempotency-Key": "K1"})  # duplicate
    api("POST", "/v1/topics/nobody/events", "x", want=(409,))  # refused
    d = api("POST", "/v1/subscriptions/billing/fetch",
            {"max_events": 4, "consumer": "c1"})
    dl = d["deliveries"]
    check(len(dl) == 4, "4 deliveries: %r" % d)
    item = lambda x, **kw: dict({"event_id": x["event_id"],
                                 "lease_token": x["lease_token"]}, **kw)
    api("POST", "/v1/subscriptions/billing/ack",
        {"items": [item(dl[0]), item(dl[1])]})
    api("POST", "/v1/subscriptions/billing/nack",
        {"items": [item(dl[2], permanent=True, reason="bad")]})
    api("POST", "/v1/subscriptions/billing/nack",
        {"items": [item(dl[3], delay_ms=600000, reason="later")]})
    api("POST", "/v1/subscriptions/archive:pause", {"reason": "test"})
    stats = api("GET", "/v1/stats")
    subs = {s["name"]: s for s in stats["subscriptions"]}
    check(subs["billing"]["ready"] == 2 and
          subs["billing"]["delayed"] == 1 and subs["billing"]["dead"] == 1,
          "the broker's own stats: %r" % subs["billing"])

    wait_for("the workload scraped", lambda: p.value(
        'handoff_subscription_paused{subscription="archive"}') == 1 and
        p.value('handoff_publish_total{result="duplicate"}') == 1)
    want = {
        'handoff_subscription_ready_messages{subscription="billing"}': 2,
        'handoff_subscription_delayed_messages{subscription="billing"}': 1,
        'handoff_subscription_leased_messages{subscription="billing"}': 0,
        'handoff_subscription_dead_letters{subscription="billing"}': 1,
        'handoff_subscription_ready_messages{subscription="archive"}': 6,
        'handoff_subscription_paused{subscription="archive"}': 1,
        'handoff_subscription_paused{subscription="billing"}': 0,
        'handoff_deliveries_total{subscription="billing",outcome="acked"}': 2,
        'handoff_deliveries_total{subscription="billing",'
        'outcome="dead_lettered"}': 1,
        'handoff_deliveries_total{subscription="billing",'
        'outcome="nacked"}': subs["billing"]["nacked"],
        'handoff_deliveries_total{subscription="archive",outcome="acked"}': 0,
        'handoff_subscription_leases_total{subscription="billing"}': 4,
        'handoff_publish_total{result="stored"}': 6,
        'handoff_publish_total{result="duplicate"}': 1,
        'handoff_publish_total{result="refused_invalid"}': 1,
        'handoff_publish_total{result="refused_full"}': 0,
        'handoff_publish_confirm_seconds_count': 8,
        'handoff_topic_published_total{topic="orders"}': 6,
        'handoff_store_events': stats["events_stored"],
        'handoff_held_fetches': 0,
        'handoff_build_info{version="%s",protocol="1",store_format="2"}' %
        stats["version"]: 1,
        'up{job="handoff"}': 1,
    }
    for q, v in want.items():
        got = p.value(q)
        check(got == v, "%s: want %r, got %r" % (q, v, got))
    check(p.value('handoff_store_limit_bytes') > 0 and
          0 < p.value('handoff_store_used_bytes') <=
          p.value('handoff_store_limit_bytes') and
          0 < p.value('handoff_store_headroom_bytes') <
          p.value('handoff_store_limit_bytes'), "store sizes")
    check(p.value('handoff_commit_duration_seconds_count') >= 7 and
          p.value('handoff_turn_requests_count') >= 7, "histograms")
    # the paused subscription's head keeps ageing; billing's is fresh
    age = 'handoff_subscription_oldest_ready_age_seconds{subscription="%s"}'
    check(p.value(age % "archive") > 0, "archive age")
    check(p.value(age % "billing") < 60, "billing age")

    # the rules file, loaded by the server, sees the dead letter
    alerts = wait_for("the dead-letter alert", lambda: p.query(
        'ALERTS{alertname="HandoffDeadLettersGrowing"}'))
    check([a[0]["subscription"] for a in alerts] == ["billing"],
          "alerts %r" % alerts)
    check(p.query('ALERTS{alertname="HandoffBrokerDown"}') == [],
          "broker down while up")


def main():
    for prog in (PROMETHEUS, PROMTOOL):
        check(shutil.which(prog), "%s not found (Debian package "
              "prometheus; scripts/deps.sh)" % prog)
    p = Programs()
    t0 = time.time()
    try:
        run(p)
    except Exception:
        p.stop()
        sys.stderr.write(p.logs())
        raise
    finally:
        p.stop()
        shutil.rmtree(p.dir, ignore_errors=True)
    print("prometheus: ok (%.1f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
