#!/usr/bin/env bash
# scripts/run.sh — build handoff and run the broker in the foreground.
#
#   bash scripts/run.sh [handoffd options...]
#
# Installs the missing Debian packages (root, or sudo), configures build/
# with meson, builds it with ninja, then replaces itself with handoffd
# storing its data in ./handoff-data and listening on the defaults:
# tcp://127.0.0.1:7450 (native) and http://127.0.0.1:7451 (HTTP API).
# Extra arguments are passed on to handoffd.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh

handoff_install_deps || exit 1

if [ -f build/meson-private/coredata.dat ]; then
	# An existing build dir: pick up changes; start over if meson can't.
	meson setup --reconfigure build || meson setup --wipe build
else
	meson setup build
fi
ninja -C build

exec build/broker/handoffd --data ./handoff-data "$@"
