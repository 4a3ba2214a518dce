#!/usr/bin/env bash
# tests/torture/torture_run.sh — one CI torture run, checked from the
# outside.
#
#   torture_run.sh ok|loss MIN_FAULTS handoff-torture ARGS...
#
# Runs $HANDOFF_TORTURE ARGS... --keep on a fresh run folder, then checks
# the driver's summary line AND the run's own artifacts, so that a driver
# that claims more than it did fails the test:
#   - every checker count is 0 (ok), or loss was found (loss: the negative
#     control), and the driver's exit status agrees;
#   - the workload did something (confirmed > 0, delivered > 0, checked=1),
#     push included (push subscriptions, push deliveries and acks > 0);
#   - kill: cycles >= MIN_FAULTS and the broker log holds exactly
#     cycles + 1 spawns (one per kill, plus the first);
#   - powercut: cuts >= MIN_FAULTS, one "cut=N faultfs-image: mode=..."
#     line per cut (each image built), and cuts + 2 spawns (the store's
#     creation without the preload, the first preloaded start, one per cut;
#     the negative control may stop early when the broker refuses an image);
#   - io: k_runs >= MIN_FAULTS, one "io: what=... k=..." line per run, at
#     least one injected failure, and the failures.log lines of the faultfs
#     states add up to the runs that had a failure injected.
# The run folder is removed when the test passes and kept otherwise.
set -uo pipefail

expect=$1
min_faults=$2
shift 2

: "${HANDOFF_TORTURE:?set by meson}"
tmp=${TMPDIR:-/tmp}
[ ${#tmp} -gt 60 ] && tmp=/tmp
run=$(mktemp -d "$tmp/hotr-XXXXXX")
dir=$run/r
out=$run/out.txt

fail() {
	echo "torture_run: FAIL: $*" >&2
	echo "torture_run: output and run folder kept in $run" >&2
	exit 1
}

start=$(date +%s)
"$HANDOFF_TORTURE" "$@" --dir "$dir" --keep >"$out" 2>"$run/err.txt"
rc=$?
# The driver's own lines (its stderr carries the broker log tails).
grep -v '^ts=' "$out" | grep -v '^---- ' | tail -n 60
grep -E '^torture: event=(failure|worker_failed)' "$run/err.txt" | head -n 20
echo "torture_run: driver exit $rc after $(($(date +%s) - start)) s"

line=$(grep '^torture: mode=.* result=' "$out" | tail -n 1)
[ -n "$line" ] || fail "no summary line"
val() {
	sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"
}

mode=$(val mode)
result=$(val result)
faults=0
case $mode in
kill) faults=$(val cycles) ;;
powercut) faults=$(val cuts) ;;
io) faults=$(val k_runs) ;;
*) fail "unknown mode $mode" ;;
esac

counts="lost unexpected duplicate_stored done_without_ack redelivered_after_ack dead_without_cause webhook_id_unstable"
if [ "$expect" = loss ]; then
	[ "$rc" -eq 0 ] || fail "negative control exited $rc (no loss found?)"
	[ "$result" = loss_found ] || fail "negative control result=$result"
	if [ "$(val checked)" = 1 ]; then
		[ "$(val lost)" -gt 0 ] || fail "checked, but lost=0"
	else
		grep -q 'event=broker_refused_image\|event=broker_died' "$run/err.txt" ||
			fail "not checked and the broker did not refuse an image"
	fi
else
	[ "$rc" -eq 0 ] || fail "driver exited $rc"
	[ "$result" = ok ] || fail "result=$result"
	[ "$(val checked)" = 1 ] || fail "the checker did not run"
	for c in $counts; do
		[ "$(val "$c")" = 0 ] || fail "$c=$(val "$c")"
	done
	[ "$(val worker_failures)" = 0 ] || fail "worker_failures=$(val worker_failures)"
	[ "$(val confirmed)" -gt 0 ] || fail "nothing was confirmed"
	[ "$(val delivered)" -gt 0 ] || fail "nothing was delivered"
	[ "$(val push_subs)" -gt 0 ] || fail "no push subscriptions in the workload"
	[ "$(val push_delivered)" -gt 0 ] || fail "nothing was pushed"
	[ "$(val push_acked)" -gt 0 ] || fail "no push was acked"
	grep -q '^check: .*result=ok' "$out" || fail "no clean 'check:' line"
fi

[ "$faults" -ge "$min_faults" ] || fail "$mode made $faults faults, want >= $min_faults"
[ "$faults" -gt 0 ] || fail "no fault was made"

log=$dir/broker/broker.log
spawns=$(grep -c '^---- torture: spawn' "$log")
case $mode in
kill)
	# the drain may need one more start if the last kill was the end
	[ "$spawns" -ge $((faults + 1)) ] && [ "$spawns" -le $((faults + 2)) ] ||
		fail "kill: $faults cycles but $spawns broker spawns"
	;;
powercut)
	images=$(grep -c '^cut=[0-9]* faultfs-image: mode=' "$out")
	[ "$images" -eq "$faults" ] || fail "powercut: $faults cuts but $images images"
	if [ "$expect" = ok ]; then
		[ "$spawns" -ge $((faults + 2)) ] && [ "$spawns" -le $((faults + 3)) ] ||
			fail "powercut: $faults cuts but $spawns broker spawns"
	fi
	for m in synced all random torn; do
		if [ "$faults" -ge 4 ] || [ "$m" = synced ]; then
			grep -q "faultfs-image: mode=$m " "$out" || fail "no cut in mode $m"
		fi
	done
	;;
io)
	runs=$(grep -c '^io: what=[a-z]* k=[0-9]* outcome=' "$out")
	[ "$runs" -eq "$faults" ] || fail "io: k_runs=$faults but $runs run lines"
	hit=$(grep -c '^io: what=.* outcome=\(refused\|exited3\|start_refused\|absorbed\) ' "$out")
	[ "$hit" -gt 0 ] || fail "io: no run had a failure injected"
	injected=0
	for f in "$dir"/broker/faultfs-*/failures.log; do
		[ -f "$f" ] || continue
		n=$(grep -c '' "$f")
		injected=$((injected + (n > 0 ? 1 : 0)))
	done
	[ "$injected" -eq "$hit" ] ||
		fail "io: $hit runs report a failure but $injected failures.log files have one"
	;;
esac

echo "torture_run: PASS mode=$mode faults=$faults"
rm -rf "$run"
exit 0
