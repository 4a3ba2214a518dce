#!/usr/bin/env bash
# scripts/format.sh — the C layout of .clang-format, on every tracked .c and
# .h file.
#
#   bash scripts/format.sh           reformat them in place
#   bash scripts/format.sh --check   change nothing; list the files whose
#                                    layout differs, exit 1 if any does
#
# clang-format 14 (Debian 12's; scripts/deps.sh installs it): another major
# version may lay out a few constructs differently.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v clang-format >/dev/null 2>&1; then
	echo "format.sh: clang-format is not installed (apt-get install clang-format)" >&2
	exit 2
fi

mapfile -t files < <(git ls-files -- '*.c' '*.h')
if [ "${1:-}" != "--check" ]; then
	clang-format -i -- "${files[@]}"
	exit 0
fi

bad=0
for f in "${files[@]}"; do
	if ! clang-format --dry-run --Werror -- "$f" >/dev/null 2>&1; then
		echo "format.sh: $f differs from .clang-format (run: bash scripts/format.sh)"
		bad=1
	fi
done
exit "$bad"
