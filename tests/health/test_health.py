#!/usr/bin/env python3
"""tests/health/test_health.py — health probes, systemd and JSON logs.

Scenarios (each starts the real handoffd (HANDOFFD) on a fresh folder and
drives it with the CLI (HANDOFF_CLI) and HTTP):

  probes     GET /healthz and /readyz and `handoff health [--json]` with
             access control on (no key needed); a store loop held still
             (HANDOFF_TEST_STALL) makes both probes 503 and the command
             exit 5, the failures are logged but rate-limited, and all
             recovers when the loop turns again.
  notify     the test plays systemd: a unix datagram socket as
             NOTIFY_SOCKET, WATCHDOG_USEC set. READY=1 comes only after
             lease recovery (leases left open by the previous run) and
             only once the loop turns; the broker answers when it does;
             WATCHDOG=1 comes every half interval and stops while the loop
             is held; STOPPING=1 comes on SIGTERM; every message is sent
             by the broker's own pid.
  unit       `systemd-analyze verify` accepts deploy/systemd/handoffd.service
             (a copy whose ExecStart is the built binary, as /usr/bin/handoffd
             is not installed here) and the unit has what the README says.
  json_logs  a full workload (publish, retries, dead-letter, replay, purge,
             an access-control denial, a restart) with JSON logs (the config
             key, then the flag): every line parses as one JSON object, and
             the expected events are there with their fields.

Run by meson (suite 'integration'). `test_health.py NAME...` runs only those.
Exit 77 (skip) only for `unit` when systemd-analyze is missing.
"""
import array
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

HANDOFFD = os.environ.get("HANDOFFD", "build/broker/handoffd")
CLI = os.environ.get("HANDOFF_CLI", "build/tools/handoff")
SRC = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
UNIT = os.path.join(SRC, "deploy", "systemd", "handoffd.service")

SECRET = "11" * 32
TOKEN = "admin-token-0123456789"


class Failed(Exception):
    pass


class Skipped(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def wait_for(pred, what, timeout=20.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise Failed("timed out waiting for " + what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


ACCESS = ("[key admin]\nrole = producer, consumer, operator\n"
          "secret = %s\ntoken = %s\ntopics = *\nsubscriptions = *\n"
          "[key limited]\nrole = consumer\nsecret = %s\n"
          "subscriptions = other\n" % (SECRET, TOKEN, "22" * 32))


class Broker:
    def __init__(self, config="", http=True):
        self.dir = tempfile.mkdtemp(prefix="handoff-health-")
        self.data = os.path.join(self.dir, "data")
        self.native = "ipc://" + os.path.join(self.dir, "sock")
        self.http_port = free_port() if http else None
        self.log = os.path.join(self.dir, "broker.log")
        self.cfg = os.path.join(self.dir, "handoffd.ini")
        self.stall = os.path.join(self.dir, "stall")
        with open(self.cfg, "w") as f:
            f.write(config)
        for name, hexkey in (("admin", SECRET), ("limited", "22" * 32)):
            path = os.path.join(self.dir, name + ".key")
            with open(path, "w") as f:
                f.write(hexkey + "\n")
            os.chmod(path, 0o600)
        self.proc = None

    def start(self, extra=(), env=None, wait=True):
        logf = open(self.log, "ab")
        args = [HANDOFFD, "--data", self.data, "--listen", self.native,
                "--config", self.cfg] + list(extra)
        args += ["--http-listen", "127.0.0.1:%d" % self.http_port] \
            if self.http_port else ["--http-listen", "off"]
        e = dict(os.environ, HANDOFF_TEST_NOSYNC="1",
                 HANDOFF_TEST_STALL=self.stall)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            e.pop(k, None)
        e.update(env or {})
        self.proc = subprocess.Popen(args, stdout=logf, stderr=logf, env=e)
        logf.close()
        if wait:
            wait_for(lambda: self.proc.poll() is not None or
                     self.cli("health", check_rc=False)[0] == 0,
                     "broker start")
            check(self.proc.poll() is None, "broker runs:\n" +
                  self.logtext())
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(timeout=20)
            check(rc == 0, "broker exit status %d" % rc)
        self.proc = None

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logtext(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def cli(self, *args, key="admin", check_rc=True, timeout="5s"):
        env = dict(os.environ)
        env.pop("HANDOFF_AUTH_KEY", None)
        if key:
            env["HANDOFF_AUTH_KEY"] = key
            env["HANDOFF_AUTH_SECRET_FILE"] = os.path.join(
                self.dir, key + ".key")
        p = subprocess.run([CLI, "--broker", self.native, "--timeout",
                            timeout] + list(args),
                           capture_output=True, text=True, errors="replace",
                           env=env)
        if check_rc and p.returncode != 0:
            raise Failed("handoff %s: exit %d: %s%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        return p.returncode, p.stdout, p.stderr

    def http(self, method, path, body=None, token=None, timeout=5):
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.http_port, path), method=method,
            data=None if body is None else json.dumps(body).encode())
        if token:
            req.add_header("Authorization", "Bearer " + token)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


# ---- probes -----------------------------------------------------------------

def scenario_probes():
    b = Broker(ACCESS + "[broker]\nliveness_timeout = 1s\n")
    try:
        b.start()
        for path in ("/healthz", "/readyz"):
            st, body = b.http("GET", path)  # no token: probes are open
            check(st == 200, "%s: %d %s" % (path, st, body))
            check(body["status"] == "ok" and body["live"] and
                  body["ready"] and body["store_open"] and
                  body["recovered"] and not body["storage_full"] and
                  body["reason"] == "", "%s body: %s" % (path, body))
        st, _ = b.http("GET", "/v1/stats")
        check(st == 401, "stats without a token is refused: %d" % st)
        rc, out, err = b.cli("health", key=None, check_rc=False)
        check(rc == 0 and out.strip() == "ready",
              "health without a key: %d %r %r" % (rc, out, err))
        rc, out, _ = b.cli("health", "--json", key=None, check_rc=False)
        h = json.loads(out)
        check(rc == 0 and h["reachable"] and h["live"] and h["ready"] and
              h["recovered"] and h["reason"] == "", "health --json: %s" % h)

        # hold the store loop still: not live after liveness_timeout (1 s)
        open(b.stall, "w").close()
        wait_for(lambda: "event\":\"test_stall" in b.logtext() or
                 "event=test_stall" in b.logtext(), "the stall")
        time.sleep(1.3)
        t0 = time.time()
        st, body = b.http("GET", "/healthz")
        check(time.time() - t0 < 1.0, "a hung loop is reported at once")
        check(st == 503 and body["status"] == "not live" and
              not body["live"] and body["loop_age_ms"] >= 1000 and
              body["reason"] == "store loop not turning",
              "healthz while stalled: %d %s" % (st, body))
        st, body = b.http("GET", "/readyz")
        check(st == 503 and body["status"] == "not ready" and
              not body["ready"], "readyz while stalled: %d %s" % (st, body))
        rc, out, _ = b.cli("health", "--json", key=None, check_rc=False,
                           timeout="700ms")
        h = json.loads(out)
        check(rc == 5 and not h["reachable"] and not h["live"],
              "health while stalled: %d %s" % (rc, h))
        # a probe every 50 ms for 1.5 s: logged, but not 30 times
        for _ in range(30):
            b.http("GET", "/readyz")
            time.sleep(0.05)
        lines = [ln for ln in b.logtext().splitlines()
                 if "event=not_live" in ln]
        check(1 <= len(lines) <= 3,
              "failed probes logged, rate-limited: %d lines:\n%s" %
              (len(lines), "\n".join(lines)))
        check("reason=\"store loop not turning\"" in lines[0] and
              "probe=healthz" in lines[0] and "via=http" in lines[0],
              "the log says why: " + lines[0])

        os.unlink(b.stall)
        wait_for(lambda: b.http("GET", "/readyz")[0] == 200,
                 "ready again")
        check(b.cli("health", key=None, check_rc=False)[0] == 0,
              "health exits 0 again")
        b.stop()
        rc, _, _ = b.cli("health", key=None, check_rc=False,
                         timeout="500ms")
        check(rc == 5, "health of a stopped broker exits 5: %d" % rc)
    finally:
        b.close()


# ---- notify -----------------------------------------------------------------

class Manager:
    """The systemd side of sd_notify: a datagram socket with SO_PASSCRED."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.msgs = []  # (time, pid, {field: value})

    def poll(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(
                4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except socket.timeout:
            return None
        pid = None
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", cdata[:12])[0]
        fields = dict(ln.split("=", 1) for ln in
                      data.decode().split("\n") if "=" in ln)
        m = (time.time(), pid, fields)
        self.msgs.append(m)
        return m

    def wait(self, field, value, timeout=20.0, on_msg=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.poll(max(0.01, deadline - time.time()))
            if m and on_msg:
                on_msg(m)
            if m and m[2].get(field) == value:
                return m
        raise Failed("no %s=%s from the broker (got %s)" %
                     (field, value, [m[2] for m in self.msgs]))

    def close(self):
        self.sock.close()


def scenario_notify():
    b = Broker(ACCESS)
    mgr = None
    try:
        # run 1: leave three leases open (an HTTP fetch that never acks)
        b.start()
        b.cli("subscribe", "t", "s")
        for i in range(3):
            b.cli("publish", "t", "e%d" % i)
        st, body = b.http("POST", "/v1/subscriptions/s/fetch",
                          {"max_events": 3}, token=TOKEN)
        check(st == 200 and len(body["deliveries"]) == 3,
              "fetch: %d %s" % (st, body))
        b.stop()

        # run 2 under the "manager", with the loop held still at first
        mgr = Manager(os.path.join(b.dir, "notify"))
        open(b.stall, "w").close()
        b.start(env={"NOTIFY_SOCKET": mgr.path, "WATCHDOG_USEC": "600000"},
                wait=False)
        pid = b.proc.pid
        m = mgr.wait("STATUS", "recovering leases from before the start")
        # held still: no READY=1, no WATCHDOG=1
        while mgr.poll(1.0):
            pass
        check(not any("READY" in x[2] or "WATCHDOG" in x[2]
                      for x in mgr.msgs),
              "nothing but STATUS while the loop does not turn: %s" %
              [x[2] for x in mgr.msgs])
        check(b.proc.poll() is None, "broker runs")
        st, body = b.http("GET", "/readyz")
        check(st == 503 and not body["recovered"],
              "not ready before recovery: %d %s" % (st, body))

        os.unlink(b.stall)
        m = mgr.wait("READY", "1")
        log = b.logtext()
        check("event=leases_recovered count=3" in log,
              "READY=1 came after the leases were recovered:\n" + log)
        check(log.count("event=lease_recovered") == 3,
              "three leases recovered:\n" + log)
        check(m[2].get("STATUS", "").startswith("serving (3 leases"),
              "READY carries a status: %s" % m[2])
        # ready means ready: the broker answers, the leases are back
        rc, out, _ = b.cli("health", "--json", key=None, check_rc=False)
        h = json.loads(out)
        check(rc == 0 and h["ready"] and h["recovered_leases"] == 3,
              "health at READY: %d %s" % (rc, h))
        st, body = b.http("GET", "/readyz")
        check(st == 200 and body["recovered_leases"] == 3,
              "readyz at READY: %d %s" % (st, body))
        st, body = b.http("POST", "/v1/subscriptions/s/fetch",
                          {"max_events": 3}, token=TOKEN)
        check(st == 200 and len(body["deliveries"]) == 3,
              "the recovered leases are delivered again: %s" % body)

        # the watchdog: every 300 ms (half of 600 ms) while the loop turns
        n0 = len(mgr.msgs)
        t_end = time.time() + 2.0
        while time.time() < t_end:
            mgr.poll(0.1)
        pets = [x for x in mgr.msgs[n0:] if x[2].get("WATCHDOG") == "1"]
        check(5 <= len(pets) <= 9, "WATCHDOG=1 every 300 ms over 2 s: %d" %
              len(pets))
        gaps = [b_[0] - a[0] for a, b_ in zip(pets, pets[1:])]
        check(max(gaps) < 0.55, "no gap near the interval: %s" % gaps)
        # held still: the pets stop (systemd would kill it)
        open(b.stall, "w").close()
        wait_for(lambda: "event=test_stall" in b.logtext(), "the stall")
        while mgr.poll(0.1):
            pass
        n1 = len(mgr.msgs)
        t_end = time.time() + 1.5
        while time.time() < t_end:
            mgr.poll(0.1)
        check(not any(x[2].get("WATCHDOG") for x in mgr.msgs[n1:]),
              "no WATCHDOG=1 while the loop is held")
        os.unlink(b.stall)
        mgr.wait("WATCHDOG", "1", timeout=5)

        # SIGTERM: STOPPING=1, then a clean exit
        b.proc.send_signal(signal.SIGTERM)
        mgr.wait("STOPPING", "1", timeout=10)
        check(b.proc.wait(timeout=20) == 0, "clean exit")
        b.proc = None
        check(all(x[1] == pid for x in mgr.msgs),
              "every message from the broker's pid %d: %s" %
              (pid, [x[1] for x in mgr.msgs]))
        seq = [k for x in mgr.msgs for k in x[2] if k in
               ("READY", "STOPPING")]
        check(seq == ["READY", "STOPPING"], "READY once, then STOPPING: %s"
              % seq)
    finally:
        if mgr:
            mgr.close()
        b.close()


# ---- unit -------------------------------------------------------------------

def scenario_unit():
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        raise Skipped("systemd-analyze not installed (Debian: systemd)")
    with open(UNIT) as f:
        text = f.read()
    lines = [ln.strip() for ln in text.splitlines()]
    for want in ("Type=notify", "NotifyAccess=main", "User=handoff",
                 "StateDirectory=handoff handoff-backups",
                 "ConfigurationDirectory=handoff",
                 "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                 "MemoryDenyWriteExecute=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "SystemCallFilter=@system-service"):
        check(want in lines, "the unit has %s" % want)
    check(any(ln.startswith("WatchdogSec=") for ln in lines),
          "the unit sets WatchdogSec")
    exec_lines = [ln for ln in lines if ln.startswith("ExecStart=")]
    check(len(exec_lines) == 1 and exec_lines[0].startswith(
        "ExecStart=/usr/bin/handoffd --config /etc/handoff/handoffd.conf "
        "--data /var/lib/handoff"), "ExecStart: %s" % exec_lines)
    # the ExecStart flags are ones handoffd takes
    d = tempfile.mkdtemp(prefix="handoff-unit-")
    try:
        copy = os.path.join(d, "handoffd.service")
        with open(copy, "w") as f:
            f.write(text.replace("ExecStart=/usr/bin/handoffd",
                                 "ExecStart=" + os.path.abspath(HANDOFFD)))
        p = subprocess.run([analyze, "verify", copy], capture_output=True,
                           text=True)
        check(p.returncode == 0 and p.stdout.strip() == "" and
              p.stderr.strip() == "",
              "systemd-analyze verify: exit %d\n%s%s" %
              (p.returncode, p.stdout, p.stderr))
        # the installed path is the only complaint about the original
        if not os.path.exists("/usr/bin/handoffd"):
            p = subprocess.run([analyze, "verify", UNIT],
                               capture_output=True, text=True)
            other = [ln for ln in (p.stdout + p.stderr).splitlines()
                     if ln.strip() and "/usr/bin/handoffd" not in ln]
            check(not other, "verify of the original: %s" % other)
        conf = os.path.join(SRC, "deploy", "handoff", "handoffd.conf")
        p = subprocess.run([HANDOFFD, "--config", conf, "--data",
                            os.path.join(d, "data"), "--listen",
                            "ipc://" + os.path.join(d, "s"),
                            "--http-listen", "off", "--bogus-check"],
                           capture_output=True, text=True)
        check(p.returncode == 2, "handoffd rejects an unknown flag")
        p = subprocess.run([HANDOFFD, "--help"], capture_output=True,
                           text=True)
        check("--config" in p.stdout and "--data" in p.stdout,
              "handoffd takes --config and --data")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    with open(os.path.join(SRC, "deploy", "systemd",
                           "handoff.sysusers")) as f:
        users = [ln.split() for ln in f if ln.strip() and
                 not ln.startswith("#")]
    check(users and users[0][:2] == ["u", "handoff"],
          "sysusers.d creates the unit's user: %s" % users)


# ---- json_logs --------------------------------------------------------------

def parse_log(text):
    recs = []
    for n, ln in enumerate(text.split("\n")):
        if ln == "":
            check(n == len(text.split("\n")) - 1, "an empty line at %d" % n)
            continue
        try:
            r = json.loads(ln)
        except ValueError as e:
            raise Failed("line %d is not JSON (%s): %r" % (n + 1, e, ln))
        check(isinstance(r, dict), "line %d is an object: %r" % (n + 1, ln))
        check(list(r)[:3] == ["ts", "level", "event"],
              "line %d starts with ts, level, event: %r" % (n + 1, ln))
        check(r["level"] in ("debug", "info", "warn", "error"),
              "level: %r" % ln)
        recs.append(r)
    return recs


def scenario_json_logs():
    b = Broker(ACCESS + "[broker]\nlog_format = json\n")
    try:
        b.start()
        b.cli("subscribe", "t", "s", "--max-attempts", "2", "--backoff",
              "10ms..20ms")
        for i in range(2):
            b.cli("publish", "t", "payload %d" % i)
        # retries, then dead letters; the nack reason carries bytes that
        # are not UTF-8, quotes, backslashes and control bytes
        reason = r"""printf 'bad \377\001 "q" \\ caf\303\251 tab\t' >&2"""
        b.cli("consume", "s", "--count", "4", "--wait", "2s", "--exec",
              reason + "; exit 75")
        wait_for(lambda: b.cli("--json", "dlq", "list", "s")[1].count(
            "event_id") >= 2, "two dead letters", timeout=10)
        b.cli("dlq", "replay", "s")
        b.cli("consume", "s", "--count", "2", "--wait", "2s", "--exec",
              "exit 100")
        b.cli("dlq", "purge", "s", "--yes", "--why", "test")
        rc, _, _ = b.cli("publish", "t", "x", key="limited", check_rc=False)
        check(rc == 10, "the limited key is denied: %d" % rc)
        st, _ = b.http("POST", "/v1/topics/t/events", {"payload": "y"},
                       token="wrong-token-000000000")
        check(st == 401, "a wrong token is denied: %d" % st)
        # leave a lease open across the restart
        b.cli("publish", "t", "leased")
        st, body = b.http("POST", "/v1/subscriptions/s/fetch",
                          {"max_events": 1}, token=TOKEN)
        check(st == 200 and len(body["deliveries"]) == 1, "fetch: %s" % body)
        b.stop()
        # restart: the flag this time, over a config that says kv
        with open(b.cfg, "w") as f:
            f.write(ACCESS + "[broker]\nlog_format = kv\n")
        b.start(extra=["--log-format", "json"])
        b.cli("stats")
        b.stop()

        recs = parse_log(b.logtext())
        by = {}
        for r in recs:
            by.setdefault(r["event"], []).append(r)

        def one(event, **fields):
            for r in by.get(event, []):
                if all(r.get(k) == v for k, v in fields.items()):
                    return r
            raise Failed("no %s with %s in the log; events: %s" %
                         (event, fields, sorted(by)))

        check(len(by.get("broker_started", [])) == 2, "two starts")
        check(len(by.get("broker_stopped", [])) == 2, "two stops")
        one("broker_started", version=one("broker_started")["version"])
        check(isinstance(one("broker_started")["next_event_id"], int),
              "numbers are numbers")
        one("subscription_created", subscription="s", topic="t")
        r = one("redelivery_scheduled", subscription="s", attempt=1)
        check(isinstance(r["event_id"], int) and
              isinstance(r["delay_ms"], int), "redelivery fields: %s" % r)
        # 0xff is not UTF-8: the text \xff; 0x01 is \u0001 in JSON, a
        # control character again once parsed; the rest as it was
        check(r["error"] == 'bad \\xff\x01 "q" \\ caf\u00e9 tab',
              "arbitrary bytes survive, escaped: %r" % r["error"])
        r = one("dead_lettered", subscription="s")
        check(r["attempts"] == 2 and r["reason"], "dead_lettered: %s" % r)
        check(len(by["dead_lettered"]) >= 4, "dead-lettered twice each")
        check(by.get("dead_letter_replayed"), "replay logged")
        check(by.get("dead_letter_purged"), "purge logged")
        denied = by.get("request_denied", [])
        check(any(d.get("key") == "limited" for d in denied),
              "native denial logged: %s" % denied)
        check(any(d.get("via") == "http" for d in denied),
              "HTTP denial logged: %s" % denied)
        check(one("leases_recovered", count=1), "the lease recovered")
        check(by.get("lease_recovered"), "lease_recovered logged")
        check(by.get("broker_stopping"), "stopping logged")
    finally:
        b.close()


SCENARIOS = {
    "probes": scenario_probes,
    "notify": scenario_notify,
    "unit": scenario_unit,
    "json_logs": scenario_json_logs,
}


def main():
    names = sys.argv[1:] or list(SCENARIOS)
    failed, skipped = [], []
    for name in names:
        t0 = time.time()
        try:
            SCENARIOS[name]()
            print("ok   %s (%.1fs)" % (name, time.time() - t0), flush=True)
        except Skipped as e:
            print("skip %s: %s" % (name, e), flush=True)
            skipped.append(name)
        except Exception:
            print("FAIL %s" % name, flush=True)
            traceback.print_exc()
            failed.append(name)
    if failed:
        print("failed: " + " ".join(failed))
        return 1
    return 77 if skipped and len(skipped) == len(names) else 0


if __name__ == "__main__":
    sys.exit(main())
