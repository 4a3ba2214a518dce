#!/bin/sh
# tests/bench/bench_smoke.sh — smoke test of handoff-bench (suite 'bench').
#
# Runs short scenarios against a spawned handoffd in a temporary folder and
# checks that the program exits 0, prints its table with a positive
# events/s figure for each scenario, and that --json prints valid JSON.
# The HTTP scenarios (each beside its native twin, added by the bench when
# not named) must print their row with a ratio to the native twin, the
# note saying the target and whether it was met, and in the JSON their
# "http" object. The push scenario (after e2e-batched, added by the bench
# when not named) must print its row with its ratio to e2e-batched and its
# note with the target, met or MISSED. The neighbour scenario's push cases
# (a short run of them alone) must print a row per phase and, for each bad
# endpoint (dead, slow, failing), its ratio line with the target 0.9, met
# or MISSED. Figures are never compared with targets: machines are noisy.
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
	--scenario publish-k1-e1,e2e-batched,http-publish-k8-e1,http-e2e-batched,push \
	--duration 1 --no-ceilings \
	>"$tmp/table.out" 2>"$tmp/table.err"
rc=$?
[ "$rc" -eq 0 ] || fail "table run exited with status $rc"

grep -Eq '^scenario +events/s +p50 +p99' "$tmp/table.out" ||
	fail "no table header in the output"
for s in publish-k1-e1 e2e-batched publish-k8-e1 http-publish-k8-e1 \
	http-e2e-batched push; do
	# the row: name, events/s (grouped with commas), ...
	v=$(awk -v s="$s" '$1 == s { gsub(",", "", $2); print $2; exit }' \
		"$tmp/table.out")
	[ -n "$v" ] || fail "no row for $s"
	awk -v v="$v" 'BEGIN { exit !(v ~ /^[0-9]+(\.[0-9]+)?$/ && v + 0 > 0) }' ||
		fail "$s: events/s is '$v', not a positive number"
	echo "bench-smoke: $s $v events/s"
done
# an HTTP row carries its ratio to the native twin; its note names the
# twin, the ratio and the target, met or MISSED (either is fine here), and
# the requests and connections
for s in http-publish-k8-e1:publish-k8-e1:0.8 http-e2e-batched:e2e-batched:0.5; do
	name=${s%%:*} rest=${s#*:}
	twin=${rest%%:*} target=${rest#*:}
	awk -v s="$name" '$1 == s && / [0-9]+\.[0-9]+ native(,|$)/ { found = 1 }
		END { exit !found }' "$tmp/table.out" ||
		fail "$name: no ratio to the native twin in its row"
	awk -v s="$name" -v t="$twin" -v g="$target" '
		$1 == s ":" { inside = 1; next }
		/^  [^ ]/ { inside = 0 }
		inside && index($0, "    HTTP: ") == 1 &&
			index($0, " vs " t "\047s ") &&
			index($0, ", target >= " g " (target ") &&
			$0 ~ /ratio [0-9]+\.[0-9]+, .*\(target (met|MISSED)\)$/ { ratio = 1 }
		inside && /^    [0-9,]+ HTTP requests on [0-9,]+ connections? \(keep-alive\)$/ { count = 1 }
		END { exit !(ratio && count) }' "$tmp/table.out" ||
		fail "$name: no note with the ratio to $twin, the target $target and the request count"
done
# the push row carries its ratio to e2e-batched (added again before it:
# http-e2e-batched ran in between); its note the target and the POSTs
awk '$1 == "push" && / [0-9]+\.[0-9]+ native(,|$)/ { found = 1 }
	END { exit !found }' "$tmp/table.out" ||
	fail "push: no ratio to e2e-batched in its row"
awk '
	/^  push: / { inside = 1; next }
	/^  [^ ]/ { inside = 0 }
	inside && index($0, "    push: ") == 1 &&
		index($0, " vs e2e-batched\047s ") &&
		index($0, ", target >= 0.5 (target ") &&
		$0 ~ /ratio [0-9]+\.[0-9]+, .*\(target (met|MISSED)\)$/ { ratio = 1 }
	inside && /^    [0-9,]+ POSTs received on [0-9,]+ connections? \(concurrency 16\)/ { count = 1 }
	END { exit !(ratio && count) }' "$tmp/table.out" ||
	fail "push: no note with the ratio to e2e-batched, the target 0.5 and the POST count"
grep -q '^result: ok$' "$tmp/table.out" || fail "the table does not end in 'result: ok'"

# 2. the neighbour scenario's push cases, short
"$HANDOFF_BENCH" --spawn "$HANDOFFD" --data-dir "$tmp" \
	--scenario neighbour --neighbour-cases push --duration 1 --no-ceilings \
	>"$tmp/table.out" 2>"$tmp/table.err"
rc=$?
[ "$rc" -eq 0 ] || fail "neighbour push run exited with status $rc"
for ph in push-healthy push-dead push-slow push-failing; do
	awk -v p="$ph" '$2 == p && $3 ~ /^[0-9,]+$/ { found = 1 }
		END { exit !found }' "$tmp/table.out" ||
		fail "neighbour: no phase row for $ph"
done
for ph in push-dead push-slow push-failing; do
	line=$(awk -v p="$ph" '$1 == p && $2 == "ratio" { print; exit }' \
		"$tmp/table.out")
	echo "$line" | grep -Eq '^ +'"$ph"' +ratio [0-9]+\.[0-9]+.*, target >= 0\.9 \(target (met|MISSED)\)$' ||
		fail "neighbour: no ratio line for $ph"
	echo "bench-smoke: $line" | sed 's/  */ /g'
done
grep -q '^result: ok$' "$tmp/table.out" || fail "the neighbour run does not end in 'result: ok'"

# 3. the JSON (with the ceilings, so that part is printed too)
"$HANDOFF_BENCH" --spawn "$HANDOFFD" --data-dir "$tmp" \
	--scenario http-publish-k4-e100 --duration 1 --json \
	>"$tmp/json.out" 2>"$tmp/json.err"
rc=$?
[ "$rc" -eq 0 ] || fail "JSON run exited with status $rc"
python3 -c 'import json,sys; json.load(sys.stdin)' <"$tmp/json.out" ||
	fail "the --json output does not parse"
# the HTTP scenario after its twin (added by the bench), with its ratio
python3 - "$tmp/json.out" <<'PY' || fail "the --json output lacks the HTTP scenario's ratio fields"
import json, sys
doc = json.load(open(sys.argv[1]))
names = [s["name"] for s in doc["scenarios"]]
assert names == ["publish-k4-e100", "http-publish-k4-e100"], names
s = doc["scenarios"][1]
h = s["http"]
assert h["twin"] == "publish-k4-e100", h
assert isinstance(h["ratio_to_native"], float), h
assert isinstance(h["twin_events_per_s"], float), h
assert h["target"] == 0.5 and isinstance(h["target_met"], bool), h
assert isinstance(s["ratios"]["native"], float), s["ratios"]
assert h["requests"] > 0 and h["connections"] > 0, h
PY

# the work folders are removed by handoff-bench itself
left=$(find "$tmp" -mindepth 1 -maxdepth 1 -name 'handoff-bench.*' | head -1)
[ -z "$left" ] || fail "work folder left behind: $left"

echo "bench-smoke: ok"
