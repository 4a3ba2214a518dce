#!/usr/bin/env bash
# test_readme.sh — README.md's walk-through ("## A walk-through"), run as
# written against a fresh handoffd: every `$H ...` command of its second sh
# block must exit 0, and every output line it shows (`#> TEXT` for stdout,
# `#> (stderr) TEXT` for stderr; `#> ...` is skipped) must appear in that
# command's output, compared with runs of spaces squeezed and times
# (2026-...Z) replaced, since those differ from run to run.
#
# Then, on the same broker, the curl walk-through of "## HTTP and JSON"
# (the sh block after "The walk-through above, with curl"), as one bash
# script with B pointed at the broker's HTTP port: it must exit 0, every
# curl must get a status below 400, and every JSON line it shows (`#>
# {...}`, a trailing `# comment` dropped) must appear in the output, where
# "..." in the shown line stands for any text.
#
# Needs HANDOFFD and HANDOFF_CLI (meson sets both), python3, curl, and
# README as its first argument.
set -euo pipefail

: "${HANDOFFD:?HANDOFFD must point at handoffd}"
: "${HANDOFF_CLI:?HANDOFF_CLI must point at the handoff CLI}"
README=${1:?usage: test_readme.sh README.md}

base=${TMPDIR:-/tmp}
[ ${#base} -gt 60 ] && base=/tmp
TMP=$(mktemp -d "$base/horeadme-XXXXXX")
URL="ipc://$TMP/broker.sock"
LOG="$TMP/broker.log"
BPID=""

cleanup() {
	local rc=$?
	if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then
		kill -9 "$BPID" 2>/dev/null || true
		wait "$BPID" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ]; then
		echo "==== handoffd log ($LOG) ====" >&2
		tail -n 60 "$LOG" >&2 2>/dev/null || true
	fi
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT

HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The walk-through's configuration is the broker's defaults.
"$HANDOFFD" --data "$TMP/data" --listen "$URL" \
	--http-listen "127.0.0.1:$HTTP_PORT" >>"$LOG" 2>&1 &
BPID=$!
for i in $(seq 1 200); do
	kill -0 "$BPID" 2>/dev/null || { echo "handoffd exited at start" >&2; exit 1; }
	"$HANDOFF_CLI" --broker "$URL" --timeout 300ms stats >/dev/null 2>&1 && break
	[ "$i" -lt 200 ] || { echo "handoffd did not answer" >&2; exit 1; }
	sleep 0.1
done

H="$HANDOFF_CLI --broker $URL" HTTP_PORT=$HTTP_PORT TMP=$TMP python3 - "$README" <<'EOF'
import os, re, subprocess, sys

text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"^## A walk-through\n(.*?)^## ", text, re.S | re.M)
if not m:
    sys.exit("README has no '## A walk-through' section")
blocks = re.findall(r"^```sh\n(.*?)^```", m.group(1), re.S | re.M)
if len(blocks) < 2:
    sys.exit("the walk-through has no second sh block")

# (command, [(stream, expected line)]) in order
steps = []
pending = None
for line in blocks[1].splitlines():
    if pending is not None:
        pending += "\n" + line
        if not line.endswith("\\"):
            steps.append((pending, []))
            pending = None
        continue
    if line.startswith("$H "):
        if line.endswith("\\"):
            pending = line
        else:
            steps.append((line, []))
    elif line.startswith("#> "):
        if not steps:
            sys.exit("output shown before any command: " + line)
        out = line[3:]
        if out.startswith("..."):
            continue
        if out.startswith("(stderr) "):
            steps[-1][1].append(("stderr", out[len("(stderr) "):]))
        else:
            steps[-1][1].append(("stdout", out))
if len(steps) < 10:
    sys.exit("only %d commands found in the walk-through" % len(steps))

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
def norm(s):
    return " ".join(TIME.sub("TIME", s).split())

failed = 0
for cmd, want in steps:
    r = subprocess.run(["bash", "-c", cmd], env=os.environ,
                       capture_output=True, text=True, timeout=60)
    got = {"stdout": [norm(l) for l in r.stdout.splitlines()],
           "stderr": [norm(l) for l in r.stderr.splitlines()]}
    if r.returncode != 0:
        failed += 1
        print("FAILED (exit %d): %s\n  stderr: %s" % (r.returncode, cmd,
              r.stderr.strip()), file=sys.stderr)
        continue
    for stream, line in want:
        if norm(line) not in got[stream]:
            failed += 1
            print("FAILED: %s\n  %s lacks: %s\n  it was:\n%s" % (
                cmd, stream, line, getattr(r, stream)), file=sys.stderr)
print("test_readme.sh: %d commands, %d expected lines, %d failures" % (
    len(steps), sum(len(w) for _, w in steps), failed))

# The curl walk-through, in the walk-through's folder (it saves fetch.json)
m = re.search(r"The walk-through above, with curl.*?^```sh\n(.*?)^```", text,
              re.S | re.M)
if not m:
    sys.exit("README has no curl walk-through")
script = m.group(1)
script = re.sub(r"^B=.*$", "B=http://127.0.0.1:" + os.environ["HTTP_PORT"],
                script, count=1, flags=re.M)
shown = []
for line in script.splitlines():
    if line.startswith("#> {"):
        shown.append(re.sub(r"\s+#.*$", "", line[3:]).strip())
# every curl fails on a status of 400 or more; the script stops there
prelude = "set -euo pipefail\ncurl() { command curl -f \"$@\"; }\n"
r = subprocess.run(["bash", "-c", prelude + script], cwd=os.environ["TMP"],
                   env=os.environ, capture_output=True, text=True, timeout=60)
if r.returncode != 0:
    failed += 1
    print("FAILED: the curl walk-through (exit %d)\n  stdout: %s\n  "
          "stderr: %s" % (r.returncode, r.stdout, r.stderr), file=sys.stderr)
for want in shown:
    rx = ".*?".join(re.escape(part) for part in want.split("..."))
    if not re.search(rx, r.stdout):
        failed += 1
        print("FAILED: the curl walk-through's output lacks %s" % want,
              file=sys.stderr)
print("test_readme.sh: curl walk-through, %d shown replies checked" %
      len(shown))
sys.exit(1 if failed else 0)
EOF
