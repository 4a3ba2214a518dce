# shellcheck shell=bash
# cli_lib.sh — the checks the CLI's shell tests share (test_cli.sh,
# test_cli_stop.sh). Sourced, not run. The test sets HANDOFF_CLI, URL, TMP
# and CHECKS before calling these; a failed check exits 1 (the test's EXIT
# trap then prints what it knows).

fail() {
	echo "CHECK FAILED: $*" >&2
	exit 1
}
ok() { CHECKS=$((CHECKS + 1)); }

hf() { "$HANDOFF_CLI" --broker "$URL" --timeout 10s "$@"; }

# run WANT_STATUS CMD...: run the CLI, keep stdout/stderr in $TMP/out,
# $TMP/err, and check its exit status.
run() {
	local want=$1
	shift
	local st=0
	hf "$@" >"$TMP/out" 2>"$TMP/err" || st=$?
	if [ "$st" -ne "$want" ]; then
		fail "handoff $*: exit status $st, want $want"
	fi
	ok
}

# eq DESC GOT WANT
eq() {
	[ "$2" == "$3" ] || fail "$1: got '$2', want '$3'"
	ok
}
# contains DESC FILE TEXT
contains() {
	grep -qF -- "$3" "$2" || fail "$1: '$3' not in $(head -c 2000 "$2")"
	ok
}
# json EXPR: evaluate a Python expression on the JSON in $TMP/out (as d)
json() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(json.dumps(v) if isinstance(v, (dict, list, tuple, bool)) or v is None else v)
' "$TMP/out" "$1" || fail "JSON check '$1' on: $(head -c 2000 "$TMP/out")"
}
