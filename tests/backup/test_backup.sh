#!/bin/bash
# A hot backup under load (tests/backup/meson.build): torture producers and
# consumers (handoff-torture --role, recording every confirmed publish and
# ack) run against a broker while `handoff backup` copies its store; the
# copy is slowed (HANDOFF_TEST_BACKUP_BPS, test-only) so that it takes
# seconds. A second broker started on the copy (handoffd --data) is then
# checked by handoff-backup-check: every publish and ack confirmed before
# the request was sent is in it, no ack sent after the copy ended is, and
# publishes were confirmed while the copy ran.
set -euo pipefail

: "${HANDOFFD:?}" "${HANDOFF_CLI:?}" "${HANDOFF_TORTURE:?}"
: "${HANDOFF_BACKUP_CHECK:?}"

W=$(mktemp -d "${TMPDIR:-/tmp}/hbk-XXXXXX")
pids=()
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "$rc" -ne 0 ]; then
		echo "backup test failed: kept $W" >&2
		tail -n 30 "$W"/broker*.log >&2 || true
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

mkdir -p "$W/run/rec" "$W/run/logs" "$W/bak"
URL="ipc://$W/b.sock"
cat >"$W/handoffd.ini" <<CONF
[broker]
data_dir = $W/data
backup_dir = $W/bak
listen = $URL
[http]
listen = off
[limits]
max_wait = 60s
CONF
CLI() { "$HANDOFF_CLI" --broker "$1" --timeout 10s "${@:2}"; }

wait_up() { # url pid
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || fail "broker at $1 exited"
		"$HANDOFF_CLI" --broker "$1" --timeout 300ms subscriptions \
			>/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "broker at $1 did not answer"
}

# backups are refused without backup_dir, and names are file names only
"$HANDOFFD" --data "$W/off" --listen "ipc://$W/o.sock" --http-listen off \
	2>"$W/broker-off.log" &
off_pid=$!
pids+=("$off_pid")
wait_up "ipc://$W/o.sock" "$off_pid"
if out=$(CLI "ipc://$W/o.sock" backup x 2>&1); then
	fail "a broker without backup_dir took a backup: $out"
fi
grep -q "backup_dir" <<<"$out" || fail "refusal does not name backup_dir: $out"
kill -TERM "$off_pid"
wait "$off_pid" || fail "broker without backup_dir did not stop cleanly"

HANDOFF_TEST_BACKUP_BPS=${BACKUP_BPS:-300000} \
	"$HANDOFFD" --config "$W/handoffd.ini" 2>"$W/broker.log" &
broker_pid=$!
pids+=("$broker_pid")
wait_up "$URL" "$broker_pid"
for name in ../up a/b .. ""; do
	if CLI "$URL" backup "$name" >/dev/null 2>&1; then
		fail "backup name '$name' was taken"
	fi
done
CLI "$URL" subscribe torture sub-a >/dev/null
CLI "$URL" subscribe torture sub-b >/dev/null

# workers: respawned under a new name when they end (they die on purpose
# now and then); stopped by removing $W/go
touch "$W/go"
worker() { # role name [sub]
	local n=0
	while [ -e "$W/go" ]; do
		local args=(--role "$1" --url "$URL" --dir "$W/run"
			--name "$2g$n" --seed "$RANDOM$n" --rate 150)
		[ $# -gt 2 ] && args+=(--sub "$3")
		"$HANDOFF_TORTURE" "${args[@]}" 2>>"$W/run/logs/$2.log" || true
		n=$((n + 1))
	done
}
worker producer p0 & pids+=($!)
worker producer p1 & pids+=($!)
worker producer p2 & pids+=($!)
worker consumer ca sub-a & pids+=($!)
worker consumer cb sub-b & pids+=($!)

sleep "${WARMUP_SECONDS:-4}"
T0=$("$HANDOFF_BACKUP_CHECK" --now)
CLI "$URL" --json backup snap >"$W/backup.json" ||
	fail "backup failed: $(cat "$W/backup.json")"
T1=$("$HANDOFF_BACKUP_CHECK" --now)
sleep 1
rm -f "$W/go"
kill -TERM $(jobs -p | grep -v "^$broker_pid\$") 2>/dev/null || true
for p in "${pids[@]}"; do
	[ "$p" = "$broker_pid" ] || wait "$p" 2>/dev/null || true
done
cat "$W/backup.json"
grep -q '"state":"done"' "$W/backup.json" || fail "backup not done"
ms=$(sed 's/.*"duration_ms":\([0-9]*\).*/\1/' "$W/backup.json")
[ "$ms" -ge 1000 ] || fail "the copy took $ms ms: too short to overlap"
[ -f "$W/bak/snap/data.mdb" ] || fail "no $W/bak/snap/data.mdb"
[ ! -e "$W/bak/snap/data.mdb.part" ] || fail "data.mdb.part left behind"
grep -q "event=backup_done name=snap" "$W/broker.log" || fail "no backup_done log line"
CLI "$URL" audit | grep -q "backup .*$W/bak/snap" || fail "backup not audited"
# a second backup of the same name is refused: never overwritten
if CLI "$URL" backup snap >/dev/null 2>&1; then
	fail "backup snap was taken twice"
fi
kill -TERM "$broker_pid"
wait "$broker_pid" || fail "broker did not stop cleanly"

# a broker on the copy, checked against the records
URL2="ipc://$W/c.sock"
"$HANDOFFD" --data "$W/bak/snap" --listen "$URL2" --http-listen off \
	2>"$W/broker-copy.log" &
copy_pid=$!
pids+=("$copy_pid")
wait_up "$URL2" "$copy_pid"
"$HANDOFF_BACKUP_CHECK" --dir "$W/run" --broker "$URL2" --before "$T0" \
	--after "$T1" || fail "the copy does not hold what was confirmed before it"
kill -TERM "$copy_pid"
wait "$copy_pid" || fail "broker on the copy did not stop cleanly"
echo "backup test passed"
