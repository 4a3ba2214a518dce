#!/usr/bin/env python3
"""store_upgrade: the upgrade of a format-1 store (the fixture of
tests/fixtures/store-v1) to this build's format survives being cut off at
any step, by kill -9 and by a power cut.

  test_store_upgrade.py FIXTURE_DIR

For every step of the upgrade (broker/store_upgrade.c: "copying" after the
first commit of the copy, "built" once upgrade.mdb is synced, "kept" once
the old file is linked as format-1/data.mdb, "renamed" once the new file is
in place), handoffd is started on a copy of the fixture and kills itself
(SIGKILL) at that step (HANDOFF_TEST_UPGRADE_KILL). Then:
  - before "renamed", data.mdb must still be the fixture byte for byte (the
    old store, untouched and usable); from "renamed" on, it must not be,
    and format-1/data.mdb must be the fixture byte for byte;
  - a normal start must then pass every check of store_fixture_v1 (the
    upgraded store holds all the fixture's state), upgrading again only if
    the cut came before the rename;
  - a second start must not upgrade again.

Power cuts: the same with faultfs (tests/fault) preloaded, tracking
upgrade.mdb: after the kill, the new file (upgrade.mdb, or data.mdb once
renamed) is replaced by what faultfs says is durably on disk (the writes
since its last fsync lost), and the checks must still pass. The negative
control runs the "renamed" cut with HANDOFF_TEST_UPGRADE_NOSYNC=1 (the new
file never synced before the rename): the checks must then fail, or the
power-cut simulation proves nothing.

After the checks the upgraded store also takes new events for an old
subscription and delivers them (the topic log at work on an upgraded store).
Exits 1 naming every failure.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import test_store_fixture_v1 as fx  # noqa: E402

HANDOFFD = os.environ["HANDOFFD"]
CLI = os.environ["HANDOFF_CLI"]
FAULTFS_LIB = os.environ.get("FAULTFS_LIB", "")
STEPS = ["copying", "built", "kept", "renamed"]

failures = []


def fail(what):
    failures.append(what)
    print("FAIL: " + what, file=sys.stderr)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Case:
    def __init__(self, fixture, name):
        self.fixture = fixture
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="store-upgrade.")
        self.data = os.path.join(self.tmp, "data")
        os.mkdir(self.data)
        shutil.copyfile(os.path.join(fixture, "data.mdb"),
                        os.path.join(self.data, "data.mdb"))
        self.sock = "ipc://" + os.path.join(self.tmp, "sock")
        self.conf = os.path.join(self.tmp, "handoffd.conf")
        with open(self.conf, "w") as f:
            f.write("[broker]\ndata_dir = %s\nlisten = %s\nmap_size = 64M\n"
                    "[http]\nlisten = off\n"
                    "[retention]\ndedup_window = 36500d\nhistory = 36500d\n"
                    % (self.data, self.sock))
        self.logs = []

    def env(self, extra_preload="", **kw):
        env = dict(os.environ)
        preload = []
        if extra_preload:
            preload.append(extra_preload)
        if os.access(fx.FAKETIME_LIB, os.R_OK):
            preload.append(fx.FAKETIME_LIB)
            env["FAKETIME"] = "@2000-01-01 00:00:00"
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        if preload:
            env["LD_PRELOAD"] = ":".join(preload)
            asan = env.get("ASAN_OPTIONS", "")
            env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + \
                "verify_asan_link_order=0"
        env.update(kw)
        return env

    def start(self, env):
        path = os.path.join(self.tmp, "handoffd-%d.log" % len(self.logs))
        self.logs.append(path)
        log = open(path, "w")
        p = subprocess.Popen([HANDOFFD, "--config", self.conf], env=env,
                             stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return p

    def wait_up(self, p):
        """Whether broker p answers within 10 s (False if it exits)."""
        for _ in range(100):
            if p.poll() is not None:
                return False
            if subprocess.run([CLI, "--broker", self.sock, "stats"],
                              capture_output=True).returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def last_log(self):
        with open(self.logs[-1]) as f:
            return f.read()

    def cut(self, step, preload="", **env_extra):
        """Start with a kill at step; it must die of SIGKILL."""
        p = self.start(self.env(preload, HANDOFF_TEST_UPGRADE_KILL=step,
                                **env_extra))
        try:
            rc = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
            fail("%s: handoffd did not reach step %s" % (self.name, step))
        if rc != -signal.SIGKILL:
            fail("%s: handoffd exited %d, not killed at step %s: %s" %
                 (self.name, rc, step, self.last_log()))

    def serve_and_check(self, expect_upgrade, expect_ok=True):
        """Start normally, run store_fixture_v1's checks, stop."""
        exp = fx.json.load(open(os.path.join(self.fixture, "expected.json")))
        env = self.env()
        faked = "LD_PRELOAD" in env
        p = self.start(env)
        before = len(fx.failures)
        try:
            if self.wait_up(p):
                fx.run_checks(exp, self.cli, faked, self.tmp, self.sock)
                if expect_ok:
                    self.deliver_new()
            else:
                fx.fail("%s: handoffd did not start: %s" %
                        (self.name, self.last_log()))
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        found = fx.failures[before:]
        del fx.failures[before:]
        upgraded = "event=store_upgraded" in self.last_log()
        if expect_ok:
            for f in found:
                fail("%s: %s" % (self.name, f))
            if upgraded != expect_upgrade:
                fail("%s: start after the cut %s" %
                     (self.name, "did not upgrade" if expect_upgrade
                      else "upgraded again"))
        return len(found)

    def cli(self, *args, ok=True, stdin=None):
        r = subprocess.run([CLI, "--broker", self.sock, "--json"] +
                           list(args), capture_output=True, input=stdin,
                           timeout=30)
        if ok and r.returncode != 0:
            fx.fail("handoff %s: exit %d: %s" %
                    (" ".join(args), r.returncode, r.stderr.decode()))
            return None
        return fx.json.loads(r.stdout) if r.stdout.strip() else None

    def deliver_new(self):
        """An event published after the upgrade reaches an old
        subscription of its topic, from the topic log, and is acked."""
        pub = self.cli("publish", "orders", "new after upgrade")
        if not pub:
            return
        eid = pub["event_id"]
        r = subprocess.run([CLI, "--broker", self.sock, "--json", "consume",
                            "notifier", "--batch", "100", "--wait", "1s"],
                           capture_output=True, timeout=30)
        got = [fx.json.loads(line) for line in r.stdout.splitlines()
               if line.strip()]
        if r.returncode != 0 or eid not in [e.get("event_id") for e in got]:
            fx.fail("new event %d not consumed from notifier (exit %d): %r"
                    % (eid, r.returncode, got))
            return
        t = self.cli("trace", str(eid))
        states = {s["subscription"]: s["state"]
                  for s in (t or {}).get("subscriptions", [])}
        if states.get("notifier") != "acked" or states.get("ledger") != \
                "ready":
            fx.fail("new event %d: want notifier acked, ledger ready; got "
                    "%r" % (eid, states))

    def restart(self):
        """A later start opens the upgraded store as it is."""
        p = self.start(self.env())
        up = self.wait_up(p)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        if not up:
            fail("%s: no start on the upgraded store: %s" %
                 (self.name, self.last_log()))
        if "event=store_upgraded" in self.last_log():
            fail("%s: the upgraded store was upgraded again" % self.name)

    def done(self):
        if not failures:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("kept for inspection: %s" % self.tmp, file=sys.stderr)


def check_files(case, step, fixture_sum):
    data = os.path.join(case.data, "data.mdb")
    kept = os.path.join(case.data, "format-1", "data.mdb")
    if STEPS.index(step) < STEPS.index("renamed"):
        if sha256(data) != fixture_sum:
            fail("%s: data.mdb changed before the rename" % case.name)
    else:
        if sha256(data) == fixture_sum:
            fail("%s: data.mdb is still the old store after the rename" %
                 case.name)
        if not os.path.exists(kept) or sha256(kept) != fixture_sum:
            fail("%s: the old store is not kept as format-1/data.mdb" %
                 case.name)


def power_cut(case, state):
    """Replace the new file by what faultfs says is durable."""
    synced = os.path.join(state, "upgrade.mdb.synced")
    if not os.path.exists(synced):
        fail("%s: faultfs recorded nothing for upgrade.mdb" % case.name)
        return
    tmp = os.path.join(case.data, "upgrade.mdb")
    target = tmp if os.path.exists(tmp) else os.path.join(case.data,
                                                          "data.mdb")
    shutil.copyfile(synced, target)


def main():
    fixture = sys.argv[1]
    fixture_sum = sha256(os.path.join(fixture, "data.mdb"))

    for step in STEPS:
        case = Case(fixture, "kill at %s" % step)
        case.cut(step)
        check_files(case, step, fixture_sum)
        case.serve_and_check(expect_upgrade=step != "renamed")
        case.restart()
        case.done()

    if not FAULTFS_LIB:
        fail("FAULTFS_LIB not set: the power-cut cases cannot run")
    else:
        for step in ["built", "kept", "renamed"]:
            case = Case(fixture, "power cut at %s" % step)
            state = os.path.join(case.tmp, "faultfs")
            os.mkdir(state)
            case.cut(step, FAULTFS_LIB, FAULTFS_STATE=state,
                     FAULTFS_TRACK="upgrade.mdb")
            power_cut(case, state)
            check_files(case, step, fixture_sum)
            case.serve_and_check(expect_upgrade=step != "renamed")
            case.done()

        # negative control: never synced before the rename
        case = Case(fixture, "power cut at renamed, unsynced (control)")
        state = os.path.join(case.tmp, "faultfs")
        os.mkdir(state)
        env = case.env(FAULTFS_LIB, HANDOFF_TEST_UPGRADE_KILL="renamed",
                       HANDOFF_TEST_UPGRADE_NOSYNC="1", FAULTFS_STATE=state,
                       FAULTFS_TRACK="upgrade.mdb")
        p = case.start(env)
        p.wait(timeout=60)
        power_cut(case, state)
        lost = case.serve_and_check(expect_upgrade=False, expect_ok=False)
        if lost == 0:
            fail("negative control: an upgrade never synced before its "
                 "rename survived the power cut: the simulation proves "
                 "nothing")
        else:
            print("store_upgrade: negative control lost the store as it "
                  "should (%d check(s) failed)" % lost)
        shutil.rmtree(case.tmp, ignore_errors=True)

    if failures:
        print("store_upgrade: %d failure(s)" % len(failures),
              file=sys.stderr)
        sys.exit(1)
    print("store_upgrade: ok (%d kill cuts, 3 power cuts, control lost "
          "data)" % len(STEPS))


if __name__ == "__main__":
    main()
