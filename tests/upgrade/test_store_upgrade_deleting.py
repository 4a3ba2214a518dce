#!/usr/bin/env python3
"""store_upgrade_deleting: the upgrade of a format-1 store that holds a
subscription still being deleted (tests/fixtures/store-v1-deleting: `gone`
unsubscribed, most of its deliveries not dropped yet, the broker killed).

  test_store_upgrade_deleting.py FIXTURE_DIR

handoffd starts on a copy of the fixture with HANDOFF_TEST_STALL set (its
store loop waits while a file exists), so the test decides when the drain
of `gone` runs:
  1. the store is upgraded (event=store_upgraded, the old file kept as
     format-1/data.mdb) and the loop stalls before its first turn;
  2. two events are published while it is stalled; the loop is let go and
     they are stored at most a turn of the drain later, while `gone` is
     still deleting: the upgrade's log_end must keep them from `gone`;
  3. once they are answered the loop is stalled again and the broker killed
     (SIGKILL) in the middle of the drain (said when the drain was faster);
  4. a normal start finishes the drain: event=subscription_removed;
then, through the CLI's --json output: `gone` is gone from the lists; `keep`
has exactly what it had (stats counts, and every event consumed, payload by
payload); the events only `gone` still needed are released (events_stored,
their traces: payload removed, no `gone` delivery); the events published
after the upgrade go to `keep` only; a new subscription named `gone` starts
empty (owed only what is published after it). The committed fixture must
be unchanged (its hash). Exits 1 naming every failure.
"""

import os
import signal
import subprocess
import sys
import time

import test_store_upgrade as tu  # noqa: E402 (sets up test_store_fixture_v1)

fx = tu.fx
CLI = tu.CLI


def fail(what):
    tu.fail(what)


def wait_log(case, what, count=1, timeout=60):
    """Whether the last log holds what count times within timeout s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if case.last_log().count(what) >= count:
            return True
        time.sleep(0.02)
    return False


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    return p.wait()


def span(r):
    return range(r[0], r[1] + 1)


def trace_subs(case, eid):
    t = case.cli("trace", str(eid)) or {}
    return t, {s["subscription"]: s for s in t.get("subscriptions", [])}


def publish_while_stalled(case, stall, n):
    """n publishes sent while the loop is stalled, the loop let go: the
    events, as (id, payload)."""
    pubs = []
    for i in range(n):
        payload = "new during the drain %d" % (i + 1)
        pubs.append((payload, subprocess.Popen(
            [CLI, "--broker", case.sock, "--json", "publish", "jobs",
             payload], stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    time.sleep(1)  # at the broker's socket, waiting for the loop
    os.unlink(stall)
    got = []
    for payload, q in pubs:
        out, err = q.communicate(timeout=30)
        if q.returncode != 0:
            fail("publish during the drain: exit %d: %s" %
                 (q.returncode, err.decode()))
            continue
        got.append((fx.json.loads(out)["event_id"], payload))
    open(stall, "w").close()  # the loop waits again at its next turn
    return sorted(got)


def upgrade_and_kill(case, exp, fixture_sum):
    """Steps 1-3: the events published during the drain, and whether the
    kill came in the middle of it."""
    stall = os.path.join(case.tmp, "stall")
    open(stall, "w").close()
    p = case.start(case.env(HANDOFF_TEST_STALL=stall))
    try:
        if not wait_log(case, "event=test_stall"):
            fail("handoffd did not start (stall): %s" % case.last_log())
            return [], False
        log = case.last_log()
        if "event=store_upgraded" not in log:
            fail("the format-1 store was not upgraded: %s" % log)
        if "event=subscription_removed" in log:
            fail("gone removed before the loop's first turn: %s" % log)
        kept = os.path.join(case.data, "format-1", "data.mdb")
        if not os.path.exists(kept) or tu.sha256(kept) != fixture_sum:
            fail("the old store is not kept as format-1/data.mdb")
        new = publish_while_stalled(case, stall, 2)
        want = list(range(exp["next_event_id"], exp["next_event_id"] + 2))
        if [e for e, _ in new] != want:
            fail("publish during the drain: ids %r, want %r" % (new, want))
        if not wait_log(case, "event=test_stall", 2):
            fail("the loop did not stall again: %s" % case.last_log())
        # Stalled: nothing changes until the kill.
        mid = "event=subscription_removed" not in case.last_log()
    finally:
        p.kill()
        p.wait()
        if os.path.exists(stall):
            os.unlink(stall)
    if mid:
        print("store_upgrade_deleting: killed in the middle of the drain")
    else:
        print("store_upgrade_deleting: NOTE: the drain ended before the "
              "kill (the loop ran it faster than the test stalled it "
              "again): the restart has no drain left to finish")
    return new, mid


def check_counts(case, exp, new):
    keep = exp["keep"]
    subs = case.cli("subscriptions") or []
    names = [s.get("name") for s in subs]
    if names != ["keep"]:
        fail("subscriptions after the drain: %r, want only keep" % names)
    stats = case.cli("stats") or {}
    held = len(span(keep["ready"])) + 1 + len(new)
    fx.check_equal("stats events_stored (the drain released what only "
                   "gone held)", exp["events_stored_after_drain"] + len(new),
                   stats.get("events_stored"))
    fx.check_equal("stats topics", [{"name": exp["topic"],
                                     "published": exp["events"] + len(new),
                                     "subscriptions": 1}],
                   stats.get("topics"))
    got = [s for s in stats.get("subscriptions", []) if s["name"] == "keep"]
    # keep's lease (event 1001) is recovered at the start: ready again
    fx.check_equal("stats keep", [{
        "ready": held, "leased": 0, "delayed": 0, "dead": 0,
        "acked": len(span(keep["acked"])), "delivered": keep["delivered"]}],
        got)
    others = [s["name"] for s in stats.get("subscriptions", [])
              if s["name"] != "keep"]
    if others:
        fail("stats lists other subscriptions than keep: %r" % others)


def check_traces(case, exp, new):
    keep, gone = exp["keep"], exp["gone"]
    gid = "#%d" % gone["id"]
    # held for gone alone at the fixture (dead, leased, ready on gone,
    # acked on keep), and dropped by format 1 already: released
    released = [gone["dead"][0], gone["leased"], gone["dropped"][0],
                gone["ready"][0], keep["acked"][1]]
    # held for keep
    held = [keep["leased"], keep["ready"][0], 2000, keep["ready"][1]]
    for eid in released + held:
        t, subs = trace_subs(case, eid)
        if "gone" in subs:
            fail("trace %d: a delivery to gone: %r" % (eid, subs["gone"]))
        if gid in subs and subs[gid].get("state") != "unsubscribed":
            fail("trace %d: gone's old delivery not unsubscribed: %r" %
                 (eid, subs[gid]))
        if set(subs) - {"keep", gid}:
            fail("trace %d: other subscriptions: %r" % (eid, list(subs)))
        want_removed = eid in released
        if t.get("payload_removed") != want_removed:
            fail("trace %d: payload_removed %r, want %r" %
                 (eid, t.get("payload_removed"), want_removed))
        state = subs.get("keep", {}).get("state")
        if state != ("acked" if want_removed else "ready"):
            fail("trace %d: keep %r" % (eid, state))
    _, subs = trace_subs(case, keep["leased"])
    hist = subs.get("keep", {}).get("history", [])
    if [h.get("outcome") for h in hist] != ["broker_restart"]:
        fail("trace %d: keep's lease not recovered once: %r" %
             (keep["leased"], hist))
    for eid, _ in new:
        t, subs = trace_subs(case, eid)
        if list(subs) != ["keep"] or subs["keep"].get("state") != "ready" \
                or t.get("payload_removed"):
            fail("event %d published during the drain: want keep ready "
                 "alone with its payload, got payload_removed %r, %r" %
                 (eid, t.get("payload_removed"), subs))


def consume_all(case, sub, n):
    """Consume (and ack) up to n events of sub: {id: payload bytes}."""
    got = {}
    while len(got) < n:
        r = subprocess.run([CLI, "--broker", case.sock, "--json", "consume",
                            sub, "--batch", "500", "--wait", "1s"],
                           capture_output=True, timeout=60)
        lines = [fx.json.loads(l) for l in r.stdout.splitlines()
                 if l.strip()]
        if r.returncode != 0 or not lines:
            if r.returncode != 0:
                fail("consume %s: exit %d: %s" %
                     (sub, r.returncode, r.stderr.decode()))
            break
        for e in lines:
            got[e["event_id"]] = e.get("payload")
    return got


def check_keep_and_new_gone(case, exp, new):
    keep = exp["keep"]
    after = case.cli("publish", "jobs", "new after the drain")
    if after:
        new = new + [(after["event_id"], "new after the drain")]
        _, subs = trace_subs(case, after["event_id"])
        if list(subs) != ["keep"]:
            fail("event %d published after the drain: %r" %
                 (after["event_id"], list(subs)))
    want = {eid: exp["payload"] % eid
            for eid in [keep["leased"]] + list(span(keep["ready"]))}
    want.update(dict(new))
    got = consume_all(case, "keep", len(want))
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        wrong = sorted(e for e in set(want) & set(got) if want[e] != got[e])
        fail("keep's events: %d consumed, want %d; missing %r, extra %r, "
             "payload differs %r" % (len(got), len(want), missing[:10],
                                     extra[:10], wrong[:10]))
    stats = case.cli("stats") or {}
    fx.check_equal("stats events_stored once keep acked all", 0,
                   stats.get("events_stored"))

    # A new subscription named gone: owed only what comes after it.
    case.cli("subscribe", "jobs", "gone")
    subs = {s["name"]: s for s in case.cli("subscriptions") or []}
    fx.check_equal("new gone", {"ready": 0, "leased": 0, "dead": 0,
                                "delayed": 0}, subs.get("gone"))
    pub = case.cli("publish", "jobs", "for the new gone")
    if not pub:
        return
    got = consume_all(case, "gone", 1)
    if got != {pub["event_id"]: "for the new gone"}:
        fail("the new gone got %r, want only event %d" %
             (got, pub["event_id"]))
    for eid in [keep["ready"][0], new[0][0]]:
        _, subs = trace_subs(case, eid)
        if "gone" in subs:
            fail("trace %d: the new gone has an older event: %r" %
                 (eid, subs["gone"]))


def check_removed(case, mid):
    """One subscription_removed in all, gone's (id 2), logged by the run
    that ended the drain."""
    lines = []
    for i, path in enumerate(case.logs):
        with open(path) as f:
            lines += [(i, l.strip()) for l in f
                      if "event=subscription_removed" in l]
    run = 1 if mid else 0
    if len(lines) != 1 or lines[0][0] != run or \
            "subscription=gone id=2" not in lines[0][1]:
        fail("want one subscription_removed of gone (id 2), by run %d; "
             "got %r" % (run, lines))


def main():
    fixture = sys.argv[1]
    committed = os.path.join(fixture, "data.mdb")
    fixture_sum = tu.sha256(committed)
    exp = fx.json.load(open(os.path.join(fixture, "expected.json")))

    case = tu.Case(fixture, "deleting")
    new, mid = upgrade_and_kill(case, exp, fixture_sum)

    p = case.start(case.env())
    try:
        if not case.wait_up(p):
            fail("no start after the kill: %s" % case.last_log())
        else:
            # the drain of the old deliveries ends within seconds
            if mid and not wait_log(case, "event=subscription_removed",
                                    1, 30):
                fail("the restart did not finish removing gone: %s" %
                     case.last_log())
            if "event=store_upgraded" in case.last_log():
                fail("the upgraded store was upgraded again")
            check_removed(case, mid)
            check_counts(case, exp, new)
            check_traces(case, exp, new)
            check_keep_and_new_gone(case, exp, new)
    finally:
        rc = stop(p)
    if rc != 0:
        fail("handoffd exited %d" % rc)
    for f in fx.failures:
        tu.failures.append(f)
    if tu.sha256(committed) != fixture_sum:
        fail("the committed fixture %s changed" % committed)
    if tu.failures:
        for path in case.logs:
            with open(path) as f:
                sys.stderr.write("---- %s\n%s" % (path, f.read()[-4000:]))
    case.done()
    if tu.failures:
        print("store_upgrade_deleting: %d failure(s)" % len(tu.failures),
              file=sys.stderr)
        sys.exit(1)
    print("store_upgrade_deleting: ok (%s)" %
          ("killed mid-drain, the restart finished it" if mid else
           "drain ended before the kill"))


if __name__ == "__main__":
    main()
