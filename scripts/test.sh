#!/usr/bin/env bash
# scripts/test.sh — check the layout, build handoff three times and run the
# whole test suite on each:
#
#   format       every .c/.h file laid out as .clang-format says
#                (scripts/format.sh --check); counts as one test
#   build/       normal build, warnings are errors
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer, leaks checked
#   build-fuzz/  clang + libFuzzer targets (tests/fuzz), each replaying its
#                corpus and regressions, then fuzzing for a few seconds
#
# Installs missing Debian packages first (see scripts/deps.sh). The last
# line printed is always "N passed, N failed", summed over the builds
# (from each build's meson-logs/testlog.json); a build that fails counts
# as "0 passed, 1 failed". Exits non-zero if anything failed or no test ran.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh

summary() {
	echo "$1 passed, $2 failed"
}

if ! handoff_install_deps; then
	summary 0 1
	exit 1
fi

# Count one build's results: prints "PASSED FAILED".
# passed = OK + EXPECTEDFAIL; failed = everything else but SKIP.
count_results() {
	local log=$1
	if [ ! -s "$log" ]; then
		echo "0 0"
		return
	fi
	if command -v python3 >/dev/null 2>&1; then
		python3 - "$log" <<'PY'
import json, sys
passed = failed = 0
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        try:
            result = json.loads(line).get("result")
        except ValueError:
            failed += 1
            continue
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result != "SKIP":
            failed += 1
print(passed, failed)
PY
	else
		# One object per line; test output inside a line is a JSON string,
		# so its quotes are escaped and cannot match this pattern.
		{ grep -o '"result": *"[A-Z]*"' "$log" || true; } | sed 's/.*"\([A-Z]*\)"$/\1/' |
			awk '$1 == "OK" || $1 == "EXPECTEDFAIL" { p++; next }
			     $1 != "SKIP" { f++ }
			     END { printf "%d %d\n", p, f }'
	fi
}

# setup_and_build DIR [meson options...]
setup_and_build() {
	local dir=$1
	shift
	# Called as an if-condition, where set -e is off: chain explicitly.
	if [ -f "$dir/meson-private/coredata.dat" ]; then
		meson setup --reconfigure "$dir" "$@" ||
			meson setup --wipe "$dir" "$@" || return 1
	else
		meson setup "$dir" "$@" || return 1
	fi
	ninja -C "$dir"
}

total_passed=0
total_failed=0

# run_suite NAME DIR [meson test options...]
run_suite() {
	local name=$1 dir=$2 rc=0 counts passed failed
	shift 2
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" || rc=$?
	counts=$(count_results "$dir/meson-logs/testlog.json") || counts="0 1"
	read -r passed failed <<<"$counts"
	# meson failed without a failing test to show for it (crash, bad
	# arguments): count that as a failure rather than trust the log.
	if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
		echo "test.sh: meson test in $dir exited $rc" >&2
		failed=1
	fi
	echo "== $name: $passed passed, $failed failed"
	total_passed=$((total_passed + passed))
	total_failed=$((total_failed + failed))
	if [ "$((passed + failed))" -eq 0 ]; then
		echo "test.sh: no test ran in $dir" >&2
		no_tests=1
	fi
}

no_tests=0

echo "== format check (scripts/format.sh --check)"
if bash scripts/format.sh --check; then
	echo "== format: 1 passed, 0 failed"
	total_passed=$((total_passed + 1))
else
	echo "test.sh: the layout differs from .clang-format: run" \
		"'bash scripts/format.sh' and commit" >&2
	echo "== format: 0 passed, 1 failed"
	total_failed=$((total_failed + 1))
fi

echo "== normal build (build/)"
if ! setup_and_build build -Dwerror=true; then
	echo "test.sh: build/ failed to build" >&2
	summary 0 1
	exit 1
fi
run_suite "normal build" build

echo "== sanitizer build (build-asan/)"
if ! setup_and_build build-asan -Db_sanitize=address,undefined \
	-Db_lundef=false -Dwerror=true; then
	echo "test.sh: build-asan/ failed to build" >&2
	summary 0 1
	exit 1
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite "sanitizer build" build-asan --timeout-multiplier 3

echo "== fuzz build (build-fuzz/)"
if ! (export CC=clang; setup_and_build build-fuzz -Dfuzz=true \
	-Dtests=false -Db_sanitize=address,undefined -Db_lundef=false); then
	echo "test.sh: build-fuzz/ failed to build" >&2
	total_failed=$((total_failed + 1))
else
	run_suite "fuzz build" build-fuzz --suite fuzz
fi

summary "$total_passed" "$total_failed"
if [ "$total_failed" -ne 0 ] || [ "$no_tests" -ne 0 ]; then
	exit 1
fi
exit 0
