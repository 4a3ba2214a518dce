#!/usr/bin/env bash
# test_cli.sh — an operator's walk-through with the `handoff` CLI against a
# real handoffd: subscribe, publish, consume --exec (ack, retry, permanent,
# a slow command's lease extended, up to --max-extend), extend,
# the dead-letter queue (list, show, replay --dry-run, replay, purge with and
# without --yes), trace, subscriptions, stats, await and publish
# --await-acked (completion receipts), --json output and exit codes.
#
# Needs HANDOFFD and HANDOFF_CLI (meson sets both) and python3 (JSON checks).
# Every check counts; the first failing one stops the script with its
# description, the broker log and exit status 1.
set -euo pipefail

: "${HANDOFFD:?HANDOFFD must point at handoffd}"
: "${HANDOFF_CLI:?HANDOFF_CLI must point at the handoff CLI}"

base=${TMPDIR:-/tmp}
[ ${#base} -gt 60 ] && base=/tmp
TMP=$(mktemp -d "$base/hocli-XXXXXX")
URL="ipc://$TMP/broker.sock"
LOG="$TMP/broker.log"
BPID=""
CHECKS=0
STEP="setup"

cleanup() {
	local rc=$?
	if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then
		kill -9 "$BPID" 2>/dev/null || true
		wait "$BPID" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ]; then
		echo "FAILED at step: $STEP (after $CHECKS passed checks)" >&2
		for f in out err; do
			if [ -s "$TMP/$f" ]; then
				echo "---- last CLI std$f ----" >&2
				tail -n 40 "$TMP/$f" >&2
			fi
		done
		echo "==== handoffd log ($LOG) ====" >&2
		tail -n 200 "$LOG" >&2 2>/dev/null || true
		echo "==== end of handoffd log ====" >&2
	elif [ -n "${HANDOFF_TEST_VERBOSE:-}" ]; then
		cat "$LOG" >&2
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

start_broker() {
	"$HANDOFFD" --data "$TMP/data" --listen "$URL" \
		--config "$TMP/handoffd.ini" >>"$LOG" 2>&1 &
	BPID=$!
	local i
	for i in $(seq 1 200); do
		if ! kill -0 "$BPID" 2>/dev/null; then
			fail "handoffd exited at start"
		fi
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
max_attempts = 3
ack_deadline = 500ms
backoff_min = 50ms
backoff_max = 200ms
[limits]
max_payload = 64K
EOF

# Consumer scripts. ok.sh records what it was given, then succeeds.
cat >"$TMP/ok.sh" <<EOF
#!/bin/sh
cat > "$TMP/seen.payload"
env | grep '^HANDOFF_' | sort > "$TMP/seen.env"
exit 0
EOF
chmod +x "$TMP/ok.sh"

STEP="start broker"
start_broker

# ---- subscriptions ------------------------------------------------------
STEP="subscribe"
run 0 subscribe orders billing --max-attempts 3 --ack-deadline 5s \
	--backoff 50ms..100ms
contains "first subscribe says created" "$TMP/out" "created"
run 0 subscribe orders billing --max-attempts 3 --ack-deadline 5s \
	--backoff 50ms..100ms
contains "second subscribe says exists" "$TMP/out" "exists"
run 4 subscribe orders billing --max-attempts 9
run 0 subscribe orders audit
run 0 --json subscriptions
eq "subscriptions --json is a list of 2" "$(json 'len(d)')" 2
eq "audit takes the config defaults" \
	"$(json '[s for s in d if s["name"]=="audit"][0]["policy"]["max_attempts"]')" 3
eq "audit ack deadline default" \
	"$(json '[s for s in d if s["name"]=="audit"][0]["policy"]["ack_deadline_ms"]')" 500
eq "billing keeps its policy" \
	"$(json '[s for s in d if s["name"]=="billing"][0]["policy"]["ack_deadline_ms"]')" 5000

# ---- publish -------------------------------------------------------------
STEP="publish"
run 7 publish nowhere "no one listens"
eq "no subscriptions: one line" "$(wc -l <"$TMP/err" | tr -d ' ')" 1
eq "no subscriptions: said once" "$(grep -o 'no subscriptions' "$TMP/err" | wc -l | tr -d ' ')" 1
contains "no subscriptions: names the topic" "$TMP/err" "publish to 'nowhere'"
run 0 publish orders --key cust-1 --header Trace-Id=abc-123 \
	--idempotency-key o-1 "hello world"
ID1=$(tr -d '[:space:]' <"$TMP/out")
[[ "$ID1" =~ ^[0-9]+$ ]] || fail "publish printed '$ID1', not an event id"
ok
run 0 --json publish orders --key cust-1 --idempotency-key o-1 "hello world"
eq "same idempotency key, same id" "$(json 'd["event_id"]')" "$ID1"
eq "reported as duplicate" "$(json 'd["duplicate"]')" true
# payload from stdin
ID_STDIN=$(printf 'line1\nline2' | hf publish orders --key stdin -) || fail "publish from stdin"
[[ "$ID_STDIN" =~ ^[0-9]+$ ]] || fail "stdin publish printed '$ID_STDIN'"
ok

# ---- consume --exec that succeeds -> acked ------------------------------
STEP="consume --exec ok"
run 0 consume billing --count 1 --wait 5s --exec "$TMP/ok.sh"
eq "exec got the payload on stdin" "$(cat "$TMP/seen.payload")" "hello world"
contains "HANDOFF_EVENT_ID" "$TMP/seen.env" "HANDOFF_EVENT_ID=$ID1"
contains "HANDOFF_TOPIC" "$TMP/seen.env" "HANDOFF_TOPIC=orders"
contains "HANDOFF_KEY" "$TMP/seen.env" "HANDOFF_KEY=cust-1"
contains "HANDOFF_ATTEMPT" "$TMP/seen.env" "HANDOFF_ATTEMPT=1"
contains "HANDOFF_HEADER_TRACE_ID" "$TMP/seen.env" "HANDOFF_HEADER_TRACE_ID=abc-123"
run 0 --json trace "$ID1"
eq "trace: billing acked" \
	"$(json '[s for s in d["subscriptions"] if s["subscription"]=="billing"][0]["state"]')" acked
eq "trace: audit still ready" \
	"$(json '[s for s in d["subscriptions"] if s["subscription"]=="audit"][0]["state"]')" ready
eq "trace: idempotency key" "$(json 'd["idempotency_key"]')" o-1
eq "trace: billing history has one acked attempt" \
	"$(json '[h["outcome"] for s in d["subscriptions"] if s["subscription"]=="billing" for h in s["history"]]')" '["acked"]'
eq "trace --json: the stored size is not called payload_bytes" \
	"$(json '["payload_bytes" in d, d["stored_bytes"] > len("hello world")]')" '[false, true]'
run 0 trace "$ID1"
contains "trace text names billing" "$TMP/out" "billing"
contains "trace text says acked" "$TMP/out" "acked"
contains "trace text: the size is the stored one, named so" "$TMP/out" "bytes, payload and headers"
if grep -q '^payload:' "$TMP/out"; then fail "trace text calls the stored size payload"; fi
ok
# the stdin event is next for billing: consume and ack it too
run 0 consume billing --count 1 --wait 5s --exec "$TMP/ok.sh"
eq "stdin payload delivered intact" "$(cat "$TMP/seen.payload"; echo x)" "$(printf 'line1\nline2x')"

# ---- consume --exec that always fails -> retried -> DLQ ------------------
STEP="consume --exec failing"
run 0 publish orders --key cust-2 "will fail"
ID2=$(tr -d '[:space:]' <"$TMP/out")
st=0
hf consume billing --count 3 --wait 5s \
	--exec 'echo "working on it" >&2; echo "db down: attempt $HANDOFF_ATTEMPT" >&2; exit 75' \
	>"$TMP/out" 2>"$TMP/err" || st=$?
# 0 (every nack was accepted) is the expected status; anything else fails.
eq "failing consume exit status" "$st" 0
eq "three attempts reported" "$(grep -c "event_id=$ID2 " "$TMP/err" || true)" 3
run 0 --json dlq list billing
eq "one dead letter" "$(json 'len(d["dead_letters"])')" 1
eq "it is ID2" "$(json 'd["dead_letters"][0]["event_id"]')" "$ID2"
eq "reason max_attempts" "$(json 'd["dead_letters"][0]["reason"]')" max_attempts
eq "attempts 3" "$(json 'd["dead_letters"][0]["attempts"]')" 3
eq "last stderr line is the error" "$(json 'd["dead_letters"][0]["error"]')" "db down: attempt 3"
run 0 dlq list billing
contains "text list shows the id" "$TMP/out" "$ID2"
contains "text list shows the reason" "$TMP/out" "max_attempts"

STEP="dlq show"
run 0 dlq show billing "$ID2"
contains "show: payload" "$TMP/out" "will fail"
contains "show: first attempt's error" "$TMP/out" "db down: attempt 1"
run 0 --json dlq show billing "$ID2"
eq "show --json payload" "$(json 'd["payload"]')" "will fail"
eq "show --json history outcomes" "$(json '[h["outcome"] for h in d["history"]]')" \
	'["nacked", "nacked", "nacked"]'
eq "show --json history errors" "$(json '[h["error"] for h in d["history"]]')" \
	'["db down: attempt 1", "db down: attempt 2", "db down: attempt 3"]'
eq "show --json history attempt numbers" "$(json '[h["attempt"] for h in d["history"]]')" \
	'[1, 2, 3]'
run 3 dlq show billing 999999

STEP="dlq replay --dry-run"
run 0 dlq replay billing "$ID2" --dry-run
contains "dry run says would replay" "$TMP/out" "would replay 1"
run 0 --json dlq list billing
eq "dry run kept the letter" "$(json '[x["event_id"] for x in d["dead_letters"]]')" "[$ID2]"
run 0 --json trace "$ID2"
eq "still dead after dry run" \
	"$(json '[s for s in d["subscriptions"] if s["subscription"]=="billing"][0]["state"]')" dead

STEP="dlq replay"
run 0 dlq replay billing "$ID2"
contains "replay says replayed 1" "$TMP/out" "replayed 1"
run 0 --json dlq list billing
eq "replayed letter left the queue" "$(json 'len(d["dead_letters"])')" 0
run 0 --json trace "$ID2"
eq "replayed letter is ready" \
	"$(json '[s for s in d["subscriptions"] if s["subscription"]=="billing"][0]["state"]')" ready
eq "replays counted" \
	"$(json '[s for s in d["subscriptions"] if s["subscription"]=="billing"][0]["replays"]')" 1
run 0 consume billing --count 1 --wait 5s --exec "$TMP/ok.sh"
eq "replayed payload" "$(cat "$TMP/seen.payload")" "will fail"
contains "attempt numbers continue" "$TMP/seen.env" "HANDOFF_ATTEMPT=4"
run 0 --json trace "$ID2"
eq "replayed then acked" \
	"$(json '[s for s in d["subscriptions"] if s["subscription"]=="billing"][0]["state"]')" acked
eq "history kept across the replay" \
	"$(json '[h["outcome"] for s in d["subscriptions"] if s["subscription"]=="billing" for h in s["history"]]')" \
	'["nacked", "nacked", "nacked", "acked"]'
run 3 dlq replay billing 999999

# ---- exit 100 = permanent failure -> dead at once ------------------------
STEP="consume --exec permanent"
run 0 publish orders --key cust-3 "{not json"
ID3=$(tr -d '[:space:]' <"$TMP/out")
st=0
hf consume billing --count 1 --wait 5s \
	--exec 'echo "parse error: unexpected end" >&2; exit 100' \
	>"$TMP/out" 2>"$TMP/err" || st=$?
eq "permanent consume exit status" "$st" 0
run 0 --json dlq list billing --reason permanent
eq "dead at once with reason permanent" \
	"$(json '[(x["event_id"], x["reason"], x["attempts"], x["error"]) for x in d["dead_letters"]]')" \
	"[[$ID3, \"permanent\", 1, \"parse error: unexpected end\"]]"
run 0 --json dlq list billing --reason max_attempts
eq "no max_attempts letters now" "$(json 'len(d["dead_letters"])')" 0
run 0 --json dlq list billing --grep "unexpected"
eq "grep filter" "$(json '[x["event_id"] for x in d["dead_letters"]]')" "[$ID3]"
run 0 --json dlq list billing --grep "nothing like this"
eq "grep filter, no match" "$(json 'len(d["dead_letters"])')" 0

# ---- purge ----------------------------------------------------------------
STEP="dlq purge"
run 2 dlq purge billing "$ID3"
run 0 --json dlq list billing
eq "purge without --yes kept the letter" "$(json '[x["event_id"] for x in d["dead_letters"]]')" "[$ID3]"
run 2 dlq purge billing "$ID3" --yes
contains "purge without --why is refused" "$TMP/err" "--why"
run 0 dlq purge billing "$ID3" --yes --why "poison message, ticket OPS-17"
contains "purge says purged 1" "$TMP/out" "purged 1"
STEP="audit"
run 0 --json audit
eq "audit has the purge" "$(json '[r["action"] for r in d if r["action"]=="purge"]')" '["purge"]'
eq "audit keeps the reason" "$(json '[r["reason"] for r in d if r["action"]=="purge"][0]')" "poison message, ticket OPS-17"
eq "audit names the event" "$(json '[r["event_ids"] for r in d if r["action"]=="purge"][0]')" "[$ID3]"
eq "audit role without access control" "$(json '[r["role"] for r in d if r["action"]=="purge"][0]')" open
run 0 audit
contains "audit text line" "$TMP/out" "purge key=- role=open subscription=billing count=1"
contains "audit text: reason readable" "$TMP/out" 'reason="poison message, ticket OPS-17"'
contains "audit text: selector readable" "$TMP/out" 'selector="event_ids (1 given)"'
if grep -qF '\x20' "$TMP/out"; then fail "audit text escapes spaces: $(cat "$TMP/out")"; fi
ok
STEP="dlq purge"
run 0 --json dlq list billing
eq "purged" "$(json 'len(d["dead_letters"])')" 0
run 0 --json trace "$ID3"
eq "trace says purged" \
	"$(json '[s for s in d["subscriptions"] if s["subscription"]=="billing"][0]["state"]')" purged
eq "trace keeps the dead reason" \
	"$(json '[s for s in d["subscriptions"] if s["subscription"]=="billing"][0]["error"]')" \
	"parse error: unexpected end"
run 3 trace 987654321

# ---- subscriptions / stats -------------------------------------------------
STEP="subscriptions and stats"
run 0 --json subscriptions
eq "audit depth: all 4 events ready" \
	"$(json '[(s["ready"], s["leased"], s["dead"]) for s in d if s["name"]=="audit"][0]')" \
	"[4, 0, 0]"
eq "billing depth: empty" \
	"$(json '[(s["ready"], s["delayed"], s["leased"], s["dead"]) for s in d if s["name"]=="billing"][0]')" \
	"[0, 0, 0, 0]"
run 0 subscriptions
contains "text subscriptions lists audit" "$TMP/out" "audit"
contains "text subscriptions lists billing" "$TMP/out" "billing"
run 0 --json stats
eq "stats: billing acked 3" \
	"$(json '[s["acked"] for s in d["subscriptions"] if s["name"]=="billing"][0]')" 3
eq "stats: billing replayed 1" \
	"$(json '[s["replayed"] for s in d["subscriptions"] if s["name"]=="billing"][0]')" 1
eq "stats: billing purged 1" \
	"$(json '[s["purged"] for s in d["subscriptions"] if s["name"]=="billing"][0]')" 1
run 0 stats

# ---- plain consume prints events and acks them ------------------------------
STEP="consume (print)"
run 0 consume audit --count 4 --wait 5s
eq "printed 4 events" "$(grep -c '^event_id=' "$TMP/out")" 4
contains "printed payload" "$TMP/out" "payload=hello world"
contains "printed key" "$TMP/out" "key=cust-1"
run 0 --json subscriptions
eq "audit drained" "$(json '[s["ready"] + s["leased"] for s in d if s["name"]=="audit"][0]')" 0
run 0 --json consume audit --wait 300ms
eq "nothing more for audit" "$(wc -c <"$TMP/out" | tr -d ' ')" 0

# ---- pause and resume ----------------------------------------------------------
STEP="pause"
run 2 pause audit
contains "pause needs --why" "$TMP/err" "--why"
run 3 pause nosuch --why x
run 0 pause audit --why "reindexing"
contains "pause says so" "$TMP/out" "paused audit"
run 0 --json pause audit --why "again"
eq "pause again changes nothing" "$(json '[d["paused"], d["changed"]]')" "[true, false]"
run 0 --json publish orders --idempotency-key o-paused "while paused"
run 0 --json subscriptions
eq "paused: still receives, with its reason" \
	"$(json '[(s["ready"], s["paused"], s["paused_reason"]) for s in d if s["name"]=="audit"][0]')" \
	'[1, true, "reindexing"]'
run 0 subscriptions
contains "text subscriptions shows the pause" "$TMP/out" "paused audit since"
run 0 --json stats
eq "stats: paused" \
	"$(json '[s["paused"] for s in d["subscriptions"] if s["name"]=="audit"][0]')" true
run 0 --json consume audit --wait 300ms
eq "nothing delivered while paused" "$(wc -c <"$TMP/out" | tr -d ' ')" 0
run 0 resume audit
contains "resume says so" "$TMP/out" "resumed audit"
run 0 --json consume audit --count 1 --wait 5s
eq "delivered after resume" "$(json 'd["payload"]')" "while paused"
run 0 --json audit
eq "pause and resume audited" \
	"$(json '[r["action"] for r in d if r["subscription"]=="audit"]')" '["pause", "resume"]'

# ---- headers that are not UTF-8 survive --json ------------------------------
STEP="binary headers"
run 0 subscribe bytes raw
run 0 publish bytes --header plain=ok --header "bin=$(printf 'a\377\376b')" \
	--header "$(printf 'n\377m')=v" "x"
run 0 --json consume raw --count 1 --wait 5s
eq "UTF-8 headers as text" "$(json 'd["headers"]')" '{"plain": "ok"}'
eq "a non-UTF-8 value as base64, every byte kept" \
	"$(json '[(h.get("name"), __import__("base64").b64decode(h["value_base64"]).hex()) for h in d["headers_binary"] if "value_base64" in h]')" \
	'[["bin", "61fffe62"]]'
eq "a non-UTF-8 name as base64" \
	"$(json '[(__import__("base64").b64decode(h["name_base64"]).hex(), h["value"]) for h in d["headers_binary"] if "name_base64" in h]')" \
	'[["6eff6d", "v"]]'

# ---- consume --exec keeps the lease of a slow command -----------------------
STEP="lease extension"
run 0 subscribe slow slowjobs --max-attempts 3 --ack-deadline 1s \
	--backoff 50ms..100ms
cat >"$TMP/slow.sh" <<EOF
#!/bin/sh
echo "\$HANDOFF_EVENT_ID:\$HANDOFF_ATTEMPT" >> "$TMP/slow.runs"
sleep 3
EOF
chmod +x "$TMP/slow.sh"
run 0 --json publish slow "long job"
E1=$(json 'd["event_id"]')
# 3 s of work on a 1 s ack deadline: extended, acked once
run 0 consume slowjobs --count 1 --wait 5s --exec "$TMP/slow.sh"
contains "slow command acked at its first attempt" "$TMP/err" \
	"event_id=$E1 attempt=1 result=acked"
run 0 --json trace "$E1"
eq "extended lease: never expired, acked once" \
	"$(json '[(s["state"], [h["outcome"] for h in s["history"]]) for s in d["subscriptions"]]')" \
	'[["acked", ["acked"]]]'
run 0 consume slowjobs --wait 1500ms
eq "nothing delivered again" "$(wc -c <"$TMP/out" | tr -d ' ')" 0
eq "the slow command ran once" "$(cat "$TMP/slow.runs")" "$E1:1"

# --max-extend shorter than the command: the lease runs out meanwhile
run 0 --json publish slow "too long"
E2=$(json 'd["event_id"]')
run 8 consume slowjobs --count 1 --wait 5s --exec "$TMP/slow.sh" \
	--max-extend 1500ms
contains "says --max-extend was reached" "$TMP/err" "--max-extend 1500ms reached"
contains "its ack came too late" "$TMP/err" \
	"event_id=$E2 attempt=1 result=acked lease=lost"
run 0 --json trace "$E2"
eq "past --max-extend: the lease expired" \
	"$(json '[[h["outcome"] for h in s["history"]] for s in d["subscriptions"]]')" \
	'[["expired"]]'
run 0 consume slowjobs --count 1 --wait 5s --exec "$TMP/ok.sh"
contains "delivered again as attempt 2" "$TMP/err" \
	"event_id=$E2 attempt=2 result=acked"
contains "the command gets its lease token" "$TMP/seen.env" \
	"HANDOFF_LEASE_TOKEN="

# handoff extend by hand, from the command (consume extends nothing)
cat >"$TMP/self.sh" <<EOF
#!/bin/sh
"$HANDOFF_CLI" --broker "$URL" extend "\$HANDOFF_SUBSCRIPTION" \\
	"\$HANDOFF_EVENT_ID" "\$HANDOFF_LEASE_TOKEN" --by 5s >"$TMP/self.out" ||
	exit 1
"$HANDOFF_CLI" --broker "$URL" extend "\$HANDOFF_SUBSCRIPTION" \\
	"\$HANDOFF_EVENT_ID" 12345 --by 5s 2>"$TMP/self.err"
echo "\$?" >"$TMP/self.wrong"
sleep 2
EOF
chmod +x "$TMP/self.sh"
run 0 --json publish slow "by hand"
E3=$(json 'd["event_id"]')
run 0 consume slowjobs --count 1 --wait 5s --exec "$TMP/self.sh" \
	--max-extend 0
contains "extend by hand kept the lease" "$TMP/err" \
	"event_id=$E3 attempt=1 result=acked"
contains "extend says what it did" "$TMP/self.out" \
	"extended the lease of event $E3 of slowjobs to 5s from now"
eq "extend with a wrong token: exit 8" "$(cat "$TMP/self.wrong")" 8
contains "extend with a wrong token: why" "$TMP/self.err" "lease lost"
run 0 --json trace "$E3"
eq "extended by hand: acked once" \
	"$(json '[[h["outcome"] for h in s["history"]] for s in d["subscriptions"]]')" \
	'[["acked"]]'
run 3 extend nosuch "$E3" 1 --by 1s
run 2 extend slowjobs "$E3" 1
run 2 extend slowjobs "$E3" 1 --by 13h
run 2 consume slowjobs --max-extend 1s

# ---- await (completion receipts): exit codes 0, 12, 13, 3 -------------------
STEP="await"
run 0 subscribe receipts r1
run 0 subscribe receipts r2
run 0 publish receipts "to be acked"
RID=$(tr -d '[:space:]' <"$TMP/out")
run 13 await "$RID" --timeout 300ms
contains "await timed out: says so" "$TMP/out" "not acked by all within 300ms"
contains "await timed out: each state" "$TMP/out" "r2: state=ready attempts=0"
run 13 --json await "$RID" --subscriptions r1 --timeout 0
eq "await --json: timed out, only r1" \
	"$(json '[d["result"], [s["subscription"] for s in d["subscriptions"]]]')" \
	'["timed_out", ["r1"]]'
# held while the consumers ack: it returns with the last ack, not at 20 s
(
	st=0
	hf await "$RID" --timeout 20s >"$TMP/await.out" 2>&1 || st=$?
	echo "$st" >"$TMP/await.rc"
) &
APID=$!
sleep 0.3
run 0 consume r1 --count 1 --wait 5s
run 0 consume r2 --count 1 --wait 5s
t0=$(date +%s%N)
wait "$APID"
took=$((($(date +%s%N) - t0) / 1000000))
eq "await: all acked -> exit 0" "$(cat "$TMP/await.rc")" 0
[ "$took" -lt 5000 ] || fail "await returned ${took}ms after the last ack"
ok
contains "await: acked by all" "$TMP/await.out" "acked by all 2 subscriptions"
run 0 publish receipts "to be refused"
RID2=$(tr -d '[:space:]' <"$TMP/out")
run 0 consume r1 --count 1 --wait 5s \
	--exec 'echo "bad input" >&2; exit 100'
run 12 await "$RID2" --timeout 20s
contains "dead-lettered: which" "$TMP/out" "dead-lettered by 'r1' (permanent"
contains "dead-lettered: why" "$TMP/out" "bad input"
run 12 --json await "$RID2" --subscriptions r1,r2
eq "dead-lettered --json" \
	"$(json '[d["result"], [(s["subscription"], s["state"]) for s in d["subscriptions"]]]')" \
	'["dead_lettered", [["r1", "dead"], ["r2", "ready"]]]'
run 3 await 999999 --timeout 0
contains "unknown event: says so" "$TMP/err" "never published"
run 1 await "$RID" --subscriptions nosuch --timeout 0
run 2 await notanumber
run 2 await "$RID" --subscriptions r1,,r2
run 13 publish receipts "nobody consumes" --await-acked 200ms
contains "publish --await-acked: the id first" "$TMP/out" "(topic receipts): not acked"
run 13 --json publish receipts --await-acked 0 "json receipt"
eq "publish --await-acked --json" \
	"$(json '[type(d["event_id"]).__name__, d["await"]["result"], d["await"]["event_id"] == d["event_id"]]')" \
	'["int", "timed_out", true]'

# ---- restart keeps everything; unreachable broker = exit 5 ------------------
STEP="restart"
kill -TERM "$BPID"
st=0
wait "$BPID" || st=$?
BPID=""
eq "handoffd exits 0 on SIGTERM" "$st" 0
st=0
"$HANDOFF_CLI" --broker "$URL" --timeout 1s stats >"$TMP/out" 2>"$TMP/err" || st=$?
eq "unreachable broker: exit 5" "$st" 5
start_broker
run 0 --json trace "$ID2"
eq "acked survives restart" \
	"$(json '[s for s in d["subscriptions"] if s["subscription"]=="billing"][0]["state"]')" acked
run 0 --json publish orders --idempotency-key o-1 "hello world"
eq "dedup survives restart" "$(json '[d["event_id"], d["duplicate"]]')" "[$ID1, true]"

STEP="done"
echo "test_cli.sh: all $CHECKS checks passed"
