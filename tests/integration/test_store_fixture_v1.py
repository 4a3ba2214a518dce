#!/usr/bin/env python3
"""store_fixture_v1: the current handoffd reads a store written by the
format-1 release (tests/fixtures/store-v1/data.mdb) as it was written.

  test_store_fixture_v1.py FIXTURE_DIR

FIXTURE_DIR holds data.mdb and expected.json (see tests/fixtures/README.md).
The fixture is copied to a temporary folder: LMDB writes to the file it
opens, and the committed one must never change (checked by its hash).

The broker runs under libfaketime with its wall clock in 2000, so broker
time resumes from the store's clock mark (README "Clocks"): the fixture's
24 h nack delay is then still pending, whatever today's date. Without
libfaketime (Debian package faketime) the test still runs, and expects that
event ready once its due time has passed on the wall clock.

Checked through the CLI's --json output: every subscription with its
counts, policy, pause and push settings; the trace of every event; each
dead-letter queue (the purged letter absent, the replayed ones out of it);
two dead letters in full (payload, headers, history); the audit record;
three ready events fetched (payload bytes, key, headers, attempt) and left
unacked; the idempotency key still mapping to its event; new ids after the
fixture's. Exits 1 naming every difference, 77 (skip) never.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HANDOFFD = os.environ["HANDOFFD"]
CLI = os.environ["HANDOFF_CLI"]
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

failures = []


def fail(what):
    failures.append(what)
    print("FAIL: " + what, file=sys.stderr)


def check_equal(path, want, got):
    """Every key of want must be in got with the same value (recursively);
    lists must have the same length. Keys only in got are not checked."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            fail("%s: want an object, got %r" % (path, got))
            return
        for k, v in want.items():
            if k not in got:
                fail("%s.%s: missing (want %r)" % (path, k, v))
            else:
                check_equal("%s.%s" % (path, k), v, got[k])
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            fail("%s: want %d items %r, got %r" %
                 (path, len(want), want, got))
            return
        for i, (w, g) in enumerate(zip(want, got)):
            check_equal("%s[%d]" % (path, i), w, g)
    elif want != got or type(want) != type(got):
        fail("%s: want %r, got %r" % (path, want, got))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    fixture = sys.argv[1]
    committed = os.path.join(fixture, "data.mdb")
    with open(os.path.join(fixture, "expected.json")) as f:
        exp = json.load(f)
    before = sha256(committed)

    tmp = tempfile.mkdtemp(prefix="store-fixture-v1.")
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    shutil.copyfile(committed, os.path.join(data, "data.mdb"))
    sock = "ipc://" + os.path.join(tmp, "sock")
    conf = os.path.join(tmp, "handoffd.conf")
    with open(conf, "w") as f:
        f.write("[broker]\ndata_dir = %s\nlisten = %s\nmap_size = 64M\n"
                "[http]\nlisten = off\n"
                "[retention]\ndedup_window = 36500d\nhistory = 36500d\n" %
                (data, sock))

    env = dict(os.environ)
    faked = os.access(FAKETIME_LIB, os.R_OK)
    if faked:
        env["LD_PRELOAD"] = FAKETIME_LIB
        env["FAKETIME"] = "@2000-01-01 00:00:00"
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        asan = env.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + \
            "verify_asan_link_order=0"
    else:
        print("store_fixture_v1: %s not installed (Debian package "
              "faketime): broker time is today's, so event 2's 24 h delay on "
              "ledger is over a day after the fixture was made"
              % FAKETIME_LIB, file=sys.stderr)
    log = open(os.path.join(tmp, "handoffd.log"), "w")
    broker = subprocess.Popen([HANDOFFD, "--config", conf], env=env,
                              stdout=log, stderr=subprocess.STDOUT)

    def cli(*args, ok=True, stdin=None):
        r = subprocess.run([CLI, "--broker", sock, "--json"] + list(args),
                           capture_output=True, input=stdin, timeout=30)
        if ok and r.returncode != 0:
            fail("handoff %s: exit %d: %s" %
                 (" ".join(args), r.returncode, r.stderr.decode()))
            return None
        return json.loads(r.stdout) if r.stdout.strip() else None

    try:
        for _ in range(100):
            if subprocess.run([CLI, "--broker", sock, "stats"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        run_checks(exp, cli, faked, tmp, sock)
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            rc = broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            broker.kill()
            rc = broker.wait()
        log.close()
        if rc != 0:
            fail("handoffd exited %d" % rc)
        if sha256(committed) != before:
            fail("the committed fixture %s changed" % committed)
        if failures:
            with open(os.path.join(tmp, "handoffd.log")) as f:
                sys.stderr.write(f.read())
        shutil.rmtree(tmp, ignore_errors=True)

    if failures:
        print("store_fixture_v1: %d difference(s)" % len(failures),
              file=sys.stderr)
        sys.exit(1)
    print("store_fixture_v1: ok (faketime %s)" % ("on" if faked else "off"))


def run_checks(exp, cli, faked, tmp, sock):
    mark = exp["clock_mark_ms"]
    subs = json.loads(json.dumps(exp["subscriptions"]))
    traces = json.loads(json.dumps(exp["traces"]))

    # Event 2 was nacked on ledger with a 24 h delay. Broker time resumes
    # from the mark under faketime; without it the delay may be over.
    ledger2 = [s for s in traces["2"]["subscriptions"]
               if s["subscription"] == "ledger"][0]
    if not faked and time.time() * 1000 >= ledger2["due_ms"]:
        ledger2["state"] = "ready"
        ledger = [s for s in subs if s["name"] == "ledger"][0]
        ledger["ready"] += ledger["delayed"]
        ledger["delayed"] = 0

    got = cli("subscriptions")
    check_equal("subscriptions", subs, got)

    for eid, want in sorted(traces.items()):
        got = cli("trace", eid)
        check_equal("trace %s" % eid, want, got)
        if eid == "3" and got:
            # The lease out when the fixture's broker stopped: recovered
            # at this start as attempt 1 (outcome broker_restart), ready at
            # once, its times those of this start.
            s = [x for x in got["subscriptions"]
                 if x["subscription"] == "ledger"][0]
            if not (s.get("due_ms", 0) >= mark and
                    s["history"][0].get("ended_ms", 0) >= mark):
                fail("trace 3 ledger: recovery times before the store's "
                     "clock mark %d: %r" % (mark, s))

    for sub, want in exp["dead_letters"].items():
        got = cli("dlq", "list", sub)
        check_equal("dlq list %s" % sub, want,
                    got.get("dead_letters") if got else None)
    for key, want in exp["dead_letter_shows"].items():
        sub, eid = key.split("/")
        check_equal("dlq show %s" % key, want, cli("dlq", "show", sub, eid))
    got = cli("dlq", "show", "notifier", "4", ok=False)
    if got is not None:
        fail("dlq show notifier 4: the purged letter is back: %r" % got)

    check_equal("audit", exp["audit"], cli("audit"))

    stats = cli("stats")
    hook = [s for s in (stats or {}).get("subscriptions", [])
            if s["name"] == "hook"]
    check_equal("stats hook", [{"paused": True, "push_state": "paused",
                                "push_url": "http://127.0.0.1:1/hook",
                                "paused_reason":
                                "fixture: receiver not deployed"}], hook)
    check_equal("stats events_stored", 7,
                (stats or {}).get("events_stored"))

    # Three ready events of mailer, fetched in due order (7, 8, then 6,
    # replayed after 7 and 8 were published) and left unacked: the command
    # keeps what it got and kills consume, so the leases stay out.
    fetched = os.path.join(tmp, "fetched")
    os.mkdir(fetched)
    cmd = ('cat >"%s/payload.$HANDOFF_EVENT_ID"; '
           'env | grep ^HANDOFF_ | sort >"%s/env.$HANDOFF_EVENT_ID"; '
           'kill -KILL $PPID' % (fetched, fetched))
    for _ in range(3):
        subprocess.run([CLI, "--broker", sock, "consume", "mailer",
                        "--wait", "2s", "--exec", cmd],
                       capture_output=True, timeout=30)
    want = {
        "7": (b"mail seven", {"HANDOFF_KEY": "user-7",
                              "HANDOFF_ATTEMPT": "1"}),
        "8": (b"mail\0eight\377", {"HANDOFF_KEY": "user-8",
                                   "HANDOFF_ATTEMPT": "1"}),
        "6": (b"mail six", {"HANDOFF_KEY": "", "HANDOFF_ATTEMPT": "2"}),
    }
    for eid, (payload, envs) in want.items():
        try:
            with open(os.path.join(fetched, "payload." + eid), "rb") as f:
                got_payload = f.read()
            with open(os.path.join(fetched, "env." + eid)) as f:
                got_env = dict(l.rstrip("\n").split("=", 1)
                               for l in f if "=" in l)
        except OSError as e:
            fail("mailer event %s not delivered: %s" % (eid, e))
            continue
        if got_payload != payload:
            fail("mailer event %s payload: want %r, got %r" %
                 (eid, payload, got_payload))
        envs = dict(envs, HANDOFF_TOPIC="mail",
                    HANDOFF_SUBSCRIPTION="mailer", HANDOFF_EVENT_ID=eid)
        for k, v in envs.items():
            if got_env.get(k, "") != v:
                fail("mailer event %s %s: want %r, got %r" %
                     (eid, k, v, got_env.get(k)))
        t = cli("trace", eid)
        s = t["subscriptions"][0] if t else {}
        if s.get("state") != "leased":
            fail("mailer event %s after the fetch: want leased, got %r" %
                 (eid, s.get("state")))

    # The idempotency key still maps to its event (dedup_window 100 years;
    # records from before a start are kept a window of this run too).
    topic, key, eid = exp["idempotency_key"]
    check_equal("publish --idempotency-key %s" % key,
                {"event_id": eid, "duplicate": True},
                cli("publish", topic, "--idempotency-key", key, "again"))
    # New events get ids after the fixture's.
    check_equal("publish a new event", {"event_id": exp["next_event_id"]},
                cli("publish", "mail", "after the fixture"))
    check_equal("publish another", {"event_id": exp["next_event_id"] + 1},
                cli("publish", "orders", "after the fixture"))


if __name__ == "__main__":
    main()
