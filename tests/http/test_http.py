#!/usr/bin/env python3
"""tests/http/test_http.py — the HTTP JSON API against the real handoffd.

Each scenario starts its own broker on a fresh temporary folder, a free
native port and a free HTTP port, and talks to it with Python's standard
library (http.client, raw sockets) and curl, as a Java, Go or Node service
would. The CLI (HANDOFF_CLI) publishes natively to show that one
idempotency key is one event on both protocols.

Every JSON response is recorded with the endpoint it came from; at the end
each is validated against proto/openapi.yaml (OPENAPI), and every path and
method of the OpenAPI file must have been exercised.

Run by meson (suite 'integration'): HANDOFFD, HANDOFF_CLI and OPENAPI come
from the environment. `test_http.py NAME...` runs only those scenarios.
"""
import base64
import http.client
import json
import os
import re
import resource
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
OPENAPI = os.environ.get("OPENAPI", "proto/openapi.yaml")

RECORDED = []  # (method, path, status, content_type, body or None)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    def __init__(self, config="", tls=None, token=None, env=None):
        self.env = env  # extra environment for handoffd
        self.dir = tempfile.mkdtemp(prefix="handoff-http-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.native = "tcp://127.0.0.1:%d" % free_port()
        self.log = os.path.join(self.dir, "broker.log")
        self.tls = tls  # (cafile) when serving HTTPS
        self.token = token
        self.cfg = os.path.join(self.dir, "handoffd.ini")
        with open(self.cfg, "w") as f:
            f.write(config)
        self.proc = None

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [HANDOFFD, "--data", self.data, "--listen", self.native,
             "--http-listen", "127.0.0.1:%d" % self.port,
             "--config", self.cfg],
            stdout=logf, stderr=logf,
            env=dict(os.environ, **self.env) if self.env else None)
        logf.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("broker exited %d:\n%s" %
                                     (self.proc.returncode, self.logtext()))
            try:
                st, _, _ = self.call("GET", "/v1/health", record=False)
                if st == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("broker did not answer /v1/health")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("broker did not stop on SIGTERM")
            assert rc == 0, "broker exit status %d\n%s" % (rc, self.logtext())
        self.proc = None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logtext(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def conn(self, timeout=30, source=None):
        if self.tls:
            import ssl
            ctx = ssl.create_default_context(cafile=self.tls)
            return http.client.HTTPSConnection(
                "localhost", self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=timeout,
            source_address=(source, 0) if source else None)

    def call(self, method, path, body=None, headers=None, token=None,
             record=True, timeout=30, source=None):
        """One request; (status, headers, parsed JSON or raw bytes)."""
        h = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = "Bearer " + tok
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        c = self.conn(timeout, source)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            raw = r.read()
            ctype = r.getheader("Content-Type") or ""
            data = json.loads(raw) if "json" in ctype else raw
            if record:
                RECORDED.append((method, path.split("?")[0], r.status,
                                 ctype, data if "json" in ctype else None))
            return r.status, r, data
        finally:
            c.close()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect(resp, status, what=""):
    st, r, data = resp
    check(st == status, "%s: expected %d, got %d: %r" % (what, status, st,
                                                         data))
    return data


def problem(resp, status, name, field=None, what=""):
    st, r, data = resp
    check(st == status, "%s: expected %d, got %d: %r" % (what, status, st,
                                                         data))
    check(r.getheader("Content-Type") == "application/problem+json",
          "%s: problem content type, got %r" % (what,
                                                r.getheader("Content-Type")))
    check(data["handoff_status"] == name and data["status"] == status,
          "%s: problem %r" % (what, data))
    if field is not None:
        check(data.get("field") == field,
              "%s: field %r expected, got %r" % (what, field, data))
    return data


def cli(b, *args):
    return subprocess.run([CLI, "--broker", b.native] + list(args),
                          capture_output=True, text=True, timeout=60)


# ---- scenarios ---------------------------------------------------------------

def test_flow():
    """Every endpoint on the normal path; shared idempotency with the CLI."""
    b = Broker().start()
    try:
        pol = {"max_attempts": 2, "ack_deadline_ms": 30000,
               "backoff_min_ms": 100, "backoff_max_ms": 200}
        d = expect(b.call("PUT", "/v1/subscriptions/s1",
                          {"topic": "t1", "policy": pol}), 201, "create")
        check(d["created"] is True and d["policy"] == pol, "created %r" % d)
        d = expect(b.call("PUT", "/v1/subscriptions/s1",
                          {"topic": "t1", "policy": pol}), 200, "again")
        check(d["created"] is False, "idempotent subscribe")
        problem(b.call("PUT", "/v1/subscriptions/s1", {"topic": "t2"}), 409,
                "CONFLICT", what="other topic")
        expect(b.call("PUT", "/v1/subscriptions/s2", {"topic": "t1"}), 201)
        d = expect(b.call("GET", "/v1/subscriptions"), 200)
        check([s["name"] for s in d["subscriptions"]] == ["s1", "s2"],
              "list %r" % d)
        problem(b.call("GET", "/v1/subscriptions/nope"), 404, "NOT_FOUND")
        problem(b.call("POST", "/v1/topics/empty/events", "x"), 409,
                "NO_SUBSCRIPTIONS")

        # one idempotency key, native (CLI) and HTTP: one event
        r = cli(b, "publish", "t1", "--idempotency-key", "K1", "native")
        check(r.returncode == 0, "cli publish: %s" % r.stderr)
        native_id = r.stdout.strip()
        d = expect(b.call("POST", "/v1/topics/t1/events", "native",
                          {"Idempotency-Key": "K1"}), 200, "dup of native")
        check(d == {"event_id": native_id, "duplicate": True}, "%r" % d)
        d = expect(b.call("POST", "/v1/topics/t1/events", b"\xff\x00bin",
                          {"Idempotency-Key": "K2", "Handoff-Key": "acct-1",
                           "Handoff-Header-Kind": "close",
                           "Content-Type": "application/octet-stream"}),
                   201, "publish")
        bin_id = d["event_id"]
        check(d["duplicate"] is False, "fresh")
        d = expect(b.call("POST", "/v1/topics/t1/events", "again",
                          {"Idempotency-Key": "K2"}), 200)
        check(d["event_id"] == bin_id, "same id")
        r = cli(b, "publish", "t1", "--idempotency-key", "K2", "x")
        check(r.returncode == 0 and r.stdout.strip() == bin_id,
              "native sees the HTTP key: %r %r" % (r.stdout, r.stderr))
        d = expect(b.call("POST", "/v1/topics/t1/events:batch", {"events": [
            {"payload": "text one", "idempotency_key": "B1"},
            {"payload": base64.b64encode(b"\x01\x02").decode(),
             "payload_encoding": "base64", "key": "k",
             "headers": [{"name": "h", "value": "v"}]}]}), 201, "batch")
        check(len(d["event_ids"]) == 2 and d["duplicates"] == [False, False],
              "%r" % d)
        d2 = expect(b.call("POST", "/v1/topics/t1/events:batch", {"events": [
            {"payload": "text one", "idempotency_key": "B1"}]}), 200)
        check(d2["event_ids"][0] == d["event_ids"][0] and
              d2["duplicates"] == [True], "batch dup %r" % d2)
        # all or nothing: a bad event fails the batch
        before = expect(b.call("GET", "/v1/stats"), 200)["events_stored"]
        problem(b.call("POST", "/v1/topics/t1/events:batch", {"events": [
            {"payload": "ok"}, {"payload": "x", "idempotency_key": ""}]}),
            400, "BAD_REQUEST")
        check(expect(b.call("GET", "/v1/stats"), 200)["events_stored"] ==
              before, "nothing stored")

        # fetch everything on s1: 4 events
        d = expect(b.call("POST", "/v1/subscriptions/s1/fetch",
                          {"max_events": 10, "consumer": "c1"}), 200)
        dl = d["deliveries"]
        check(len(dl) == 4, "4 deliveries %r" % dl)
        by_id = {x["event_id"]: x for x in dl}
        x = by_id[bin_id]
        check(x["payload_encoding"] == "base64" and
              base64.b64decode(x["payload"]) == b"\xff\x00bin", "binary")
        check(x["key"] == "acct-1" and
              x["headers"] == [{"name": "Kind", "value": "close"}], "%r" % x)
        check(by_id[native_id]["payload"] == "native" and
              by_id[native_id]["payload_encoding"] == "utf-8", "text")
        check(isinstance(x["lease_token"], str) and
              x["lease_token"].isdigit(), "token as string")
        d = expect(b.call("GET", "/v1/subscriptions/s1"), 200)
        check(d["leased"] == 4 and d["ready"] == 0, "depth %r" % d)
        # ack one, twice (the second: LEASE_LOST per item)
        items = [{"event_id": native_id,
                  "lease_token": by_id[native_id]["lease_token"]}]
        d = expect(b.call("POST", "/v1/subscriptions/s1/ack",
                          {"items": items}), 200)
        check(d["results"] == [{"event_id": native_id, "status": "OK"}],
              "%r" % d)
        d = expect(b.call("POST", "/v1/subscriptions/s1/ack",
                          {"items": items}), 200)
        check(d["results"][0]["status"] in ("OK", "LEASE_LOST"),  # acks are idempotent
              "%r" % d)
        bad = [{"event_id": bin_id, "lease_token": "12345"}]
        d = expect(b.call("POST", "/v1/subscriptions/s1/ack",
                          {"items": bad}), 200)
        check(d["results"][0]["status"] == "LEASE_LOST", "%r" % d)
        # nack with a delay: back after it
        e2, e3 = d_ids = [i for i in by_id if i not in (native_id, bin_id)]
        d = expect(b.call("POST", "/v1/subscriptions/s1/nack", {"items": [
            {"event_id": e2, "lease_token": by_id[e2]["lease_token"],
             "delay_ms": 300, "reason": "later"}]}), 200)
        check(d["results"][0]["status"] == "OK", "%r" % d)
        d = expect(b.call("POST", "/v1/subscriptions/s1/fetch",
                          {"max_events": 1, "wait_ms": 3000}), 200)
        check([x["event_id"] for x in d["deliveries"]] == [e2] and
              d["deliveries"][0]["attempt"] == 2, "redelivered %r" % d)
        expect(b.call("POST", "/v1/subscriptions/s1/ack", {"items": [
            {"event_id": e2,
             "lease_token": d["deliveries"][0]["lease_token"]}]}), 200)
        # permanent nack: dead letters
        for eid in (bin_id, e3):
            d = expect(b.call("POST", "/v1/subscriptions/s1/nack", {"items": [
                {"event_id": eid, "lease_token": by_id[eid]["lease_token"],
                 "permanent": True, "reason": "bad payload %s" % eid}]}), 200)
            check(d["results"][0]["status"] == "OK", "%r" % d)
        d = expect(b.call("GET", "/v1/subscriptions/s1/dead-letters"), 200)
        check(sorted(x["event_id"] for x in d["dead_letters"]) ==
              sorted([bin_id, e3]) and d["more"] is False, "dlq %r" % d)
        check(all(x["reason"] == "permanent" for x in d["dead_letters"]),
              "reason")
        d = expect(b.call("GET", "/v1/subscriptions/s1/dead-letters?limit=1"
                          "&reason=permanent"), 200)
        check(len(d["dead_letters"]) == 1 and d["more"] is True, "page 1")
        first = d["dead_letters"][0]["event_id"]
        d = expect(b.call("GET", "/v1/subscriptions/s1/dead-letters?limit=1"
                          "&after_event_id=" + first), 200)
        check(len(d["dead_letters"]) == 1 and
              d["dead_letters"][0]["event_id"] != first, "page 2")
        d = expect(b.call("GET", "/v1/subscriptions/s1/dead-letters"
                          "?error_contains=payload%20" + e3), 200)
        check([x["event_id"] for x in d["dead_letters"]] == [e3], "grep")
        problem(b.call("GET", "/v1/subscriptions/s1/dead-letters?reason=x"),
                400, "BAD_REQUEST", "reason")
        d = expect(b.call("GET", "/v1/subscriptions/s1/dead-letters/" +
                          bin_id), 200)
        dd = d["dead_letter"]
        check(dd["payload_encoding"] == "base64" and dd["history"] and
              dd["error"] == "bad payload " + bin_id, "show %r" % dd)
        problem(b.call("GET", "/v1/subscriptions/s1/dead-letters/999"), 404,
                "NOT_FOUND")
        # replay: dry run, then for real with a rate, then resent
        d = expect(b.call("POST", "/v1/subscriptions/s1/dead-letters:replay",
                          {"dry_run": True}), 200)
        check(sorted(d["event_ids"]) == sorted([bin_id, e3]) and
              d["dry_run"] is True, "dry %r" % d)
        body = {"rate": 1, "reason": "fixed"}
        hdr = {"Idempotency-Key": "replay-1"}
        d = expect(b.call("POST", "/v1/subscriptions/s1/dead-letters:replay",
                          body, hdr), 200)
        check(len(d["event_ids"]) == 1 and d["more"] is True,
              "rate 1: one per call %r" % d)
        replayed = d["event_ids"][0]
        d2 = expect(b.call("POST",
                           "/v1/subscriptions/s1/dead-letters:replay",
                           body, hdr), 200)
        check(d2["event_ids"] == [replayed], "resent: same reply %r" % d2)
        d = expect(b.call("GET", "/v1/subscriptions/s1/dead-letters"), 200)
        check(len(d["dead_letters"]) == 1, "ran once: one left %r" % d)
        tr = expect(b.call("GET", "/v1/events/" + replayed), 200)
        s1 = [s for s in tr["subscriptions"] if s["subscription"] == "s1"][0]
        check(s1["replays"] == 1 and s1["state"] == "ready", "%r" % s1)
        # purge: needs all (or ids); then by id
        left = d["dead_letters"][0]["event_id"]
        problem(b.call("POST", "/v1/subscriptions/s1/dead-letters:purge",
                       {"reason": "x"}), 400, "BAD_REQUEST")
        d = expect(b.call("POST", "/v1/subscriptions/s1/dead-letters:purge",
                          {"event_ids": [left, "777"], "reason": "gone"},
                          {"Idempotency-Key": "purge-1"}), 200)
        check(d["event_ids"] == [left] and d["missing"] == ["777"], "%r" % d)
        tr = expect(b.call("GET", "/v1/events/" + left), 200)
        check([s["state"] for s in tr["subscriptions"]
               if s["subscription"] == "s1"] == ["purged"], "%r" % tr)
        problem(b.call("GET", "/v1/events/424242"), 404, "NOT_FOUND")
        d = expect(b.call("GET", "/v1/audit"), 200)
        acts = [(r["action"], r["command_id"]) for r in d["records"]]
        check(acts.count(("replay", "replay-1")) == 1 and
              ("purge", "purge-1") in acts, "audit %r" % acts)
        d = expect(b.call("GET", "/v1/audit?limit=1"), 200)
        check(len(d["records"]) == 1 and d["more"] is True, "audit page")
        d = expect(b.call("GET", "/v1/stats"), 200)
        check([s["name"] for s in d["subscriptions"]] == ["s1", "s2"] and
              d["topics"][0]["name"] == "t1", "stats %r" % d)
        d = expect(b.call("GET", "/v1/health"), 200)
        check(d["status"] == "ok", "%r" % d)
        d = expect(b.call("GET", "/v1/version"), 200)
        check(d["protocol_version"] == 1 and d["version"], "%r" % d)
        for probe in ("/healthz", "/readyz"):
            d = expect(b.call("GET", probe), 200)
            check(d["status"] == "ok" and d["live"] and d["ready"],
                  "%s %r" % (probe, d))
        # pause and resume (audited like the native requests)
        problem(b.call("POST", "/v1/subscriptions/s2:pause", {}), 400,
                "BAD_REQUEST")
        problem(b.call("POST", "/v1/subscriptions/nope:pause",
                       {"reason": "x"}), 404, "NOT_FOUND")
        d = expect(b.call("POST", "/v1/subscriptions/s2:pause",
                          {"reason": "migration"}), 200)
        check(d["changed"] is True and d["paused"] is True and
              d["pause"]["reason"] == "migration", "pause %r" % d)
        d = expect(b.call("POST", "/v1/subscriptions/s2:pause",
                          {"reason": "again"}), 200)
        check(d["changed"] is False and
              d["pause"]["reason"] == "migration", "pause again %r" % d)
        d = expect(b.call("GET", "/v1/subscriptions/s2"), 200)
        check(d["paused"] is True, "shown paused %r" % d)
        d = expect(b.call("GET", "/v1/stats"), 200)
        check([s["paused"] for s in d["subscriptions"]] == [False, True],
              "stats paused %r" % d)
        d = expect(b.call("POST", "/v1/subscriptions/s2/fetch",
                          {"max_events": 5, "wait_ms": 200}), 200)
        check(d["deliveries"] == [] and d["paused"] is True,
              "paused fetch %r" % d)
        d = expect(b.call("POST", "/v1/subscriptions/s2:resume"), 200)
        check(d["changed"] is True and d["paused"] is False and
              "pause" not in d, "resume %r" % d)
        d = expect(b.call("GET", "/v1/audit"), 200)
        acts = [r["action"] for r in d["records"] if r["subscription"] == "s2"]
        check(acts == ["pause", "resume"], "pause audited %r" % acts)
        # delete: audited like the native unsubscribe
        st, _, _ = b.call("DELETE", "/v1/subscriptions/s2")
        check(st == 204, "delete %d" % st)
        problem(b.call("GET", "/v1/subscriptions/s2"), 404, "NOT_FOUND")
        problem(b.call("DELETE", "/v1/subscriptions/s2"), 404, "NOT_FOUND")
        d = expect(b.call("GET", "/v1/audit"), 200)
        check(any(r["action"] == "unsubscribe" and r["subscription"] == "s2"
                  for r in d["records"]), "unsubscribe audited")
        b.stop()
    finally:
        b.cleanup()


def test_long_poll_and_durability():
    """A long poll woken by a publish; a confirmed publish survives kill -9."""
    b = Broker().start()
    try:
        expect(b.call("PUT", "/v1/subscriptions/s", {"topic": "t"}), 201)
        out = {}

        def poll():
            t0 = time.time()
            out["r"] = b.call("POST", "/v1/subscriptions/s/fetch",
                              {"max_events": 5, "wait_ms": 10000})
            out["t"] = time.time() - t0

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        d = expect(b.call("POST", "/v1/topics/t/events", "wake"), 201)
        th.join(15)
        check(not th.is_alive(), "fetch returned")
        got = expect(out["r"], 200, "long poll")
        check([x["payload"] for x in got["deliveries"]] == ["wake"] and
              out["t"] < 5, "woken by the publish in %.1fs" % out["t"])
        # an empty long poll waits its wait_ms and returns []
        t0 = time.time()
        d2 = expect(b.call("POST", "/v1/subscriptions/s/fetch",
                           {"wait_ms": 400}), 200)
        check(d2["deliveries"] == [] and time.time() - t0 >= 0.35,
              "waited")
        d = expect(b.call("POST", "/v1/topics/t/events", "durable",
                          {"Idempotency-Key": "D1"}), 201)
        b.kill9()
        b.start()
        d2 = expect(b.call("POST", "/v1/topics/t/events", "durable",
                           {"Idempotency-Key": "D1"}), 200)
        check(d2["event_id"] == d["event_id"], "same id after restart")
        tr = expect(b.call("GET", "/v1/events/" + d["event_id"]), 200)
        check(tr["subscriptions"][0]["state"] == "ready", "%r" % tr)
        expect(b.call("POST", "/v1/subscriptions/s/fetch",
                      {"max_events": 10}), 200)
        # SIGTERM with a long poll parked: it is answered, the broker
        # exits 0 (libmicrohttpd would abort on a still-suspended request)
        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        t0 = time.time()
        b.stop()
        th.join(15)
        check(not th.is_alive() and time.time() - t0 < 5, "stopped")
        got = expect(out["r"], 200, "held fetch answered at stop")
        check(got["deliveries"] == [], "%r" % got)
    finally:
        b.cleanup()


def test_disconnect_during_long_poll():
    """A client gone while parked: the reply is dropped and logged, the
    lease runs out at its deadline and the event is delivered again."""
    b = Broker().start()
    try:
        expect(b.call("PUT", "/v1/subscriptions/s", {"topic": "t", "policy":
               {"ack_deadline_ms": 1000}}), 201)
        body = json.dumps({"wait_ms": 5000, "consumer": "gone"}).encode()
        s = socket.create_connection(("127.0.0.1", b.port))
        s.sendall(b"POST /v1/subscriptions/s/fetch HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.3)
        s.close()
        time.sleep(0.2)
        expect(b.call("POST", "/v1/topics/t/events", "x"), 201)
        deadline = time.time() + 10
        while "http_reply_dropped" not in b.logtext():
            check(time.time() < deadline, "reply drop logged")
            time.sleep(0.1)
        d = expect(b.call("POST", "/v1/subscriptions/s/fetch",
                          {"wait_ms": 5000, "consumer": "next"}), 200)
        check(len(d["deliveries"]) == 1 and
              d["deliveries"][0]["attempt"] == 2, "redelivered %r" % d)
        b.stop()
    finally:
        b.cleanup()


def test_fetch_resend():
    """A fetch resent after a lost reply, with the same consumer and
    fetch_seq, gets the same deliveries and lease tokens back (no second
    lease, no attempt spent); a new fetch_seq gets new deliveries; a held
    fetch resent while it waits hands the wait to the resend, which gets
    the event (leased once) while the first copy is told to retry (503);
    fetch_seq without a consumer of the client's own, or not a number, is
    refused."""
    b = Broker().start()
    try:
        expect(b.call("PUT", "/v1/subscriptions/s", {"topic": "t", "policy":
               {"ack_deadline_ms": 30000}}), 201)
        ids = [expect(b.call("POST", "/v1/topics/t/events", "e%d" % i),
                      201)["event_id"] for i in range(3)]
        first = {"max_events": 2, "consumer": "w1", "fetch_seq": "7"}
        d1 = expect(b.call("POST", "/v1/subscriptions/s/fetch", first), 200)
        got = [(x["event_id"], x["lease_token"], x["attempt"])
               for x in d1["deliveries"]]
        check([g[0] for g in got] == ids[:2], "first fetch %r" % d1)
        # the reply was lost: the client sends the same fetch again
        d2 = expect(b.call("POST", "/v1/subscriptions/s/fetch", first), 200)
        again = [(x["event_id"], x["lease_token"], x["attempt"])
                 for x in d2["deliveries"]]
        check(again == got, "the resend gets the same leases: %r, then %r"
              % (got, again))
        d3 = expect(b.call("POST", "/v1/subscriptions/s/fetch",
                           {"max_events": 2, "consumer": "w1",
                            "fetch_seq": 8}), 200)
        check([x["event_id"] for x in d3["deliveries"]] == ids[2:],
              "the next fetch_seq gets only the third event: %r" % d3)
        items = [{"event_id": e, "lease_token": t} for e, t, _ in again]
        acks = expect(b.call("POST", "/v1/subscriptions/s/ack",
                             {"items": items}), 200)
        check(all(r["status"] == "OK" for r in acks["results"]),
              "the resend's tokens ack: %r" % acks)
        for e in ids[:2]:
            ev = expect(b.call("GET", "/v1/events/%s" % e), 200)
            h = ev["subscriptions"][0]["history"]
            check(len(h) == 1 and h[0]["outcome"] == "acked",
                  "event %s leased once: %r" % (e, h))
        problem(b.call("POST", "/v1/subscriptions/s/fetch",
                       {"fetch_seq": "3"}), 400, "BAD_REQUEST", "fetch_seq",
                "fetch_seq with the shared default consumer")
        problem(b.call("POST", "/v1/subscriptions/s/fetch",
                       {"consumer": "w1", "fetch_seq": "x"}), 400,
                "BAD_REQUEST", "fetch_seq", "fetch_seq not a number")

        # a held fetch, resent while it waits
        expect(b.call("PUT", "/v1/subscriptions/h", {"topic": "u"}), 201)
        held = {"max_events": 1, "wait_ms": 8000, "consumer": "w2",
                "fetch_seq": "1"}
        answers = {}

        def fetch(name):
            answers[name] = b.call("POST", "/v1/subscriptions/h/fetch", held)
        t1 = threading.Thread(target=fetch, args=("first",))
        t1.start()
        time.sleep(0.5)
        t2 = threading.Thread(target=fetch, args=("resend",))
        t2.start()
        time.sleep(0.5)
        eid = expect(b.call("POST", "/v1/topics/u/events", "late"),
                     201)["event_id"]
        t1.join(15)
        t2.join(15)
        problem(answers["first"], 503, "SHUTTING_DOWN",
                what="the first copy, taken over by the resend")
        d = expect(answers["resend"], 200, "the resend")
        check([x["event_id"] for x in d["deliveries"]] == [eid],
              "the resend gets the event: %r" % d)
        ev = expect(b.call("GET", "/v1/events/%s" % eid), 200)
        h = ev["subscriptions"][0]["history"]
        check(len(h) == 1 and h[0]["consumer"] == "w2",
              "leased once, to w2: %r" % h)
        b.stop()
    finally:
        b.cleanup()


def pb_varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def pb_bytes(field, data):
    """A length-delimited protobuf field."""
    return pb_varint(field << 3 | 2) + pb_varint(len(data)) + data


def native_publish(topic, payload, idempotency_key):
    """A packed native Request{protocol_version 1, publish{topic, one
    event}} (proto/handoff.proto), unsigned."""
    event = pb_bytes(1, payload) + pb_bytes(4, idempotency_key)
    publish = pb_bytes(1, topic.encode()) + pb_bytes(2, event)
    return pb_varint(1 << 3 | 0) + pb_varint(1) + pb_bytes(11, publish)


def metrics(b):
    """One scrape of GET /metrics: {sample name with labels: value}."""
    st, _, text = b.call("GET", "/metrics", record=False)
    check(st == 200, "metrics %d" % st)
    out = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def commits_and_pairs(b):
    """Commits that wrote something, and turns of exactly two requests."""
    m = metrics(b)
    return (m["handoff_commit_duration_seconds_count"],
            m['handoff_turn_requests_bucket{le="2"}'] -
            m['handoff_turn_requests_bucket{le="1"}'])


def test_http_and_native_share_commit():
    """An HTTP publish and a native publish that arrive together are
    applied in one turn and made durable by one commit (one fsync): the
    store loop is held (HANDOFF_TEST_STALL) while both wait in the inbox;
    let go, it commits once, for a turn of two requests."""
    b = Broker()
    stall = os.path.join(b.dir, "stall")  # the loop waits while it exists
    b.env = {"HANDOFF_TEST_STALL": stall}
    b.start()
    try:
        expect(b.call("PUT", "/v1/subscriptions/s", {"topic": "t"}), 201)
        commits0, pairs0 = commits_and_pairs(b)
        open(stall, "w").close()
        deadline = time.time() + 10
        while "event=test_stall" not in b.logtext():
            check(time.time() < deadline, "the store loop held")
            time.sleep(0.02)
        answers = {}

        def http_publish():
            answers["http"] = b.call("POST", "/v1/topics/t/events", "via http",
                                     record=False)

        th = threading.Thread(target=http_publish)
        th.start()
        # the native publish from nanocat's REQ socket: the client library
        # would ping first, and its ping would wait in the held loop too
        req_file = os.path.join(b.dir, "publish.bin")
        with open(req_file, "wb") as f:
            f.write(native_publish("t", b"via native", b"share-commit-1"))
        native = subprocess.Popen(["nanocat", "--req", "--connect", b.native,
                                   "--file", req_file, "--raw"],
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        time.sleep(1.0)  # both requests are in the inbox
        check(th.is_alive() and native.poll() is None,
              "nothing confirmed while the loop is held")
        os.unlink(stall)
        out, err = native.communicate(timeout=20)
        th.join(20)
        check(native.returncode == 0 and out,
              "native publish answered: %r %r" % (out, err))
        st, _, data = answers["http"]
        check(st == 201, "HTTP publish %d %r" % (st, data))
        stats = expect(b.call("GET", "/v1/stats", record=False), 200)
        check(stats["events_stored"] == 2, "both stored: %r" % stats)
        commits, pairs = commits_and_pairs(b)
        check(commits - commits0 == 1,
              "one commit for both publishes: %d" % (commits - commits0))
        check(pairs - pairs0 == 1, "one turn of two requests: %d" %
              (pairs - pairs0))
        b.stop()
    finally:
        b.cleanup()


def raw(b, data, timeout=5, read=True):
    """Send bytes on a fresh connection; what came back ('' when closed
    without an answer)."""
    s = socket.create_connection(("127.0.0.1", b.port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return s
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            got += chunk
            if b"\r\n\r\n" in got:
                head, _, rest = got.partition(b"\r\n\r\n")
                m = re.search(rb"Content-Length: (\d+)", head, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
        return got.decode(errors="replace")
    finally:
        if read:
            s.close()


def test_bad_input():
    """Hostile HTTP: each gets its documented status or the connection is
    closed; the broker's state is unchanged and other clients go on."""
    cfg = ("[limits]\nmax_request = 64K\nmax_payload = 32K\n"
           "[http]\ntimeout = 2s\nmax_connections = 1500\n"
           "max_connections_per_ip = 50\n")
    b = Broker(cfg).start()
    try:
        expect(b.call("PUT", "/v1/subscriptions/s", {"topic": "t"}), 201)
        expect(b.call("POST", "/v1/topics/t/events", "one"), 201)

        def state():
            d = expect(b.call("GET", "/v1/subscriptions/s", record=False),
                       200)
            return (d["ready"], d["leased"], d["dead"])

        before = state()
        P = "/v1/subscriptions/s/fetch"
        problem(b.call("POST", P, "{nope"), 400, "BAD_REQUEST", "body")
        problem(b.call("POST", P, "[1]"), 400, "BAD_REQUEST", "body")
        problem(b.call("POST", P, '{"max_events":1,"max_events":2}'), 400,
                "BAD_REQUEST", "body")
        problem(b.call("POST", P, {"max_events": "ten"}), 400, "BAD_REQUEST",
                "max_events")
        problem(b.call("POST", P, {"max_events": -1}), 400, "BAD_REQUEST",
                "max_events")
        problem(b.call("POST", P, {"max_events": 2 ** 40}), 400,
                "BAD_REQUEST", "max_events")
        problem(b.call("POST", P, {"maxevents": 1}), 400, "BAD_REQUEST",
                "maxevents")
        problem(b.call("POST", "/v1/subscriptions/s/ack", {"items": [
            {"event_id": "1", "lease_token": 1.5}]}), 400, "BAD_REQUEST",
            "items[].lease_token")
        problem(b.call("POST", "/v1/subscriptions/s/ack", {"items": [
            {"event_id": "99999999999999999999", "lease_token": "1"}]}), 400,
            "BAD_REQUEST", "items[].event_id")
        problem(b.call("POST", "/v1/subscriptions/s/ack", {"items": []}), 400,
                "BAD_REQUEST", "items")
        problem(b.call("PUT", "/v1/subscriptions/x", {"topic": 5}), 400,
                "BAD_REQUEST", "topic")
        problem(b.call("POST", "/v1/topics/t/events:batch",
                       {"events": [{"payload": "%%%",
                                    "payload_encoding": "base64"}]}),
                400, "BAD_REQUEST", "events[].payload")
        problem(b.call("GET", "/v1/nothing"), 404, "NOT_FOUND")
        problem(b.call("GET", "/v1/events/abc"), 404, "NOT_FOUND")
        st, r, _ = b.call("DELETE", "/v1/stats")
        check(st == 405 and r.getheader("Allow") == "GET", "405 %d" % st)
        problem(b.call("PATCH", "/v1/subscriptions/s"), 405, "BAD_REQUEST")
        # names that are not UTF-8 (percent-encoded in the path)
        problem(b.call("POST", "/v1/topics/a%FFb/events", "x"), 400,
                "BAD_REQUEST", "topic")
        problem(b.call("PUT", "/v1/subscriptions/%C3%28", {"topic": "t"}),
                400, "BAD_REQUEST", "subscription")
        problem(b.call("POST", "/v1/topics/t/events", "x",
                       {"Handoff-Key": "a\x7fb"}), 400, "BAD_REQUEST",
                "Handoff-Key")
        problem(b.call("POST", "/v1/topics/t/events", "x" * 40000), 429 if
                False else 413, "LIMIT_EXCEEDED", what="over max_payload")
        # over max_request: refused before the body
        problem(b.call("POST", "/v1/topics/t/events", "x" * 70000), 413,
                "LIMIT_EXCEEDED", what="over max_request")
        # chunked and over max_request: the connection is closed
        got = raw(b, b"POST /v1/topics/t/events HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" +
                  (b"8000\r\n" + b"y" * 0x8000 + b"\r\n") * 3 + b"0\r\n\r\n")
        check(not got.startswith("HTTP/1.1 2"), "chunked too big: %r" %
              got[:80])
        # Transfer-Encoding with Content-Length
        got = raw(b, b"POST /v1/topics/t/events HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n")
        check(got.startswith("HTTP/1.1 400"), "TE+CL: %r" % got[:80])
        # huge headers: 431 (or closed), never served
        got = raw(b, b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nX-Big: " +
                  b"a" * 40000 + b"\r\n\r\n")
        check(got == "" or got.startswith("HTTP/1.1 431") or
              got.startswith("HTTP/1.1 413"), "huge header %r" % got[:80])
        # declared longer than sent: times out, nothing stored
        t0 = time.time()
        got = raw(b, b"POST /v1/topics/t/events HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 1000\r\n\r\nshort", timeout=10)
        check(not got.startswith("HTTP/1.1 2") and time.time() - t0 < 8,
              "short body closed in %.1fs: %r" % (time.time() - t0, got[:60]))
        # slow client: one byte every 0.5 s never finishes its headers
        s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
        closed = False
        t0 = time.time()
        try:
            for ch in b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nX-Slow: " + \
                    b"z" * 40:
                s.sendall(bytes([ch]))
                time.sleep(0.5)
                if time.time() - t0 > 12:
                    break
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        if not closed:
            s.settimeout(3)
            try:
                closed = s.recv(100) == b""
            except (ConnectionResetError, socket.timeout):
                closed = True
        s.close()
        check(closed, "slow client closed")
        # 1000 idle connections from one address: the per-address limit
        # turns most away; a client from another address is unaffected
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4096:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        idle = []
        for _ in range(1000):
            try:
                idle.append(socket.create_connection(("127.0.0.1", b.port),
                                                     timeout=2))
            except OSError:
                pass
        t0 = time.time()
        d = expect(b.call("GET", "/v1/subscriptions/s", source="127.0.0.2"),
                   200, "another client during 1000 idle connections")
        check(time.time() - t0 < 3, "served at once")
        for s in idle:
            s.close()
        time.sleep(0.5)
        check(state() == before, "state unchanged: %r vs %r" % (state(),
                                                               before))
        d = expect(b.call("GET", "/v1/stats"), 200)
        check(d["events_stored"] == 1, "nothing stored: %r" % d)
        b.stop()
    finally:
        b.cleanup()


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          **kw)


def test_tls():
    """HTTPS with a throw-away CA: curl with the CA gets through, plain
    HTTP to the TLS port and TLS 1.1 do not."""
    if not shutil.which("openssl") or not shutil.which("curl"):
        print("SKIP openssl or curl missing")
        return
    d = tempfile.mkdtemp(prefix="handoff-tls-")
    try:
        ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
        key, csr = os.path.join(d, "srv.key"), os.path.join(d, "srv.csr")
        crt, ext = os.path.join(d, "srv.pem"), os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for cmd in (
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", ca_key, "-out", ca, "-days", "2", "-subj",
             "/CN=handoff test CA"],
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
             key, "-out", csr, "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey",
             ca_key, "-CAcreateserial", "-out", crt, "-days", "2",
             "-extfile", ext]):
            r = run(cmd)
            check(r.returncode == 0, "openssl: %s" % r.stderr)
        os.chmod(key, 0o600)
        b = Broker("[http]\ntls_cert = %s\ntls_key = %s\n" % (crt, key),
                   tls=ca).start()
        try:
            url = "https://localhost:%d/v1/health" % b.port
            r = run(["curl", "-sS", "--cacert", ca, url])
            check(r.returncode == 0 and json.loads(r.stdout)["status"] ==
                  "ok", "curl https: %r %r" % (r.stdout, r.stderr))
            r = run(["curl", "-sS", "--max-time", "5",
                     "http://127.0.0.1:%d/v1/health" % b.port])
            check(r.returncode != 0 or '"status":"ok"' not in r.stdout,
                  "plain HTTP to the TLS port served: %r" % r.stdout)
            # TLS 1.0 and 1.1 refused (the client allows them at security
            # level 0, so only the server can say no)
            for v in ("-tls1", "-tls1_1"):
                r = subprocess.run(
                    ["openssl", "s_client", "-connect",
                     "127.0.0.1:%d" % b.port, v, "-cipher",
                     "DEFAULT:@SECLEVEL=0"], stdin=subprocess.DEVNULL,
                    capture_output=True, text=True, timeout=30)
                check(r.returncode != 0, "%s accepted: %s" % (v, r.stdout[-300:]))
            r = subprocess.run(
                ["openssl", "s_client", "-connect", "127.0.0.1:%d" % b.port,
                 "-tls1_2"], stdin=subprocess.DEVNULL, capture_output=True,
                text=True, timeout=30)
            check(r.returncode == 0, "TLS 1.2 refused: %s" % r.stderr[-300:])
            r = run(["curl", "-sS", url])
            check(r.returncode != 0, "no CA: unverified certificate accepted")
            expect(b.call("PUT", "/v1/subscriptions/s", {"topic": "t"}), 201)
            expect(b.call("POST", "/v1/topics/t/events", "over tls"), 201)
            b.stop()
        finally:
            b.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)


TOKENS = {"prod": "producer-token-0123456789",
          "cons": "consumer-token-0123456789",
          "ops": "operator-token-0123456789",
          "both": "both-roles-token-0123456789",
          "mon": "monitor-token-0123456789"}


def test_tokens():
    """Bearer tokens: every role boundary over HTTP, as test_access does
    natively. Denials change nothing and are logged without the token."""
    d = tempfile.mkdtemp(prefix="handoff-tok-")
    try:
        tf = os.path.join(d, "ops.token")
        with open(tf, "w") as f:
            f.write(TOKENS["ops"] + "\n")
        os.chmod(tf, 0o600)
        cfg = ("[key prod]\nrole = producer\ntoken = %s\ntopics = pay.*\n"
               "[key cons]\nrole = consumer\ntoken = %s\n"
               "subscriptions = billing\n"
               "[key ops]\nrole = operator\ntoken_file = %s\n"
               "[key both]\nrole = producer, consumer\ntoken = %s\n"
               "topics = *\nsubscriptions = *\n"
               "[key mon]\nrole = monitor\ntoken = %s\n" %
               (TOKENS["prod"], TOKENS["cons"], tf, TOKENS["both"],
                TOKENS["mon"]))
        b = Broker(cfg).start()
        try:
            T = TOKENS
            # health and version need no token; everything else does
            expect(b.call("GET", "/v1/health", token=""), 200)
            expect(b.call("GET", "/v1/version", token=""), 200)
            st, r, _ = b.call("GET", "/v1/stats", token="")
            check(st == 401 and "Bearer" in r.getheader("WWW-Authenticate"),
                  "no token: %d" % st)
            problem(b.call("GET", "/v1/stats", token="wrong-token-xxxxxxxx"),
                    401, "PERMISSION_DENIED")
            problem(b.call("GET", "/v1/stats", headers={
                "Authorization": "Basic " + T["ops"]}, token=""), 401,
                "PERMISSION_DENIED")
            # operator
            expect(b.call("PUT", "/v1/subscriptions/billing",
                          {"topic": "pay.in"}, token=T["ops"]), 201)
            expect(b.call("PUT", "/v1/subscriptions/other",
                          {"topic": "pay.in"}, token=T["ops"]), 201)
            problem(b.call("POST", "/v1/topics/pay.in/events", "x",
                           token=T["ops"]), 403, "PERMISSION_DENIED")
            problem(b.call("POST", "/v1/subscriptions/billing/fetch", {},
                           token=T["ops"]), 403, "PERMISSION_DENIED")
            # producer: its topics only, nothing else
            expect(b.call("POST", "/v1/topics/pay.in/events", "x",
                          token=T["prod"]), 201)
            problem(b.call("POST", "/v1/topics/other/events", "x",
                           token=T["prod"]), 403, "PERMISSION_DENIED")
            problem(b.call("POST", "/v1/topics/other/events:batch",
                           {"events": [{"payload": "x"}]}, token=T["prod"]),
                    403, "PERMISSION_DENIED")
            problem(b.call("POST", "/v1/subscriptions/billing/fetch", {},
                           token=T["prod"]), 403, "PERMISSION_DENIED")
            problem(b.call("GET", "/v1/stats", token=T["prod"]), 403,
                    "PERMISSION_DENIED")
            problem(b.call("PUT", "/v1/subscriptions/x", {"topic": "pay.x"},
                           token=T["prod"]), 403, "PERMISSION_DENIED")
            # consumer: its subscriptions only
            d = expect(b.call("POST", "/v1/subscriptions/billing/fetch",
                              {"max_events": 5}, token=T["cons"]), 200)
            check(len(d["deliveries"]) == 1, "%r" % d)
            problem(b.call("POST", "/v1/subscriptions/other/fetch", {},
                           token=T["cons"]), 403, "PERMISSION_DENIED")
            problem(b.call("POST", "/v1/subscriptions/other/ack", {"items": [
                {"event_id": "1", "lease_token": "1"}]}, token=T["cons"]),
                403, "PERMISSION_DENIED")
            problem(b.call("POST", "/v1/topics/pay.in/events", "x",
                           token=T["cons"]), 403, "PERMISSION_DENIED")
            problem(b.call("DELETE", "/v1/subscriptions/billing",
                           token=T["cons"]), 403, "PERMISSION_DENIED")
            problem(b.call("GET", "/v1/subscriptions/billing/dead-letters",
                           token=T["cons"]), 403, "PERMISSION_DENIED")
            dl = d["deliveries"][0]
            d = expect(b.call("POST", "/v1/subscriptions/billing/ack",
                              {"items": [{"event_id": dl["event_id"],
                                          "lease_token": dl["lease_token"]}]},
                              token=T["cons"]), 200)
            check(d["results"][0]["status"] == "OK", "%r" % d)
            # monitor (a Prometheus key): stats, the list and /metrics only
            st, r, body = b.call("GET", "/metrics", token=T["mon"])
            check(st == 200 and b"handoff_build_info" in body,
                  "monitor scrapes /metrics: %d" % st)
            expect(b.call("GET", "/v1/stats", token=T["mon"]), 200)
            expect(b.call("GET", "/v1/subscriptions", token=T["mon"]), 200)
            problem(b.call("GET", "/v1/subscriptions/billing/dead-letters",
                           token=T["mon"]), 403, "PERMISSION_DENIED")
            problem(b.call("DELETE", "/v1/subscriptions/billing",
                           token=T["mon"]), 403, "PERMISSION_DENIED")
            problem(b.call("POST", "/v1/topics/pay.in/events", "x",
                           token=T["mon"]), 403, "PERMISSION_DENIED")
            problem(b.call("POST", "/v1/subscriptions/billing/fetch", {},
                           token=T["mon"]), 403, "PERMISSION_DENIED")
            st, _, _ = b.call("GET", "/metrics", token=T["prod"])
            check(st == 403, "a producer may not scrape: %d" % st)
            # two roles in one key
            expect(b.call("POST", "/v1/topics/any/events", "x",
                          token=T["both"]), 409)  # no subscriptions
            problem(b.call("GET", "/v1/audit", token=T["both"]), 403,
                    "PERMISSION_DENIED")
            # denials changed nothing: 'other' still has its one event
            d = expect(b.call("GET", "/v1/subscriptions/other",
                              token=T["ops"]), 200)
            check(d["ready"] == 1 and d["leased"] == 0, "%r" % d)
            d = expect(b.call("GET", "/v1/audit", token=T["ops"]), 200)
            check(d["records"] == [], "no audit record from denials")
            log = b.logtext()
            check(log.count("event=request_denied") >= 14,
                  "denials logged (%d)" % log.count("event=request_denied"))
            check("via=http" in log and "key=prod" in log, "who is logged")
            for t in TOKENS.values():
                check(t not in log, "a token was logged")
            b.stop()
        finally:
            b.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_openapi():
    """proto/openapi.yaml parses, every path and method in it was
    exercised, and every JSON response received validates."""
    import warnings
    import yaml
    import jsonschema
    warnings.simplefilter("ignore", DeprecationWarning)
    with open(OPENAPI) as f:
        spec = yaml.safe_load(f)
    check(spec["openapi"].startswith("3.1"), "OpenAPI 3.1")
    paths = spec["paths"]

    def template_re(t):
        parts = re.split(r"(\{[^}]+\})", t)
        rx = "".join("(.+)" if p.startswith("{") else re.escape(p)
                     for p in parts)
        return re.compile("^" + rx + "$")

    # the most specific template wins: the most literal text
    templates = sorted(paths, key=lambda t: -len(re.sub(r"\{[^}]+\}", "",
                                                        t)))
    seen = set()
    errors = []
    resolver = jsonschema.RefResolver("", spec)
    for method, path, status, ctype, data in RECORDED:
        tmpl = next((t for t in templates if template_re(t).match(path) and
                     method.lower() in paths[t]), None)
        if tmpl is None:
            if status in (404, 405):
                continue
            errors.append("no OpenAPI path for %s %s" % (method, path))
            continue
        seen.add((tmpl, method.lower()))
        responses = paths[tmpl][method.lower()]["responses"]
        resp = responses.get(str(status)) or responses.get("default")
        if resp is None:
            errors.append("%s %s: status %d not documented" %
                          (method, tmpl, status))
            continue
        if "$ref" in resp:
            resp = spec["components"]["responses"][resp["$ref"].split("/")[-1]]
        content = resp.get("content", {})
        media = content.get(ctype.split(";")[0])
        if data is None:
            continue
        if media is None:
            errors.append("%s %s %d: content type %s not documented" %
                          (method, tmpl, status, ctype))
            continue
        try:
            jsonschema.Draft202012Validator(
                media["schema"], resolver=resolver).validate(data)
        except jsonschema.ValidationError as e:
            errors.append("%s %s %d: %s" % (method, path, status, e.message))
    for t, ops in paths.items():
        for m in ops:
            if m in ("get", "put", "post", "delete", "patch") and \
                    (t, m) not in seen:
                errors.append("never exercised: %s %s" % (m.upper(), t))
    check(not errors, "OpenAPI:\n  " + "\n  ".join(errors[:40]))


def test_extend():
    """An extended lease outlives its ack deadline; an unextended one is
    redelivered; a stale token gets LEASE_LOST; extend_ms is required."""
    b = Broker().start()
    try:
        pol = {"max_attempts": 5, "ack_deadline_ms": 1000,
               "backoff_min_ms": 100, "backoff_max_ms": 100}
        expect(b.call("PUT", "/v1/subscriptions/x",
                      {"topic": "tx", "policy": pol}), 201)
        for p in ("kept", "lapsed"):
            expect(b.call("POST", "/v1/topics/tx/events", p), 201)
        d = expect(b.call("POST", "/v1/subscriptions/x/fetch",
                          {"max_events": 2}), 200)
        by = {x["payload"]: x for x in d["deliveries"]}
        check(sorted(by) == ["kept", "lapsed"], "%r" % d)
        kept = by["kept"]
        d = expect(b.call("POST", "/v1/subscriptions/x/extend", {
            "extend_ms": 6000, "items": [
                {"event_id": kept["event_id"],
                 "lease_token": kept["lease_token"]},
                {"event_id": kept["event_id"], "lease_token": "12345"}]}),
            200)
        check([r["status"] for r in d["results"]] == ["OK", "LEASE_LOST"],
              "%r" % d)
        problem(b.call("POST", "/v1/subscriptions/x/extend", {"items": [
            {"event_id": kept["event_id"],
             "lease_token": kept["lease_token"]}]}), 400, "BAD_REQUEST",
            "extend_ms")
        # past the 1 s deadline: only the unextended one comes back
        time.sleep(1.6)
        d = expect(b.call("POST", "/v1/subscriptions/x/fetch",
                          {"max_events": 2, "wait_ms": 2000}), 200)
        check([x["payload"] for x in d["deliveries"]] == ["lapsed"] and
              d["deliveries"][0]["attempt"] == 2, "redelivered %r" % d)
        d = expect(b.call("POST", "/v1/subscriptions/x/ack", {"items": [
            {"event_id": kept["event_id"],
             "lease_token": kept["lease_token"]}]}), 200)
        check(d["results"][0]["status"] == "OK", "extended lease acked")
        # a release gives the lease back without spending the attempt
        d = expect(b.call("POST", "/v1/topics/tx/events", "released"), 201)
        rel_id = d["event_id"]
        d = expect(b.call("POST", "/v1/subscriptions/x/fetch",
                          {"max_events": 5}), 200)
        got = {x["event_id"]: x for x in d["deliveries"]}
        check(rel_id in got, "fetched %r" % d)
        d = expect(b.call("POST", "/v1/subscriptions/x/nack", {
            "release": True, "items": [
                {"event_id": rel_id,
                 "lease_token": got[rel_id]["lease_token"]}]}), 200)
        check(d["results"][0]["status"] == "OK", "%r" % d)
        tr = expect(b.call("GET", "/v1/events/" + rel_id), 200)
        hist = tr["subscriptions"][0]["history"]
        check([h["outcome"] for h in hist] == ["released"] and
              tr["subscriptions"][0]["state"] == "ready", "trace %r" % tr)
        d = expect(b.call("POST", "/v1/subscriptions/x/fetch",
                          {"max_events": 5}), 200)
        again = [x for x in d["deliveries"] if x["event_id"] == rel_id]
        check(len(again) == 1 and again[0]["attempt"] == 1,
              "released, attempt not spent %r" % d)
    finally:
        b.cleanup()


def test_backup():
    """PUT /v1/backups/{name} starts a hot backup under backup_dir (202),
    GET /v1/backups/{name} follows it to done; the copy is a store a broker
    starts on. Names that are paths, a name used twice, an unknown name and
    a broker without backup_dir are refused with their problems."""
    bdir = tempfile.mkdtemp(prefix="handoff-bk-")
    try:
        b = Broker("[broker]\nbackup_dir = %s\n" % bdir).start()
        try:
            expect(b.call("PUT", "/v1/subscriptions/bk", {"topic": "tb"}),
                   201)
            expect(b.call("POST", "/v1/topics/tb/events", "kept"), 201)
            st, _, d = b.call("PUT", "/v1/backups/nightly")
            check(st in (200, 202) and d["name"] == "nightly" and
                  d["state"] in ("running", "done"), "start: %d %r" % (st, d))
            check((st == 202) == (d["state"] == "running"),
                  "202 while running, 200 once done: %d %r" % (st, d))
            deadline = time.time() + 20
            while d["state"] == "running" and time.time() < deadline:
                time.sleep(0.1)
                d = expect(b.call("GET", "/v1/backups/nightly"), 200)
            check(d["state"] == "done" and d["bytes"] > 0 and
                  d["path"] == os.path.join(bdir, "nightly"),
                  "done: %r" % d)
            check(os.path.getsize(os.path.join(bdir, "nightly",
                                               "data.mdb")) > 0,
                  "the copy is on disk")
            problem(b.call("PUT", "/v1/backups/nightly"), 409, "CONFLICT",
                    what="a name used before")
            problem(b.call("PUT", "/v1/backups/bad!name"), 400,
                    "BAD_REQUEST", what="not a file name")
            problem(b.call("GET", "/v1/backups/never"), 404, "NOT_FOUND",
                    what="unknown backup")
            st, _, _ = b.call("POST", "/v1/backups/nightly")
            check(st == 405, "POST is not a backup method: %d" % st)
            b.stop()
        finally:
            b.cleanup()
        # the copy is a store: a broker starts on it and has the event
        c = Broker()
        c.data = os.path.join(bdir, "nightly")
        c.start()
        try:
            d = expect(c.call("GET", "/v1/subscriptions/bk"), 200)
            check(d["ready"] == 1, "the copy holds the event: %r" % d)
            c.stop()
        finally:
            c.cleanup()
        b = Broker().start()
        try:
            problem(b.call("PUT", "/v1/backups/nightly"), 400,
                    "BAD_REQUEST", what="no backup_dir")
        finally:
            b.cleanup()
    finally:
        shutil.rmtree(bdir, ignore_errors=True)


def test_await():
    """GET /v1/events/{id}?await=acked: held until the last ack (not the
    timeout), dead-lettered at once, timed out with each state, 404 for an
    unknown id, 400 for a subscription not delivered the event."""
    b = Broker().start()
    try:
        for sub in ("a", "b"):
            expect(b.call("PUT", "/v1/subscriptions/" + sub,
                          {"topic": "ta"}), 201)
        ev = expect(b.call("POST", "/v1/topics/ta/events", "one"), 201)
        eid = ev["event_id"]
        out = {}

        def wait_acked(path):
            out["r"] = b.call("GET", path)
            out["at"] = time.time()

        th = threading.Thread(target=wait_acked, args=(
            "/v1/events/%s?await=acked&timeout_ms=15000" % eid,))
        th.start()
        time.sleep(0.3)
        for sub in ("a", "b"):
            d = expect(b.call("POST", "/v1/subscriptions/%s/fetch" % sub,
                              {"max_events": 1}), 200)
            check(d["deliveries"][0]["event_id"] == eid, "%r" % d)
            time.sleep(0.3)
            check(sub == "b" or th.is_alive(), "still waiting for b")
            acked = time.time()
            d = expect(b.call("POST", "/v1/subscriptions/%s/ack" % sub, {
                "items": [{"event_id": eid, "lease_token":
                           d["deliveries"][0]["lease_token"]}]}), 200)
        th.join(20)
        check(not th.is_alive(), "await returned")
        got = expect(out["r"], 200, "await acked")
        check(got["result"] == "acked" and out["at"] - acked < 2 and
              [s["state"] for s in got["subscriptions"]] == ["acked"] * 2,
              "acked promptly: %r after %.1fs" % (got, out["at"] - acked))
        # timed out: each subscription's state; only the named ones
        ev = expect(b.call("POST", "/v1/topics/ta/events", "two"), 201)
        t0 = time.time()
        got = expect(b.call("GET", "/v1/events/%s?await=acked&timeout_ms=500"
                            "&subscriptions=b" % ev["event_id"]), 200)
        check(got["result"] == "timed_out" and time.time() - t0 >= 0.45 and
              [(s["subscription"], s["state"])
               for s in got["subscriptions"]] == [("b", "ready")],
              "timed out %r" % got)
        # dead-lettered by one: at once, saying which and why
        d = expect(b.call("POST", "/v1/subscriptions/a/fetch",
                          {"max_events": 1}), 200)
        expect(b.call("POST", "/v1/subscriptions/a/nack", {"items": [
            {"event_id": ev["event_id"],
             "lease_token": d["deliveries"][0]["lease_token"],
             "permanent": True, "reason": "no such customer"}]}), 200)
        t0 = time.time()
        got = expect(b.call("GET", "/v1/events/%s?await=acked&timeout_ms="
                            "10000" % ev["event_id"]), 200)
        check(got["result"] == "dead_lettered" and time.time() - t0 < 2 and
              "'a'" in got["message"] and
              "no such customer" in got["message"] and
              got["subscriptions"][0]["dead_reason"] == "permanent",
              "dead-lettered %r" % got)
        problem(b.call("GET", "/v1/events/424242?await=acked&timeout_ms=100"),
                404, "NOT_FOUND")
        problem(b.call("GET", "/v1/events/%s?await=acked&subscriptions=zz"
                       % eid), 400, "BAD_REQUEST")
        problem(b.call("GET", "/v1/events/%s?await=done" % eid), 400,
                "BAD_REQUEST", "await")
        problem(b.call("GET", "/v1/events/%s?await=acked&timeout_ms=999999"
                       % eid), 429, "LIMIT_EXCEEDED")
        problem(b.call("GET", "/v1/events/%s?await=acked&bogus=1" % eid),
                400, "BAD_REQUEST", "bogus")
    finally:
        b.cleanup()


SCENARIOS = [test_flow, test_long_poll_and_durability,
             test_disconnect_during_long_poll, test_fetch_resend,
             test_http_and_native_share_commit,
             test_extend, test_bad_input,
             test_tls, test_tokens, test_await, test_backup, test_openapi]


def main():
    only = sys.argv[1:]
    failed = 0
    for t in SCENARIOS:
        if only and t.__name__ not in only:
            continue
        t0 = time.time()
        try:
            t()
            print("ok   %s (%.1fs)" % (t.__name__, time.time() - t0))
        except Exception:
            failed += 1
            print("FAIL %s" % t.__name__)
            traceback.print_exc()
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
