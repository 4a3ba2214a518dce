#!/usr/bin/env bash
# test_full_fs.sh FSTYPE — promise 9 (backpressure, not loss) on a real full
# filesystem: btrfs, xfs or ext4 on a loop-mounted image under $TMPDIR.
#
# A broker holding a backlog sees the disk filled from outside (dd). With
# 4 MiB left, its file still grows into them (XFS once refused that); once
# full, publishes are refused with "storage full" (exit 6) and nothing
# confirmed is lost; a restart on the full disk works; every backlog event
# is fetched and acked; the file's freed pages take publishes again; a lock
# file whose blocks the full disk cannot give is refused at start with a
# message that names the remedy (never a crash); on btrfs, a store whose
# files are copy-on-write is made NOCOW at start; after space is freed
# publishing resumes. The broker must never die by a signal (on btrfs it
# used to die with SIGBUS in LMDB's lock file, at every restart).
#
# Needs root, loop devices and mkfs.FSTYPE (btrfs-progs, xfsprogs): without
# them it says why and exits 77 (skipped). Every mount and loop device is
# undone on exit, failed or not.
set -euo pipefail

: "${HANDOFFD:?HANDOFFD must point at handoffd}"
: "${HANDOFF_CLI:?HANDOFF_CLI must point at the handoff CLI}"
FS=${1:?usage: test_full_fs.sh btrfs|xfs|ext4}

skip() {
	echo "SKIP full_$FS: $*" >&2
	exit 77
}

case $FS in
btrfs) SIZE=128M MKFS=(mkfs.btrfs -q -f) ;;
xfs) SIZE=300M MKFS=(mkfs.xfs -q -f) ;; # xfsprogs 6.1: >= 300 MB
ext4) SIZE=64M MKFS=(mkfs.ext4 -q -F) ;;
*)
	echo "unknown filesystem type '$FS'" >&2
	exit 2
	;;
esac
[ "$(id -u)" -eq 0 ] || skip "needs root (loop devices and mount)"
for tool in losetup mount umount mountpoint "${MKFS[0]}"; do
	command -v "$tool" >/dev/null 2>&1 ||
		skip "$tool is not installed (scripts/deps.sh lists it)"
done

base=${TMPDIR:-/tmp}
[ ${#base} -gt 60 ] && base=/tmp
TMP=$(mktemp -d "$base/hofull-$FS-XXXXXX")
IMG=$TMP/fs.img
MNT=$TMP/mnt
DATA=$MNT/store
URL="ipc://$TMP/broker.sock"
LOG="$TMP/broker.log"
LOOP=""
BPID=""
CHECKS=0
STEP="setup"

cleanup() {
	local rc=$?
	if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then
		kill -9 "$BPID" 2>/dev/null || true
		wait "$BPID" 2>/dev/null || true
	fi
	if mountpoint -q "$MNT" 2>/dev/null; then
		umount "$MNT" 2>/dev/null || { sleep 1 && umount "$MNT"; } ||
			umount -l "$MNT" || true
	fi
	if [ -n "$LOOP" ]; then
		losetup -d "$LOOP" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
		echo "FAILED at step: $STEP (after $CHECKS passed checks)" >&2
		for f in out err; do
			if [ -s "$TMP/$f" ]; then
				echo "---- last CLI std$f ----" >&2
				tail -c 2000 "$TMP/$f" >&2
				echo >&2
			fi
		done
		echo "==== handoffd log ($LOG) ====" >&2
		tail -n 100 "$LOG" >&2 2>/dev/null || true
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
trap 'exit 1' INT TERM

fail() {
	echo "CHECK FAILED ($FS): $*" >&2
	exit 1
}
ok() { CHECKS=$((CHECKS + 1)); }

# ---- the filesystem ---------------------------------------------------------
STEP="make a $SIZE $FS image"
mkdir "$MNT"
truncate -s "$SIZE" "$IMG"
"${MKFS[@]}" "$IMG" >"$TMP/mkfs.log" 2>&1 || fail "mkfs: $(cat "$TMP/mkfs.log")"
# Tests running in parallel may race for the same free loop device.
for _ in 1 2 3 4 5; do
	LOOP=$(losetup -f --show "$IMG" 2>"$TMP/err") && break
	sleep 0.5
done
[ -n "$LOOP" ] || skip "no loop device: $(cat "$TMP/err")"
mount -t "$FS" "$LOOP" "$MNT" 2>"$TMP/err" ||
	skip "cannot mount $FS: $(cat "$TMP/err")"

# Write zeros until the filesystem says ENOSPC (big blocks, then small ones
# for the last bits), and push it to disk.
fill_disk() {
	dd if=/dev/zero of="$MNT/fill" bs=1M conv=notrunc oflag=append \
		status=none 2>/dev/null || true
	dd if=/dev/zero of="$MNT/fill" bs=4k conv=notrunc oflag=append \
		status=none 2>/dev/null || true
	sync
	dd if=/dev/zero of="$MNT/fill" bs=4k conv=notrunc oflag=append \
		status=none 2>/dev/null || true
}

# ---- the broker -------------------------------------------------------------
cat >"$TMP/handoffd.ini" <<'EOF'
[broker]
map_size = 64M
[defaults]
max_attempts = 3
ack_deadline = 30s
[limits]
max_payload = 64K
storage_headroom = 1M
EOF

hf() { "$HANDOFF_CLI" --broker "$URL" --timeout 10s "$@"; }

# The broker must be running; if it is not, say how it ended.
alive() {
	if ! kill -0 "$BPID" 2>/dev/null; then
		local st=0
		wait "$BPID" || st=$?
		BPID=""
		if [ "$st" -gt 128 ]; then
			fail "handoffd died by signal $((st - 128)) ($(kill -l $((st - 128))))"
		fi
		fail "handoffd exited with status $st"
	fi
	ok
}

start_broker() {
	"$HANDOFFD" --data "$DATA" --listen "$URL" \
		--config "$TMP/handoffd.ini" >>"$LOG" 2>&1 &
	BPID=$!
	local i
	for i in $(seq 1 100); do
		if hf --timeout 1s subscriptions >/dev/null 2>&1; then
			alive
			return 0
		fi
		alive
		sleep 0.2
	done
	fail "handoffd did not answer within 20 s"
}

stop_broker() {
	local st=0
	kill -TERM "$BPID"
	wait "$BPID" || st=$?
	BPID=""
	[ "$st" -eq 0 ] || fail "handoffd stopped with status $st, want 0"
	ok
}

# Payload of event number N: its number, then 60000 bytes of padding.
head -c 60000 /dev/zero | tr '\0' 'x' >"$TMP/pad"
payload() { printf 'ev%05d-' "$1" && cat "$TMP/pad"; }

# publish N: exit status of publishing payload N; its id in $TMP/out.
publish() {
	local st=0
	payload "$1" | hf publish full - >"$TMP/out" 2>"$TMP/err" || st=$?
	return $st
}

CONFIRMED=() # "id:n" of every confirmed event, in order
publish_ok() {
	publish "$1" || fail "publish $1: exit status $?"
	CONFIRMED+=("$(cat "$TMP/out"):$1")
	ok
}

# Fetch and ack everything owed; the events must be WANT ("id:n" ...), in
# order, each once, whole; every ack accepted (consume exits 0).
drain() {
	local -a want=("$@") got=()
	local st line id n
	for _ in $(seq 1 200); do
		st=0
		hf consume sub --batch 10 --wait 500ms >"$TMP/out" \
			2>"$TMP/err" || st=$?
		[ "$st" -eq 0 ] || fail "consume: exit status $st (an ack refused?)"
		alive
		[ -s "$TMP/out" ] || break
		while IFS= read -r line; do
			id=${line#event_id=}
			id=${id%% *}
			n=${line#* payload=ev}
			[ "${#n}" -eq 60006 ] ||
				fail "event $id: payload of ${#n} + 2 bytes, want 60008"
			n=${n%%-*}
			got+=("$id:$((10#$n))")
		done <"$TMP/out"
	done
	[ "${#got[@]}" -eq "${#want[@]}" ] ||
		fail "drained ${#got[@]} events, want ${#want[@]}"
	[ "${got[*]}" == "${want[*]}" ] ||
		fail "drained '${got[*]}', want '${want[*]}'"
	ok
}

# publish_until_refused FIRST LAST: publish FIRST.. until one is refused
# with storage full; the accepted ones are confirmed. Sets ACCEPTED.
publish_until_refused() {
	local i st
	ACCEPTED=0
	for i in $(seq "$1" "$2"); do
		st=0
		publish "$i" || st=$?
		alive
		if [ "$st" -eq 6 ]; then
			grep -q "storage full" "$TMP/err" ||
				fail "refusal says: $(cat "$TMP/err")"
			grep -q "disk full" "$TMP/err" ||
				fail "refusal does not say disk full: $(cat "$TMP/err")"
			return 0
		fi
		[ "$st" -eq 0 ] || fail "publish $i: exit status $st, want 0 or 6"
		CONFIRMED+=("$(cat "$TMP/out"):$i")
		ACCEPTED=$((ACCEPTED + 1))
	done
	fail "publishes $1..$2 were all accepted on a full disk"
}

# ---- a backlog, then a disk nearly full, then full ---------------------------
STEP="start on the empty $FS and publish a backlog"
start_broker
hf subscribe full sub --max-attempts 3 --ack-deadline 30s >/dev/null
for i in $(seq 1 120); do # 7 MB: a file larger than the space left below
	publish_ok "$i"
done

# The broker reserves disk for its file a MiB at a time; that must work
# while the disk has less free space than the file is large (XFS wants
# room for the whole range asked of posix_fallocate, allocated or not).
STEP="4 MiB left: the file grows into them"
fill_disk # then give 4 MiB back (df's figure is approximate on btrfs)
truncate -s -4M "$MNT/fill"
sync
publish_until_refused 121 400
echo "$FS: $ACCEPTED publishes of 60 KB taken in the last 4 MiB"
[ "$ACCEPTED" -ge 30 ] ||
	fail "only $ACCEPTED publishes of 60 KB fit in the last 4 MiB"
ok

STEP="the disk filled from outside: publishes are refused"
fill_disk
alive
publish_until_refused 401 700
grep -q "event=storage_full" "$LOG" || fail "no storage_full in the log"
ok

STEP="a restart on the full disk"
stop_broker
start_broker
# Closing files can hand back blocks the filesystem had set aside for them
# (ext4 and XFS preallocation): take those too, then publish until refused.
fill_disk
publish_until_refused 701 760

STEP="every confirmed event is fetched and acked on the full disk"
drain "${CONFIRMED[@]}"

STEP="the drained file's pages take publishes again, disk still full"
t0=$SECONDS
until publish 800; do
	[ $((SECONDS - t0)) -lt 10 ] ||
		fail "publish after draining: still refused: $(cat "$TMP/err")"
	alive
	sleep 0.3
done
CONFIRMED=("$(cat "$TMP/out"):800")
ok

STEP="a lock file the full disk cannot allocate is refused at start"
stop_broker
# all holes, as LMDB leaves the pages it has not written yet (in place: a
# full XFS has no room for a new inode)
truncate -s 0 "$DATA/lock.mdb"
truncate -s 8192 "$DATA/lock.mdb"
sync
fill_disk
data_sum=$(cksum <"$DATA/data.mdb")
st=0
timeout 30 "$HANDOFFD" --data "$DATA" --listen "$URL" \
	--config "$TMP/handoffd.ini" >>"$LOG" 2>"$TMP/err" || st=$?
[ "$st" -eq 1 ] || fail "start with an unallocatable lock file: status $st, want 1"
grep -q "cannot allocate.*lock.mdb" "$TMP/err" ||
	fail "start refusal does not name lock.mdb: $(cat "$TMP/err")"
grep -q "free some space" "$TMP/err" ||
	fail "start refusal does not name the remedy: $(cat "$TMP/err")"
[ "$(cksum <"$DATA/data.mdb")" == "$data_sum" ] ||
	fail "the refused start changed data.mdb"
ok

STEP="space freed: the broker starts and publishing resumes"
rm -f "$MNT/fill"
sync
nocow() { lsattr "$1" | cut -d' ' -f1 | grep -q C; }
if [ "$FS" == btrfs ]; then
	# A store made before handoff set NOCOW (or copied in): its files
	# are copy-on-write. The start copies them into NOCOW ones.
	nocow "$DATA/data.mdb" || fail "a new store's data.mdb is not NOCOW"
	nocow "$DATA/lock.mdb" || fail "a new store's lock.mdb is not NOCOW"
	chattr -C "$DATA"
	for f in data.mdb lock.mdb; do
		cp --reflink=never "$DATA/$f" "$DATA/$f.cow"
		mv "$DATA/$f.cow" "$DATA/$f"
		! nocow "$DATA/$f" || fail "could not make $f copy-on-write"
	done
	ok
fi
start_broker
if [ "$FS" == btrfs ]; then
	nocow "$DATA/data.mdb" || fail "data.mdb is still copy-on-write"
	nocow "$DATA/lock.mdb" || fail "lock.mdb is still copy-on-write"
	grep -q "event=store_made_nocow" "$LOG" ||
		fail "no store_made_nocow in the log"
	[ ! -e "$DATA/data.mdb.nocow" ] || fail "the copy was left behind"
	ok
fi
for i in $(seq 801 880); do
	publish_ok "$i"
done
alive
drain "${CONFIRMED[@]}"
stop_broker
! grep -q "event=store_unusable" "$LOG" || fail "the store was declared unusable"
ok
STEP="done"
echo "full_$FS: $CHECKS checks passed"
