#!/bin/sh
# tests/bench/bench_smoke.sh — smoke test of handoff-bench (suite 'bench').
#
# Runs two short scenarios against a spawned handoffd in a temporary folder
# and checks that the program exits 0, prints its table with a positive
# events/s figure for each scenario, and that --json prints valid JSON.
# Figures are never compared with targets: machines are noisy.
#
# Environment: HANDOFF_BENCH and HANDOFFD, the two binaries (set by
# tests/bench/meson.build).
set -u

: "${HANDOFF_BENCH:?HANDOFF_BENCH must name the handoff-bench binary}"
: "${HANDOFFD:?HANDOFFD must name the handoffd binary}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
	echo "bench-smoke: FAIL: $*" >&2
	for f in "$tmp"/table.out "$tmp"/table.err "$tmp"/json.out \
		"$tmp"/json.err; do
		if [ -s "$f" ]; then
			echo "--- $f ---" >&2
			cat "$f" >&2
		fi
	done
	exit 1
}

# 1. the table
"$HANDOFF_BENCH" --spawn "$HANDOFFD" --data-dir "$tmp" \
	--scenario publish-k1-e1,e2e-batched --duration 1 --no-ceilings \
	>"$tmp/table.out" 2>"$tmp/table.err"
rc=$?
[ "$rc" -eq 0 ] || fail "table run exited with status $rc"

grep -Eq '^scenario +events/s +p50 +p99' "$tmp/table.out" ||
	fail "no table header in the output"
for s in publish-k1-e1 e2e-batched; do
	# the row: name, events/s (grouped with commas), ...
	v=$(awk -v s="$s" '$1 == s { gsub(",", "", $2); print $2; exit }' \
		"$tmp/table.out")
	[ -n "$v" ] || fail "no row for $s"
	awk -v v="$v" 'BEGIN { exit !(v ~ /^[0-9]+(\.[0-9]+)?$/ && v + 0 > 0) }' ||
		fail "$s: events/s is '$v', not a positive number"
	echo "bench-smoke: $s $v events/s"
done
grep -q '^result: ok$' "$tmp/table.out" || fail "the table does not end in 'result: ok'"

# 2. the JSON (with the ceilings, so that part is printed too)
"$HANDOFF_BENCH" --spawn "$HANDOFFD" --data-dir "$tmp" \
	--scenario publish-k4-e100 --duration 1 --json \
	>"$tmp/json.out" 2>"$tmp/json.err"
rc=$?
[ "$rc" -eq 0 ] || fail "JSON run exited with status $rc"
python3 -c 'import json,sys; json.load(sys.stdin)' <"$tmp/json.out" ||
	fail "the --json output does not parse"

# the work folders are removed by handoff-bench itself
left=$(find "$tmp" -mindepth 1 -maxdepth 1 -name 'handoff-bench.*' | head -1)
[ -z "$left" ] || fail "work folder left behind: $left"

echo "bench-smoke: ok"
