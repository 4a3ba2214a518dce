#!/usr/bin/env bash
# test_foreign_dir.sh — handoffd pointed at a folder that is not a handoff
# store it reads refuses to start with a clear message and leaves the folder
# exactly as it was: every file's bytes, sizes, modes and times, the
# folder's listing and its own time (so nothing was made and removed
# either). The folders: another program's LMDB environment (with and
# without its lock file, and with a "meta" database whose "schema" is not
# handoff's), a handoff store of an unknown format version, unrelated
# files, a data.mdb that is no LMDB file, and an empty data.mdb.
#
# Needs HANDOFFD (meson sets it) and mdb_load (lmdb-utils); exits 77
# (skipped) without mdb_load.
set -euo pipefail

: "${HANDOFFD:?HANDOFFD must point at handoffd}"
command -v mdb_load >/dev/null 2>&1 || {
	echo "SKIP foreign_dir: mdb_load is not installed (lmdb-utils)" >&2
	exit 77
}

base=${TMPDIR:-/tmp}
[ ${#base} -gt 60 ] && base=/tmp
TMP=$(mktemp -d "$base/hoforeign-XXXXXX")
CHECKS=0
STEP="setup"
BPID=""

cleanup() {
	local rc=$?
	if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then
		kill -9 "$BPID" 2>/dev/null || true
		wait "$BPID" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ]; then
		echo "FAILED at step: $STEP (after $CHECKS passed checks)" >&2
		[ -s "$TMP/err" ] && {
			echo "---- handoffd stderr ----" >&2
			cat "$TMP/err" >&2
		}
	fi
	if [ -n "${HANDOFF_KEEP_TMP:-}" ]; then
		echo "kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit $rc
}
trap cleanup EXIT

fail() {
	echo "CHECK FAILED: $*" >&2
	exit 1
}
ok() { CHECKS=$((CHECKS + 1)); }

# Everything about a folder a start could change: the listing with sizes,
# modes and modification times (the folder's own included: a file made and
# removed again changes it), and every file's checksum.
snapshot() {
	(
		cd "$1"
		find . -printf '%p %y %s %m %T@\n' | sort
		find . -type f -print0 | sort -z | xargs -0 -r sha256sum
	)
}

# refused DIR TEXT: handoffd on DIR exits 1 (not by a signal), says TEXT,
# and DIR is exactly as it was.
refused() {
	local dir=$1 text=$2 st=0
	local before
	before=$(snapshot "$dir")
	sleep 0.01 # a change within the same clock tick would not show
	timeout 30 "$HANDOFFD" --data "$dir" --listen "ipc://$TMP/b.sock" \
		>"$TMP/out" 2>"$TMP/err" || st=$?
	[ "$st" -eq 1 ] || fail "$STEP: handoffd exit status $st, want 1"
	grep -q -- "$text" "$TMP/err" ||
		fail "$STEP: the refusal does not say '$text'"
	! grep -q Sanitizer "$TMP/err" || fail "$STEP: sanitizer report"
	local after
	after=$(snapshot "$dir")
	if [ "$before" != "$after" ]; then
		diff <(echo "$before") <(echo "$after") >&2 || true
		fail "$STEP: the folder changed"
	fi
	[ ! -e "$TMP/b.sock" ] || fail "$STEP: it listened"
	ok
}

# mdb_load DIR [ARGS] < dump: another program's environment.
foreign_env() {
	mkdir "$1"
	printf 'VERSION=3\nformat=print\ntype=btree\nHEADER=END\n%s\nDATA=END\n' \
		" greeting
 hello, not handoff" | mdb_load "$1"
}

STEP="another program's LMDB environment"
foreign_env "$TMP/foreign"
[ -e "$TMP/foreign/lock.mdb" ] || fail "mdb_load made no lock file"
refused "$TMP/foreign" "not a handoff store"

STEP="another program's LMDB environment, without its lock file"
foreign_env "$TMP/nolock"
rm "$TMP/nolock/lock.mdb"
refused "$TMP/nolock" "not a handoff store"

STEP="an environment with a 'meta' database whose 'schema' is not 4 bytes"
foreign_env "$TMP/meta"
printf 'VERSION=3\nformat=print\ntype=btree\nHEADER=END\n%s\nDATA=END\n' \
	" schema
 version one" | mdb_load -s meta "$TMP/meta"
refused "$TMP/meta" "not a handoff store"

STEP="a handoff store of a format version this build does not read"
"$HANDOFFD" --data "$TMP/store" --listen "ipc://$TMP/s.sock" \
	>"$TMP/out" 2>"$TMP/err" &
BPID=$!
for _ in $(seq 1 100); do
	[ -S "$TMP/s.sock" ] && break
	sleep 0.1
done
[ -S "$TMP/s.sock" ] || fail "the broker making the store did not start"
kill -TERM "$BPID"
wait "$BPID" || fail "the broker making the store stopped with status $?"
BPID=""
# meta "schema" = 7 (big-endian, 4 bytes)
printf 'VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n%s\nDATA=END\n' \
	" 736368656d61
 00000007" | mdb_load -s meta "$TMP/store"
refused "$TMP/store" "store format version 7 is not one this build reads"

STEP="a folder of unrelated files"
mkdir "$TMP/unrelated"
echo "precious" >"$TMP/unrelated/notes.txt"
head -c 20000 /dev/urandom >"$TMP/unrelated/blob.bin"
refused "$TMP/unrelated" "holds no handoff store"

STEP="a data.mdb that is no LMDB file"
mkdir "$TMP/text"
for i in $(seq 1 1000); do echo "line $i of someone's notes"; done \
	>"$TMP/text/data.mdb"
echo "keep me" >"$TMP/text/other.txt"
refused "$TMP/text" "holds no handoff store, or a damaged one.*not an LMDB file"

STEP="an empty data.mdb"
mkdir "$TMP/empty"
: >"$TMP/empty/data.mdb"
refused "$TMP/empty" "holds no handoff store, or a damaged one.*0 bytes"

STEP="done"
echo "foreign_dir: $CHECKS checks passed"
