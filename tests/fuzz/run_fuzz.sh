#!/bin/sh
# run_fuzz.sh — one fuzz target as a CI test (tests/fuzz/meson.build):
#
#   run_fuzz.sh EXE NAME SECONDS SEED_DIR REGRESSION_DIR DICT ARTIFACT_DIR \
#       [LIBFUZZER_FLAG...]
#
# Replays the seed corpus and every file of REGRESSION_DIR (if it exists),
# then fuzzes for SECONDS (FUZZ_SECONDS in the environment overrides it)
# with the dictionary, 1 GiB of memory, 10 s per input and the flags given
# (-max_len). New inputs go to a temporary corpus, removed afterwards: the
# repository is never written. Any crash, leak, timeout, out-of-memory or
# invariant violation fails the test; the input that caused it is kept in
# ARTIFACT_DIR, with the command to reproduce it.
set -u

exe=$1 name=$2 secs=${FUZZ_SECONDS:-$3} seeds=$4 regress=$5 dict=$6 art=$7
shift 7

work=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/corpus" "$art" || exit 1

dirs=$seeds
if [ -d "$regress" ]; then
	dirs="$dirs $regress"
fi

# Sanitizers: stop at the first error, report leaks, symbolized stacks.
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS UBSAN_OPTIONS

echo "$name: replaying $dirs, then fuzzing for ${secs}s"
# shellcheck disable=SC2086 # $dirs is a list of folders
"$exe" -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 \
	-detect_leaks=1 -dict="$dict" \
	-artifact_prefix="$art/$name-" -print_final_stats=1 "$@" \
	"$work/corpus" $dirs
rc=$?
# libFuzzer reports a crash with exit status 77, which meson takes for
# "skipped": any failure must be a failure.
if [ "$rc" -ne 0 ]; then
	rc=1
fi
if [ "$rc" -ne 0 ]; then
	echo "$name: FAILED (exit $rc). Inputs kept:" >&2
	ls -l "$art" | grep -F -- "$name-" >&2
	echo "Reproduce with: $exe $art/$name-<file>" >&2
	echo "Then add the file to tests/fuzz/regressions/$name/." >&2
fi
exit "$rc"
