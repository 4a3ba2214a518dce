#!/usr/bin/env python3
"""tests/push/test_push.py — push delivery against real HTTP receivers.

Each scenario starts the real handoffd (HANDOFFD) on a fresh folder and
one or more receivers written with Python's standard library
(http.server). Every receiver checks every request's Standard Webhooks
signature with its own implementation (hmac, hashlib, base64) and that a
tampered body fails it; scenarios then read the outcome back through the
CLI (HANDOFF_CLI): trace, dead letters, subscriptions, stats.

Run by meson (suite 'integration'). `test_push.py NAME...` runs only those
scenarios.
"""
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HANDOFFD = os.environ.get("HANDOFFD", "build/broker/handoffd")
CLI = os.environ.get("HANDOFF_CLI", "build/tools/handoff")

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def wait_for(pred, what, timeout=20.0, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise Failed("timed out waiting for " + what)


# ---- Standard Webhooks, the receiver's side ---------------------------------

def sw_sign(secret, msg_id, ts, body):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, b"%s.%s." % (msg_id.encode(), str(ts).encode()) +
                   body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sw_verify(secret, headers, body, now=None, tolerance=300):
    try:
        msg_id = headers["webhook-id"]
        ts = int(headers["webhook-timestamp"])
        sigs = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance:
        return False
    want = sw_sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(s, want) for s in sigs)


def test_sw_vector():
    """The receiver's own implementation against the spec's test vector."""
    h = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
         "webhook-timestamp": "1614265330",
         "webhook-signature":
         "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    sec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    check(sw_verify(sec, h, body, now=1614265330), "vector verifies")
    check(not sw_verify(sec, h, body + b" ", now=1614265330),
          "tampered vector fails")


# ---- receivers ----------------------------------------------------------------

class Receiver:
    """An HTTP server answering each POST by behave(n) (n from 0):
    'ok' | ('status', code, headers) | ('hang', seconds) | 'close' |
    ('slow', seconds) (answer 200 after a while). Records every request
    (at arrival) with its signature check and the client's port.
    idle_timeout: close a kept-alive connection idle that long (seconds),
    as servers do."""

    def __init__(self, behave, port=None, secret=SECRET, idle_timeout=None):
        self.behave = behave
        self.idle_timeout = idle_timeout
        self.secret = secret
        self.port = port or free_port()
        self.requests = []
        self.lock = threading.Lock()
        self.server = None

    def start(self):
        rcv = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = rcv.idle_timeout

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                ok = sw_verify(rcv.secret, hdrs, body) if rcv.secret else \
                    "webhook-signature" not in hdrs
                tampered = rcv.secret is not None and \
                    sw_verify(rcv.secret, hdrs, body + b"x")
                with rcv.lock:
                    idx = len(rcv.requests)
                    rcv.requests.append({"t": time.time(), "h": hdrs,
                                         "body": body, "verified": ok,
                                         "tampered_ok": tampered,
                                         "path": self.path,
                                         "peer": self.client_address[1]})
                act = rcv.behave(idx)
                if act == "close":
                    self.close_connection = True
                    return
                code, extra = 200, {}
                if isinstance(act, tuple) and act[0] == "status":
                    code, extra = act[1], act[2]
                elif isinstance(act, tuple) and act[0] in ("hang", "slow"):
                    time.sleep(act[1])
                text = b"status %d\nsecond line\n" % code
                try:
                    self.send_response(code)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1",
                                                       self.port), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def count(self):
        with self.lock:
            return len(self.requests)

    def all_verified(self):
        with self.lock:
            bad = [r for r in self.requests
                   if not r["verified"] or r["tampered_ok"]]
        check(not bad, "every signature verifies and no tampered body does:"
              " %d bad of %d" % (len(bad), len(self.requests)))


# ---- the broker -----------------------------------------------------------------

class Broker:
    def __init__(self, config="", http=False):
        self.dir = tempfile.mkdtemp(prefix="handoff-push-")
        self.data = os.path.join(self.dir, "data")
        self.native = "tcp://127.0.0.1:%d" % free_port()
        self.http_port = free_port() if http else None
        self.log = os.path.join(self.dir, "broker.log")
        self.cfg = os.path.join(self.dir, "handoffd.ini")
        with open(self.cfg, "w") as f:
            f.write(config)
        self.secret_file = os.path.join(self.dir, "push.secret")
        with open(self.secret_file, "w") as f:
            f.write(SECRET + "\n")
        self.proc = None

    def start(self):
        logf = open(self.log, "ab")
        args = [HANDOFFD, "--data", self.data, "--listen", self.native,
                "--config", self.cfg, "--log-debug"]
        args += ["--http-listen", "127.0.0.1:%d" % self.http_port] \
            if self.http_port else ["--http-listen", "off"]
        env = dict(os.environ, HANDOFF_TEST_NOSYNC="1")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=logf, env=env)
        logf.close()
        wait_for(lambda: self.proc.poll() is not None or
                 self.cli("subscriptions", check_rc=False)[0] == 0,
                 "broker start")
        check(self.proc.poll() is None, "broker runs:\n" + self.logtext())
        return self

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failed("broker did not stop on SIGTERM")
            # 0 on a clean stop (a sanitizer build fails it on a leak or
            # an error it found)
            check(self.proc.returncode == 0, "broker exit %d:\n%s" % (
                self.proc.returncode, self.logtext()[-3000:]))

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logtext(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def cli(self, *args, check_rc=True):
        p = subprocess.run([CLI, "--broker", self.native, "--timeout", "5s"] +
                           list(args), capture_output=True, text=True)
        if check_rc and p.returncode != 0:
            raise Failed("handoff %s: exit %d: %s%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        return p.returncode, p.stdout, p.stderr

    def json(self, *args):
        return json.loads(self.cli("--json", *args)[1])

    def subscribe(self, sub, url, *opts):
        self.cli("subscribe", "t", sub, "--push", url, "--push-secret-file",
                 self.secret_file, *opts)

    def publish(self, payload, *opts):
        return int(self.cli("publish", "t", *opts, "--", payload)[1])

    def trace(self, eid, sub):
        for s in self.json("trace", str(eid))["subscriptions"]:
            if s["subscription"] == sub:
                return s
        raise Failed("no trace of %d on %s" % (eid, sub))

    def wait_state(self, eid, sub, states, timeout=30):
        return wait_for(lambda: self.trace(eid, sub)["state"] in states and
                        self.trace(eid, sub), "event %d %s" % (eid, states),
                        timeout=timeout, step=0.2)

    def sub_info(self, sub):
        for s in self.json("subscriptions"):
            if s["name"] == sub:
                return s
        raise Failed("no subscription " + sub)

    def http(self, method, path, body=None, token=None):
        c = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                       timeout=10)
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + token
        c.request(method, path, body=json.dumps(body) if body is not None
                  else None, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else None


# ---- scenarios ----------------------------------------------------------------

def test_retry_then_ack():
    """503 twice, then 200: three attempts, then acked; the trace shows
    each status; one webhook-id for all; headers passed on."""
    rcv = Receiver(lambda n: ("status", 503, {}) if n < 2 else "ok").start()
    b = Broker().start()
    try:
        b.subscribe("s", rcv.url, "--backoff", "100ms..200ms")
        eid = b.publish("hello", "--key", "k-1", "--header",
                        "traceparent=00-0af7651916cd43dd8448eb211c80319c-"
                        "b7ad6b7169203331-01", "--header", "X-Custom=yes")
        tr = b.wait_state(eid, "s", ["acked"])
        check(rcv.count() == 3, "three POSTs, got %d" % rcv.count())
        hist = tr["history"]
        check([h["outcome"] for h in hist] == ["nacked", "nacked", "acked"],
              "outcomes %s" % [h["outcome"] for h in hist])
        check(all("HTTP 503: status 503" == h["error"] for h in hist[:2]),
              "errors name the status and first body line: %s" %
              [h["error"] for h in hist])
        check(all(h["consumer"] == "push:s" for h in hist), "consumer")
        rcv.all_verified()
        for i, r in enumerate(rcv.requests):
            h = r["h"]
            check(h["webhook-id"] == "evt_%d" % eid, "webhook-id")
            check(h["handoff-event-id"] == str(eid), "Handoff-Event-Id")
            check(h["handoff-attempt"] == str(i + 1), "Handoff-Attempt")
            check(h["handoff-topic"] == "t", "Handoff-Topic")
            check(h["handoff-key"] == "k-1", "Handoff-Key")
            check(h["traceparent"].startswith("00-0af7651916cd43dd"),
                  "traceparent passed on")
            check(h["x-custom"] == "yes", "event header passed on")
            check(r["body"] == b"hello", "payload is the body")
        info = b.sub_info("s")
        check(info["push_url"] == rcv.url and
              info["push_state"] == "healthy", "subscriptions: %s" % info)
        stats = [s for s in b.json("stats")["subscriptions"]
                 if s["name"] == "s"][0]
        check(stats["push_state"] == "healthy" and
              "503" in stats["push_last_error"], "stats: %s" % stats)
    finally:
        b.cleanup()
        rcv.stop()


def test_retry_after():
    """503 with Retry-After: 2 sets the next delay (the backoff is 100 ms)."""
    rcv = Receiver(lambda n: ("status", 503, {"Retry-After": "2"})
                   if n == 0 else "ok").start()
    b = Broker().start()
    try:
        b.subscribe("s", rcv.url, "--backoff", "100ms..100ms")
        eid = b.publish("x")
        tr = b.wait_state(eid, "s", ["acked"])
        check(rcv.count() == 2, "two POSTs")
        gap = rcv.requests[1]["t"] - rcv.requests[0]["t"]
        check(gap >= 1.9, "second attempt %.2fs after the first (want >= 2)"
              % gap)
        check(tr["history"][0]["retry_delay_ms"] == 2000,
              "retry delay %d" % tr["history"][0]["retry_delay_ms"])
        rcv.all_verified()
    finally:
        b.cleanup()
        rcv.stop()


def test_timeout():
    """A receiver that hangs past the push timeout: each attempt ends at the
    timeout, a failed attempt; finally dead-lettered with the text."""
    rcv = Receiver(lambda n: ("hang", 4)).start()
    b = Broker().start()
    try:
        b.subscribe("s", rcv.url, "--push-timeout", "500ms",
                    "--max-attempts", "2", "--backoff", "100ms..100ms")
        eid = b.publish("x")
        tr = b.wait_state(eid, "s", ["dead"])
        hist = tr["history"]
        check(len(hist) == 2, "two attempts")
        for h in hist:
            check(h["error"].startswith("timeout: no complete reply within "
                                        "500 ms"), "error %r" % h["error"])
            took = h["ended_ms"] - h["leased_ms"]
            check(took < 3000, "attempt bounded by the timeout: %d ms" % took)
        check(rcv.count() == 2, "two POSTs")
        rcv.all_verified()
    finally:
        b.cleanup()
        rcv.stop()


def test_connection_closed():
    """A receiver that closes the connection without answering."""
    rcv = Receiver(lambda n: "close").start()
    b = Broker().start()
    try:
        b.subscribe("s", rcv.url, "--max-attempts", "2", "--backoff",
                    "100ms..100ms")
        eid = b.publish("x")
        tr = b.wait_state(eid, "s", ["dead"])
        check(all(h["error"].startswith("connection closed without a reply")
                  for h in tr["history"]), "errors %s" %
              [h["error"] for h in tr["history"]])
        dl = b.json("dlq", "list", "s")["dead_letters"]
        check(len(dl) == 1 and "connection closed" in dl[0]["error"],
              "dead letter %s" % dl)
        rcv.all_verified()
    finally:
        b.cleanup()
        rcv.stop()


def cpu_seconds(pid):
    """User + system CPU time of process pid so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_connection_closed():
    """A receiver that closes kept-alive connections idle for 0.3 s, as
    servers do: each event after such a close is delivered at once on a new
    connection, at its first attempt, and the broker does not spin on the
    closed socket it keeps watching between POSTs."""
    rcv = Receiver(lambda n: "ok", idle_timeout=0.3).start()
    b = Broker().start()
    try:
        b.subscribe("s", rcv.url, "--push-timeout", "20s")
        for i in range(4):
            t0 = time.time()
            eid = b.publish("idle-%d" % i)
            tr = b.wait_state(eid, "s", ["acked"], timeout=10)
            check(len(tr["history"]) == 1,
                  "event %d acked at its first attempt: %s" %
                  (eid, tr["history"]))
            check(time.time() - t0 < 5, "event %d acked in %.1f s, not "
                  "after a POST timed out" % (eid, time.time() - t0))
            time.sleep(0.8)  # the receiver closes the idle connection
        cpu0 = cpu_seconds(b.proc.pid)
        time.sleep(1.5)
        idle_cpu = cpu_seconds(b.proc.pid) - cpu0
        check(idle_cpu < 0.5, "broker idle beside a closed connection used"
              " %.2f s of CPU in 1.5 s" % idle_cpu)
        with rcv.lock:
            peers = [r["peer"] for r in rcv.requests]
        check(len(peers) == 4 and len(set(peers)) == 4,
              "each POST on a new connection after the idle close: %s" %
              peers)
        rcv.all_verified()
    finally:
        b.cleanup()
        rcv.stop()


def test_gone_and_redirect():
    """410: the subscription is paused, the delivery given back with no
    attempt spent, and resume delivers it; 3xx: a failed attempt, the
    redirect not followed."""
    gone = Receiver(lambda n: ("status", 410 if n == 0 else 200, {})).start()
    moved = Receiver(lambda n: ("status", 302, {
        "Location": "http://127.0.0.1:1/elsewhere"})).start()
    b = Broker().start()
    try:
        b.subscribe("g", gone.url, "--max-attempts", "1")
        b.subscribe("m", moved.url, "--max-attempts", "1")
        eid = b.publish("x")
        tm = b.wait_state(eid, "m", ["dead"])
        check(tm["error"].startswith("HTTP 302: redirect not followed"),
              "302 error %r" % tm["error"])
        # 410: paused (no attempt spent: max_attempts 1 and not dead)
        wait_for(lambda: b.sub_info("g").get("paused") is True,
                 "g paused after 410", timeout=20, step=0.2)
        tg = b.wait_state(eid, "g", ["ready"])
        check(tg["history"][-1]["outcome"] == "released" and
              tg["history"][-1]["error"].startswith(
                  "410 Gone: endpoint gone; subscription paused"),
              "410 released %r" % tg["history"])
        check("push_endpoint_gone" in b.logtext(), "410 logged")
        time.sleep(1.0)
        check(gone.count() == 1, "nothing pushed while paused (%d)"
              % gone.count())
        check(b.json("dlq", "list", "g")["dead_letters"] == [],
              "nothing dead-lettered")
        b.cli("resume", "g")
        tg = b.wait_state(eid, "g", ["acked"])
        check(gone.count() == 2 and moved.count() == 1,
              "one more POST after resume (%d, %d)" % (gone.count(),
                                                       moved.count()))
    finally:
        b.cleanup()
        gone.stop()
        moved.stop()


def test_operator_pause_drops_prefetch(config=""):
    """An operator's pause while the push thread holds fetched-ahead leases:
    they are given back unspent at once, nothing more is POSTed (the
    receiver is known to be down), and resume delivers them."""
    hold = threading.Event()

    def behave(n):
        if n == 20:
            hold.wait(20)  # held until the pause is in
        return "ok"

    rcv = Receiver(behave).start()
    b = Broker(config).start()
    try:
        b.subscribe("p", rcv.url, "--push-concurrency", "1",
                    "--push-timeout", "10s")
        warm = [b.publish("w%d" % i) for i in range(20)]
        for eid in warm:  # quick POSTs: the thread now fetches ahead
            b.wait_state(eid, "p", ["acked"])
        stuck = b.publish("stuck")
        wait_for(lambda: rcv.count() == 21, "the 21st POST hangs")
        queued = [b.publish("q%d" % i) for i in range(30)]
        wait_for(lambda: b.sub_info("p")["leased"] >= 10,
                 "leases fetched ahead behind the hung POST", timeout=10)
        b.cli("pause", "p", "--why", "receiver down for maintenance")
        wait_for(lambda: b.sub_info("p")["leased"] <= 1,
                 "fetched-ahead leases given back", timeout=10)
        hold.set()
        b.wait_state(stuck, "p", ["acked"])
        time.sleep(1.5)
        check(rcv.count() == 21, "nothing POSTed after the pause (%d)"
              % rcv.count())
        for eid in queued[:3]:
            t = b.trace(eid, "p")
            check(t["state"] == "ready" and
                  all(h["outcome"] == "released" for h in t["history"]),
                  "a queued delivery went back unspent: %r" % t)
        check(b.json("dlq", "list", "p", "--limit", "4")["dead_letters"]
              == [],
              "nothing dead-lettered")
        b.cli("resume", "p")
        for eid in queued:
            b.wait_state(eid, "p", ["acked"])
        check(rcv.count() == 51, "each queued event POSTed once after "
              "resume (%d requests)" % rcv.count())
        rcv.all_verified()
    finally:
        hold.set()
        b.cleanup()
        rcv.stop()


def test_pause_release_in_batches():
    """The same with max_batch = 4: more leases fetched ahead than one
    request may carry are given back in several release requests (one
    over the limit would be refused whole, and the leases would expire,
    spending attempts)."""
    test_operator_pause_drops_prefetch("[limits]\nmax_batch = 4\n")


def test_queued_leases_extended():
    """Leases fetched ahead while the endpoint was fast, then queued behind
    a slow one for longer than the ack deadline: the push thread extends
    them, so each event is POSTed once, as attempt 1, with no lease
    expired and nothing redelivered."""
    hold = threading.Event()

    def behave(n):
        if n == 20:
            hold.wait(20)  # the queue fills behind this one
        elif n > 20:
            return ("slow", 0.4)  # 15 queued x 0.4 s > the 2 s deadline
        return "ok"

    rcv = Receiver(behave).start()
    b = Broker().start()
    try:
        b.subscribe("x", rcv.url, "--push-concurrency", "1",
                    "--push-timeout", "1s", "--ack-deadline", "2s")
        warm = [b.publish("w%d" % i) for i in range(20)]
        for eid in warm:  # fast POSTs: the thread now fetches ahead
            b.wait_state(eid, "x", ["acked"])
        b.publish("held")
        wait_for(lambda: rcv.count() == 21, "the 21st POST is held")
        queued = [b.publish("q%d" % i) for i in range(15)]
        wait_for(lambda: b.sub_info("x")["leased"] >= 10,
                 "leases fetched ahead behind the held POST", timeout=10)
        hold.set()
        for eid in queued:
            t = b.wait_state(eid, "x", ["acked"], timeout=40)
            outcomes = [h["outcome"] for h in t["history"]]
            check(outcomes == ["acked"],
                  "event %d: one attempt, acked: %r" % (eid, t["history"]))
        with rcv.lock:
            ids = [int(r["h"]["handoff-event-id"]) for r in rcv.requests]
            attempts = [r["h"]["handoff-attempt"] for r in rcv.requests]
        check(sorted(ids) == sorted(set(ids)), "each event POSTed once")
        check(set(attempts) == {"1"}, "every POST is attempt 1: %r"
              % sorted(set(attempts)))
        check("event=lease_extended" in b.logtext(),
              "queued leases were extended (the broker's debug log)")
        rcv.all_verified()
    finally:
        hold.set()
        b.cleanup()
        rcv.stop()


def test_down_then_up():
    """An endpoint down for a while: after a few connection failures the
    subscription probes with one delivery at a time and the backlog waits
    unleased; nothing is dead-lettered; everything arrives once it is up."""
    port = free_port()
    rcv = Receiver(lambda n: "ok", port=port)
    b = Broker().start()
    try:
        b.subscribe("s", rcv.url, "--max-attempts", "5", "--backoff",
                    "200ms..1s", "--push-concurrency", "2")
        ids = [b.publish("e%d" % i) for i in range(6)]
        # down for 7 s: without probing, 5 attempts at 200ms..1s backoff
        # would dead-letter every event in about 3 s
        time.sleep(7)
        info = b.sub_info("s")
        check(info["dead"] == 0, "nothing dead-lettered while down: %s" % info)
        check(info["push_state"] == "probing", "still probing: %s" % info)
        check(info["leased"] <= 1, "one probe at a time: %s" % info)
        st = [x for x in b.json("stats")["subscriptions"]
              if x["name"] == "s"][0]
        # 3 failures, then one probe 200 ms, 400 ms, 800 ms, then 1 s
        # apart: about 12 in 7 s (leasing two at a time would be 20)
        check(st["delivered"] <= 16, "leases while down: %d (probing leases "
              "one delivery at a time)" % st["delivered"])
        rcv.start()
        for eid in ids:
            b.wait_state(eid, "s", ["acked"], timeout=30)
        check(b.sub_info("s")["push_state"] == "healthy", "healthy again")
        got = {int(r["h"]["handoff-event-id"]) for r in rcv.requests}
        check(got == set(ids), "every event delivered")
        rcv.all_verified()
    finally:
        b.cleanup()
        rcv.stop()


def test_kill9_in_flight():
    """kill -9 with pushes in flight: after a restart every event ends
    acked (or dead-lettered), none is lost, and redeliveries carry the
    same webhook-id."""
    rcv = Receiver(lambda n: ("slow", 0.6)).start()
    b = Broker().start()
    try:
        b.subscribe("s", rcv.url, "--push-concurrency", "4",
                    "--push-timeout", "5s", "--ack-deadline", "20s")
        ids = [b.publish("k%d" % i) for i in range(16)]
        wait_for(lambda: rcv.count() >= 6, "pushes in flight")
        b.kill9()
        in_flight = rcv.count()
        b.start()
        for eid in ids:
            b.wait_state(eid, "s", ["acked", "dead"], timeout=60)
        seen = {}
        for r in rcv.requests:
            eid = int(r["h"]["handoff-event-id"])
            check(r["h"]["webhook-id"] == "evt_%d" % eid, "webhook-id")
            seen.setdefault(eid, []).append(r["h"]["webhook-id"])
        check(set(seen) == set(ids), "every event reached the receiver")
        dups = [e for e, w in seen.items() if len(w) > 1]
        check(dups, "the in-flight ones came again (%d before kill)" %
              in_flight)
        check(all(len(set(seen[e])) == 1 for e in dups),
              "duplicates carry the same webhook-id")
        rcv.all_verified()
    finally:
        b.cleanup()
        rcv.stop()


def test_access_and_http():
    """With access control on, push subscriptions need a key whose
    push_urls allow the URL; the HTTP API creates them and shows the
    endpoint state, never the secret; deliveries flow with access on."""
    rcv = Receiver(lambda n: "ok").start()
    ops, plain = "operator-token-0123456789", "plain-ops-token-0123456789"
    anyurl = "any-url-ops-token-0123456789"
    cfg = ("[key ops]\nrole = producer, operator\ntoken = %s\ntopics = *\n"
           "push_urls = http://127.0.0.1:*\n"
           "[key plain]\nrole = operator\ntoken = %s\n"
           "[key any]\nrole = operator\ntoken = %s\npush_urls = *\n" %
           (ops, plain, anyurl))
    b = Broker(cfg, http=True)
    b.start_http = True
    try:
        logf = open(b.log, "ab")
        b.proc = subprocess.Popen(
            [HANDOFFD, "--data", b.data, "--listen", b.native,
             "--http-listen", "127.0.0.1:%d" % b.http_port, "--config",
             b.cfg], stdout=logf, stderr=logf)
        logf.close()

        def up():
            try:
                return b.http("GET", "/v1/health")[0] == 200
            except OSError:
                return False
        wait_for(up, "HTTP up")
        put = {"topic": "t", "push": {"url": rcv.url, "secret": SECRET,
                                      "timeout_ms": 2000, "concurrency": 2}}
        st, r = b.http("PUT", "/v1/subscriptions/a", put, ops)
        check(st == 201 and r["push"]["url"] == rcv.url and
              r["push"]["signed"] is True and "secret" not in r["push"],
              "PUT push: %d %s" % (st, r))
        st, r = b.http("PUT", "/v1/subscriptions/a", put, ops)
        check(st == 200, "same again: %d" % st)
        other = dict(put, push=dict(put["push"], concurrency=3))
        st, r = b.http("PUT", "/v1/subscriptions/a", other, ops)
        check(st == 409, "another push config conflicts: %d" % st)
        bad = {"topic": "t", "push": {"url": "http://10.1.2.3/x"}}
        st, r = b.http("PUT", "/v1/subscriptions/b", bad, ops)
        check(st == 403, "URL outside push_urls: %d %s" % (st, r))
        st, r = b.http("PUT", "/v1/subscriptions/c", put, plain)
        check(st == 403, "key without push_urls: %d %s" % (st, r))
        st, r = b.http("PUT", "/v1/subscriptions/d", {
            "topic": "t", "push": {"url": "file:///etc/passwd"}}, anyurl)
        check(st == 400, "non-http URL: %d" % st)
        st, r = b.http("PUT", "/v1/subscriptions/e", {
            "topic": "t", "push": {"url": rcv.url, "secret": "whsec_xx"}},
            anyurl)
        check(st == 400, "bad secret: %d" % st)
        c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
        c.request("POST", "/v1/topics/t/events", body=b"via-http",
                  headers={"Authorization": "Bearer " + ops})
        check(c.getresponse().status in (200, 201), "published")
        c.close()
        wait_for(lambda: rcv.count() >= 1, "pushed with access control on")
        check(rcv.requests[0]["body"] == b"via-http", "body")
        rcv.all_verified()
        st, r = wait_for(lambda: (lambda x: x[1].get("push", {}).get(
            "state") == "healthy" and x)(b.http(
                "GET", "/v1/subscriptions/a", None, ops)), "GET state")
        check("secret" not in r["push"], "GET shows no secret")
        st, s = b.http("GET", "/v1/stats", None, ops)
        a = [x for x in s["subscriptions"] if x["name"] == "a"][0]
        check(a["push_state"] == "healthy" and a["push_url"] == rcv.url,
              "stats %s" % a)
    finally:
        b.cleanup()
        rcv.stop()


def test_deny_private():
    """[push] deny_private = yes: a loopback URL is never called; each
    attempt fails with a text saying why."""
    rcv = Receiver(lambda n: "ok").start()
    b = Broker("[push]\ndeny_private = yes\n").start()
    try:
        b.subscribe("s", rcv.url, "--max-attempts", "2", "--backoff",
                    "100ms..100ms")
        eid = b.publish("x")
        tr = b.wait_state(eid, "s", ["dead"])
        check(all(h["error"].startswith("address denied")
                  for h in tr["history"]), "errors %s" %
              [h["error"] for h in tr["history"]])
        check(rcv.count() == 0, "the receiver was never called")
    finally:
        b.cleanup()
        rcv.stop()


def test_cli_checks():
    """The CLI refuses push options without --push and a secret file that
    is not whsec_; the broker refuses a timeout not below the deadline."""
    b = Broker().start()
    try:
        rc, _, err = b.cli("subscribe", "t", "s", "--push-timeout", "1s",
                           check_rc=False)
        check(rc == 2 and "--push URL" in err, "needs --push: %d %s" %
              (rc, err))
        bad = os.path.join(b.dir, "bad.secret")
        with open(bad, "w") as f:
            f.write("hunter2\n")
        rc, _, err = b.cli("subscribe", "t", "s", "--push", "http://x/",
                           "--push-secret-file", bad, check_rc=False)
        check(rc == 2 and "whsec_" in err, "bad secret file: %d" % rc)
        rc, _, err = b.cli("subscribe", "t", "s", "--push", "http://x/",
                           "--push-timeout", "30s", "--ack-deadline", "10s",
                           check_rc=False)
        check(rc != 0 and "ack deadline" in err, "timeout vs deadline: %s" %
              err)
    finally:
        b.cleanup()


SCENARIOS = [test_sw_vector, test_retry_then_ack, test_retry_after,
             test_timeout, test_connection_closed,
             test_idle_connection_closed, test_gone_and_redirect,
             test_operator_pause_drops_prefetch,
             test_pause_release_in_batches, test_queued_leases_extended,
             test_down_then_up, test_kill9_in_flight, test_access_and_http,
             test_deny_private, test_cli_checks]


def main():
    want = set(sys.argv[1:])
    failed = 0
    for t in SCENARIOS:
        if want and t.__name__ not in want:
            continue
        t0 = time.time()
        try:
            t()
            print("ok   %s (%.1fs)" % (t.__name__, time.time() - t0),
                  flush=True)
        except Exception:
            failed += 1
            print("FAIL %s" % t.__name__, flush=True)
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
