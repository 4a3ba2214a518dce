#!/usr/bin/env bash
# test_cli_stop.sh — stopping `handoff consume --exec` with signals, against
# a real handoffd, on a subscription with max_attempts = 1 (so a spent
# attempt would dead-letter the event):
#   - one SIGINT (Ctrl-C: sent to the CLI's whole process group) while the
#     command runs: the command is not touched, finishes, its event is
#     acked, the CLI exits 0; the second event of the batch, not started,
#     is released: ready again, attempt not counted;
#   - one SIGTERM: the same;
#   - two SIGINTs: the command and its process group (a background child
#     too) are killed at once, the event is released (trace: outcome
#     released, state ready, not in the dead-letter queue), the CLI dies by
#     SIGINT; the event is delivered again as attempt 1 and can be acked.
# The CLI runs under setsid, in a process group of its own, so that
# `kill -INT -PGID` is exactly what a terminal's Ctrl-C does.
#
# Needs HANDOFFD and HANDOFF_CLI (meson sets both), python3 and setsid.
set -euo pipefail

: "${HANDOFFD:?HANDOFFD must point at handoffd}"
: "${HANDOFF_CLI:?HANDOFF_CLI must point at the handoff CLI}"

base=${TMPDIR:-/tmp}
[ ${#base} -gt 60 ] && base=/tmp
TMP=$(mktemp -d "$base/hostop-XXXXXX")
URL="ipc://$TMP/broker.sock"
LOG="$TMP/broker.log"
BPID=""
CPID=""
CHECKS=0
STEP="setup"

cleanup() {
	local rc=$?
	if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then
		kill -KILL -- "-$CPID" 2>/dev/null || true
	fi
	if [ -f "$TMP/cmd.pid" ]; then
		kill -KILL -- "-$(cat "$TMP/cmd.pid")" 2>/dev/null || true
	fi
	if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then
		kill -9 "$BPID" 2>/dev/null || true
		wait "$BPID" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ]; then
		echo "FAILED at step: $STEP (after $CHECKS passed checks)" >&2
		for f in out err cli.err; do
			if [ -s "$TMP/$f" ]; then
				echo "---- $f ----" >&2
				tail -n 40 "$TMP/$f" >&2
			fi
		done
		echo "==== handoffd log ($LOG) ====" >&2
		tail -n 100 "$LOG" >&2 2>/dev/null || true
		echo "==== end of handoffd log ====" >&2
	fi
	if [ -n "${HANDOFF_KEEP_TMP:-}" ]; then
		echo "kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit $rc
}
trap cleanup EXIT

# fail, ok, hf, run, eq, contains, json
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
# wait_for FILE: up to 20 s
wait_for() {
	local i
	for i in $(seq 1 200); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	fail "$1 did not appear within 20 s"
}

start_broker() {
	"$HANDOFFD" --data "$TMP/data" --listen "$URL" \
		--config "$TMP/handoffd.ini" >>"$LOG" 2>&1 &
	BPID=$!
	local i
	for i in $(seq 1 200); do
		kill -0 "$BPID" 2>/dev/null || fail "handoffd exited at start"
		if "$HANDOFF_CLI" --broker "$URL" --timeout 300ms stats \
			>/dev/null 2>&1; then
			ok
			return
		fi
		sleep 0.1
	done
	fail "handoffd did not answer within 20 s"
}

cat >"$TMP/handoffd.ini" <<'EOF'
[defaults]
max_attempts = 1
ack_deadline = 60s
EOF

# slow.sh: records its pid (it leads its process group when run by the
# fixed CLI) and a background child's, says it started, then works until
# $TMP/go exists.
cat >"$TMP/slow.sh" <<EOF
#!/bin/sh
echo \$\$ > "$TMP/cmd.pid"
sleep 300 &
echo \$! > "$TMP/child.pid"
touch "$TMP/started"
while [ ! -e "$TMP/go" ]; do sleep 0.05; done
kill \$! 2>/dev/null
echo "\$HANDOFF_EVENT_ID" >> "$TMP/done"
exit 0
EOF
chmod +x "$TMP/slow.sh"

# start_consumer ARGS...: the CLI under setsid, stderr in $TMP/cli.err.
start_consumer() {
	rm -f "$TMP/started" "$TMP/go" "$TMP/cmd.pid" "$TMP/child.pid"
	setsid "$HANDOFF_CLI" --broker "$URL" --timeout 10s consume sub "$@" \
		--exec "$TMP/slow.sh" >"$TMP/cli.out" 2>"$TMP/cli.err" &
	CPID=$!
	wait_for "$TMP/started"
	wait_for "$TMP/child.pid"
	[ "$(ps -o pgid= -p "$CPID" | tr -d ' ')" == "$CPID" ] ||
		fail "the CLI does not lead its own process group"
	ok
}
# wait_consumer: the CLI's exit status into $ST
wait_consumer() {
	ST=0
	wait "$CPID" || ST=$?
	CPID=""
}
# state EVENT: the delivery state and the history outcomes for sub
state_of() {
	run 0 --json trace "$1"
	json '[(s["state"], [h["outcome"] for h in s["history"]]) for s in d["subscriptions"] if s["subscription"]=="sub"][0]'
}

STEP="start broker"
start_broker
run 0 subscribe t sub --max-attempts 1 --ack-deadline 60s

# ---- one signal: the command finishes, the event is acked ------------------
for sig in INT TERM; do
	STEP="one SIG$sig"
	run 0 publish t "first $sig"
	A=$(tr -d '[:space:]' <"$TMP/out")
	run 0 publish t "second $sig"
	B=$(tr -d '[:space:]' <"$TMP/out")
	start_consumer --batch 2 --count 2 --wait 5s
	kill -"$sig" -- "-$CPID" # what Ctrl-C (or a stop) does
	sleep 0.5
	kill -0 "$CPID" 2>/dev/null || fail "the CLI did not wait for its command"
	ok
	kill -0 "$(cat "$TMP/cmd.pid")" 2>/dev/null ||
		fail "SIG$sig to the CLI's group reached the command"
	ok
	[ ! -e "$TMP/done" ] || fail "the command finished before it was told"
	ok
	touch "$TMP/go"
	wait_consumer
	eq "SIG$sig once: the CLI exits 0" "$ST" 0
	eq "SIG$sig once: the command ran to its end" "$(cat "$TMP/done")" "$A"
	rm -f "$TMP/done"
	contains "SIG$sig once: acked" "$TMP/cli.err" "event_id=$A attempt=1 result=acked"
	eq "SIG$sig once: trace of the finished event" "$(state_of "$A")" \
		'["acked", ["acked"]]'
	eq "SIG$sig once: the event not started was released, uncounted" \
		"$(state_of "$B")" '["ready", ["released"]]'
	run 0 --json dlq list sub
	eq "SIG$sig once: nothing dead-lettered" "$(json 'len(d["dead_letters"])')" 0
	# the released event comes again as attempt 1 (max_attempts 1)
	run 0 consume sub --count 1 --wait 5s --exec 'echo "$HANDOFF_ATTEMPT" > '"$TMP/attempt"
	eq "SIG$sig once: the released event is delivered again as attempt 1" \
		"$(cat "$TMP/attempt")" 1
	eq "SIG$sig once: then acked" "$(state_of "$B")" '["acked", ["released", "acked"]]'
done

# ---- two SIGINTs: the command is killed, the event released ----------------
STEP="two SIGINTs"
run 0 publish t "interrupted"
C=$(tr -d '[:space:]' <"$TMP/out")
start_consumer --count 1 --wait 5s
CMD=$(cat "$TMP/cmd.pid")
CHILD=$(cat "$TMP/child.pid")
kill -INT -- "-$CPID"
sleep 0.3
kill -INT -- "-$CPID"
wait_consumer
eq "two SIGINTs: the CLI dies by SIGINT" "$ST" 130
for i in $(seq 1 50); do
	kill -0 "$CMD" 2>/dev/null || kill -0 "$CHILD" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$CMD" 2>/dev/null && fail "the command survived the second SIGINT"
ok
kill -0 "$CHILD" 2>/dev/null && fail "the command's background child survived"
ok
[ ! -e "$TMP/done" ] || fail "the command finished"
ok
contains "two SIGINTs: logged as released" "$TMP/cli.err" "event_id=$C attempt=1 result=released"
eq "two SIGINTs: released, not dead" "$(state_of "$C")" '["ready", ["released"]]'
run 0 --json trace "$C"
eq "two SIGINTs: the reason is kept" \
	"$(json '[s["history"][0]["error"] for s in d["subscriptions"]][0]')" \
	"consumer interrupted: command killed on a second stop signal"
run 0 --json dlq list sub
eq "two SIGINTs: nothing dead-lettered (max_attempts 1)" "$(json 'len(d["dead_letters"])')" 0
run 0 consume sub --count 1 --wait 5s --exec 'echo "$HANDOFF_ATTEMPT" > '"$TMP/attempt"
eq "two SIGINTs: delivered again as attempt 1" "$(cat "$TMP/attempt")" 1
eq "two SIGINTs: then acked" "$(state_of "$C")" '["acked", ["released", "acked"]]'
run 0 trace "$C"
contains "trace text shows the released attempt" "$TMP/out" "released"

STEP="done"
echo "test_cli_stop.sh: all $CHECKS checks passed"
