#!/usr/bin/env bash
# tests/torture/checker_selftest.sh — the checker finds each kind of
# violation it claims to find.
#
# A short fault-free run (handoff-torture --mode none --keep) leaves its
# records and its store; a broker is started on that store, and
# handoff-check must pass the records as they are. Then, for each of the
# seven kinds, a copy of the records is changed the way that violation
# would show (an id nobody stored, a payload that did not match, one key
# under a second id, an ack intent taken away, a delivery after a confirmed
# ack, a permanent-nack intent taken away), and handoff-check must exit 1
# with that count above 0 and every other count at 0. The push
# subscriptions get the same treatment through the receiver's records: a
# delivery the broker acked taken away (done_without_ack), a webhook-id
# that changes between two deliveries of an event and one shared by two
# events (webhook_id_unstable), a bad signature (unexpected) and an attempt
# after the acked one (redelivered_after_ack).
set -uo pipefail

: "${HANDOFF_TORTURE:?set by meson}" "${HANDOFF_CHECK:?}" "${HANDOFFD:?}"
tmp=${TMPDIR:-/tmp}
[ ${#tmp} -gt 60 ] && tmp=/tmp
work=$(mktemp -d "$tmp/hock-XXXXXX")
run=$work/run
pid=

cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	[ -n "$pid" ] && wait "$pid" 2>/dev/null
}
trap cleanup EXIT

fail() {
	echo "checker_selftest: FAIL: $*" >&2
	echo "checker_selftest: kept $work" >&2
	exit 1
}

"$HANDOFF_TORTURE" --mode none --seconds 4 --dir "$run" --keep \
	>"$work/run.txt" 2>"$work/run.err" ||
	fail "the fault-free run failed: $(tail -n 3 "$work/run.txt")"

sock=$run/broker/b.sock
url=ipc://$sock
"$HANDOFFD" --data "$run/broker/data" --listen "$url" \
	--config "$run/broker/handoffd.ini" 2>>"$work/broker.log" &
pid=$!
for _ in $(seq 1 200); do
	[ -S "$sock" ] && break
	sleep 0.05
done
[ -S "$sock" ] || fail "the broker did not start"

# check NAME EXPECTED_KIND: run the checker on $work/NAME (a run folder
# with only rec/), demand exit status and counts.
check() {
	local name=$1 kind=$2 out rc line c v
	out=$work/$name.txt
	"$HANDOFF_CHECK" --dir "$work/$name" --broker "$url" >"$out" 2>&1
	rc=$?
	line=$(grep '^check: lost=' "$out" | tail -n 1)
	[ -n "$line" ] || fail "$name: no summary: $(tail -n 3 "$out")"
	for c in lost unexpected duplicate_stored done_without_ack \
		redelivered_after_ack dead_without_cause webhook_id_unstable; do
		v=$(sed -n "s/.* $c=\([0-9]*\).*/\1/p" <<<" $line")
		if [ "$c" = "$kind" ]; then
			[ "$v" -gt 0 ] || fail "$name: $c=$v, want > 0"
		else
			[ "$v" = 0 ] || fail "$name: $c=$v, want 0 ($line)"
		fi
	done
	if [ "$kind" = none ]; then
		[ "$rc" -eq 0 ] || fail "$name: exit $rc, want 0"
	else
		[ "$rc" -eq 1 ] || fail "$name: exit $rc, want 1"
	fi
	echo "checker_selftest: $name: $(grep -o "$kind=[0-9]*\|result=[A-Za-z]*" <<<"$line" | tr '\n' ' ')"
}

# copy NAME: a fresh copy of the records to change.
copy() {
	rm -rf "${work:?}/$1"
	mkdir -p "$work/$1"
	cp -r "$run/rec" "$work/$1/rec"
}
recs() {
	echo "$work/$1/rec"
}

copy clean
check clean none

summary=$(grep '^check: lost=' "$work/run.txt" | tail -n 1)
max_id=$(sed -n 's/.* max_id=\([0-9]*\).*/\1/p' <<<"$summary")
[ -n "$max_id" ] && [ "$max_id" -gt 10 ] || fail "the run stored too little ($summary)"

# lost: a confirmation of an id the broker never stored
copy lost
echo "C 1 ghost-key-1 $((max_id + 1)) 0" >>"$(recs lost)/p0g1.rec"
check lost lost

# unexpected: a delivery whose payload did not match its key
copy unexpected
f=$(grep -l '^D .* ok$' "$(recs unexpected)"/c*.rec | head -n 1)
[ -n "$f" ] || fail "no delivery record"
sed -i '0,/^\(D .*\) ok$/s//\1 bad/' "$f"
check unexpected unexpected

# duplicate_stored: a re-publish that got a second id for a key
copy duplicate
read -r _ _ key id _ < <(grep -h '^C ' "$(recs duplicate)"/p*.rec | head -n 1)
other=$((id == 1 ? 2 : 1))
echo "R 1 $key $id $other 1" >>"$(recs duplicate)/p0g1.rec"
check duplicate duplicate_stored

# done_without_ack: an acked delivery whose ack intents are taken away
copy done
read -r _ _ sub id att _ < <(grep -h '^K .* 0$' "$(recs done)"/c*.rec | head -n 1)
for f in "$(recs done)"/*.rec; do
	grep -v "^A [0-9]* $sub $id " "$f" >"$f.new"
	mv "$f.new" "$f"
done
check done done_without_ack

# redelivered_after_ack: a delivery fetched after the ack was confirmed
copy redelivered
read -r _ t sub id att tok _ < <(grep -h '^K .* 0$' "$(recs redelivered)"/c*.rec | head -n 1)
key=$(grep -h "^D [0-9]* $sub $id " "$(recs redelivered)"/c*.rec | head -n 1 | cut -d' ' -f7)
echo "D $((t + 1000)) $sub $id $((att + 1)) 1 $key ok" >>"$(recs redelivered)/c0s0g1.rec"
check redelivered redelivered_after_ack

# dead_without_cause: a permanent dead letter whose nack intent is taken away
copy dead
# (one the broker applied: its nack item status was OK)
id=
while read -r _ _ s i a _; do
	if grep -qh "^M [0-9]* $s $i $a [0-9]* 0$" "$(recs dead)"/c*.rec; then
		sub=$s id=$i
		break
	fi
done < <(grep -h '^N .* 1$' "$(recs dead)"/c*.rec)
[ -n "$id" ] || fail "no applied permanent nack in the run"
for f in "$(recs dead)"/*.rec; do
	grep -v "^N [0-9]* $sub $id [0-9]* [0-9]* [0-9]* 1$" "$f" >"$f.new"
	mv "$f.new" "$f"
done
check dead dead_without_cause

# ---- push subscriptions: the receiver's records (h*.rec, P lines:
# P t sub id attempt webhook-id key sum verdict status)
# sub_count NAME SUB COUNT: COUNT on the checker's line for SUB
sub_count() {
	sed -n "s/^sub=$2 .* $3=\([0-9]*\).*/\1/p" "$work/$1.txt"
}
grep -q '^S push-a .* push$' "$run/rec/driver.rec" || fail "no push subscription in the run"
grep -q '^P [0-9]* push-a .* ok 20[04]$' "$run"/rec/h*.rec || fail "no push delivery answered 2xx"
[ "$(sub_count lost push-a lost)" -gt 0 ] || fail "lost: push-a lost=0"

# done_without_ack: a push delivery the broker acked, of which the
# receiver holds no record (every request for that event taken away)
copy push_missing
read -r _ _ sub id _ < <(grep -h '^P [0-9]* push-a .* ok 20[04]$' "$(recs push_missing)"/h*.rec | head -n 1)
for f in "$(recs push_missing)"/h*.rec; do
	grep -v "^P [0-9]* $sub $id " "$f" >"$f.new"
	mv "$f.new" "$f"
done
check push_missing done_without_ack
[ "$(sub_count push_missing push-a done_without_ack)" -gt 0 ] &&
	[ "$(sub_count push_missing sub-a done_without_ack)" = 0 ] ||
	fail "push_missing: not counted on push-a alone"

# webhook_id_unstable: a second delivery of an event under another id
copy push_wid_changed
read -r _ t sub id att wid rest < <(grep -h '^P [0-9]* push-a .* ok 20[04]$' "$(recs push_wid_changed)"/h*.rec | head -n 1)
set -- $rest
echo "P $((t + 1)) $sub $id $att ${wid}x $1 $2 ok 503" >>"$(recs push_wid_changed)/h0g1.rec"
check push_wid_changed webhook_id_unstable

# webhook_id_unstable: two events under one webhook-id
copy push_wid_shared
mapfile -t two < <(grep -h '^P [0-9]* push-a ' "$(recs push_wid_shared)"/h*.rec |
	awk '!seen[$4]++ { print $4 " " $6 }' | head -n 2)
read -r id1 wid1 <<<"${two[0]}"
read -r id2 wid2 <<<"${two[1]}"
[ -n "$id2" ] && [ "$id1" != "$id2" ] || fail "fewer than two pushed events"
for f in "$(recs push_wid_shared)"/h*.rec; do
	sed -i "s/^\(P [0-9]* push-a $id2 [0-9]*\) $wid2 /\1 $wid1 /" "$f"
done
check push_wid_shared webhook_id_unstable

# unexpected: a push request whose signature did not verify
copy push_badsig
f=$(grep -l '^P .* ok 20[04]$' "$(recs push_badsig)"/h*.rec | head -n 1)
sed -i '0,/^\(P .*\) ok \(20[04]\)$/s//\1 badsig \2/' "$f"
check push_badsig unexpected
grep -q 'why=push_bad_signature' "$work/push_badsig.txt" || fail "push_badsig: no bad-signature example"

# redelivered_after_ack: a push of an attempt after the one acked
copy push_redelivered
read -r _ t sub id att wid rest < <(grep -h '^P [0-9]* push-a .* ok 20[04]$' "$(recs push_redelivered)"/h*.rec | head -n 1)
set -- $rest
echo "P $((t + 1)) $sub $id 99 $wid $1 $2 ok 503" >>"$(recs push_redelivered)/h0g1.rec"
check push_redelivered redelivered_after_ack

# a record cut by a kill mid-write is ignored, not misread
copy partial
printf 'D 123 sub-a 1 1 99 p0g1-1 o' >>"$(recs partial)/p0g1.rec"
check partial none
grep -q 'partial_lines=1' "$work/partial.txt" || fail "partial line not reported"

echo "checker_selftest: PASS"
cleanup
pid=
rm -rf "$work"
exit 0
