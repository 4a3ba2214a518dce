#!/bin/bash
# The Debian package end to end (tests/package/meson.build): build it with
# scripts/package.sh from this build folder, dpkg -i it, run the installed
# handoffd with the packaged config on a temporary data folder, publish,
# fetch and ack with the installed CLI, compile a program against the
# installed libhandoff (pkg-config), check that the installed handoffd
# refuses a store of a newer format version without touching it, then
# dpkg -r it: no file of the package may remain but its conffile.
# Skipped (exit 77) unless root with dpkg and dpkg-deb. Changes the
# system's package set: run in CI or a throwaway machine.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: the package test installs a .deb: run it as root (CI does)"
	exit 77
fi
for tool in dpkg dpkg-deb help2man pkg-config cc; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool is missing (scripts/deps.sh installs it)"
		exit 77
	fi
done
: "${HANDOFF_SOURCE_ROOT:?}" "${HANDOFF_PACKAGE_BUILD:?}" "${BUMP_FORMAT:?}"

W=$(mktemp -d "${TMPDIR:-/tmp}/hpkg-XXXXXX")
broker_pid=
cleanup() {
	local rc=$?
	[ -n "$broker_pid" ] && kill -TERM "$broker_pid" 2>/dev/null
	wait 2>/dev/null || true
	dpkg --purge handoff >/dev/null 2>&1 || true
	if [ "$rc" -ne 0 ]; then
		echo "package test failed: kept $W" >&2
		tail -n 20 "$W"/*.log >&2 2>/dev/null || true
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# a previous run that failed half-way may have left it installed
if dpkg -s handoff >/dev/null 2>&1; then
	dpkg --purge handoff >/dev/null
fi

DEB=$(bash "$HANDOFF_SOURCE_ROOT/scripts/package.sh" "$W" | tail -n 1)
[ -f "$DEB" ] || fail "package.sh made no .deb"
dpkg -i "$DEB" >"$W/dpkg-i.log" 2>&1 || fail "dpkg -i: $(cat "$W/dpkg-i.log")"
dpkg -L handoff | sort >"$W/files"
for f in /usr/bin/handoffd /usr/bin/handoff /usr/include/handoff.h \
	/etc/handoff/handoffd.conf /usr/share/man/man8/handoffd.8.gz \
	/usr/share/man/man1/handoff.1.gz \
	/usr/lib/systemd/system/handoffd.service \
	/usr/lib/sysusers.d/handoff.conf \
	/usr/share/handoff/handoff-alerts.yml; do
	[ -e "$f" ] || fail "$f not installed"
done
conffiles=$(dpkg-query -W -f='${Conffiles}\n' handoff)
grep -q "^ */etc/handoff/handoffd.conf " <<<"$conffiles" ||
	fail "handoffd.conf is not a conffile: $conffiles"
getent passwd handoff >/dev/null || fail "postinst made no handoff user"
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" \
	"$HANDOFF_SOURCE_ROOT/meson.build" | awk 'NR == 1')
[ "$(/usr/bin/handoffd --version)" = "handoffd $version" ] ||
	fail "installed handoffd is not version $version"
man8=$(zcat /usr/share/man/man8/handoffd.8.gz)
grep -q -- "data" <<<"$man8" || fail "handoffd.8 has no options"

# the installed broker, the packaged config, a temporary data folder
URL="ipc://$W/b.sock"
/usr/bin/handoffd --config /etc/handoff/handoffd.conf --data "$W/data" \
	--listen "$URL" --http-listen off 2>"$W/broker.log" &
broker_pid=$!
H=(/usr/bin/handoff --broker "$URL" --timeout 5s)
for _ in $(seq 100); do
	kill -0 "$broker_pid" 2>/dev/null || fail "installed handoffd exited"
	/usr/bin/handoff --broker "$URL" --timeout 300ms subscriptions \
		>/dev/null 2>&1 && break
	sleep 0.1
done
"${H[@]}" subscribe pkg-topic pkg-sub >/dev/null
echo "hello from the package" | "${H[@]}" publish pkg-topic >/dev/null
out=$("${H[@]}" consume pkg-sub --count 1)
grep -q "payload=hello from the package" <<<"$out" || fail "consumed: $out"
# acked: nothing is left to fetch
subs=$("${H[@]}" subscriptions --json)
grep -q '"ready":0' <<<"$subs" || fail "event not acked: $subs"
kill -TERM "$broker_pid"
wait "$broker_pid" || fail "installed handoffd did not stop cleanly"
broker_pid=

# libhandoff through pkg-config
flags=$(pkg-config --cflags --libs handoff) || fail "pkg-config handoff"
cat >"$W/t.c" <<'C'
#include <handoff.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
	puts(HANDOFF_VERSION);
	return strcmp(handoff_strerror(HANDOFF_ENOTFOUND), "") ? 0 : 1;
}
C
# shellcheck disable=SC2086
cc ${PACKAGE_TEST_CFLAGS:-} -o "$W/t" "$W/t.c" $flags ||
	fail "cannot build against libhandoff"
"$W/t" >/dev/null || fail "program linked against libhandoff failed"

# a store of a newer format version (the next release's): refused as it is
read -r old new < <("$BUMP_FORMAT" "$W/data") || fail "bump-format"
sum=$(sha256sum "$W/data/data.mdb")
if /usr/bin/handoffd --config /etc/handoff/handoffd.conf --data "$W/data" \
	--listen "$URL" --http-listen off 2>"$W/newer.log"; then
	fail "handoffd started on a store of format version $new"
fi
grep -q "store format version $new is not one this build reads (it reads version $old and upgrades version [0-9]*)" \
	"$W/newer.log" || fail "refusal does not name both versions: $(cat "$W/newer.log")"
[ "$(sha256sum "$W/data/data.mdb")" = "$sum" ] || fail "the newer store was modified"

# removal: only the conffile stays
dpkg -r handoff >"$W/dpkg-r.log" 2>&1 || fail "dpkg -r: $(cat "$W/dpkg-r.log")"
left=()
while read -r f; do
	[ "$f" = /etc/handoff/handoffd.conf ] && continue
	# folders (and /lib, a link to one on merged-/usr systems) may be shared
	[ -d "$f" ] && continue
	if [ -f "$f" ] || [ -L "$f" ]; then left+=("$f"); fi
done <"$W/files"
[ ${#left[@]} -eq 0 ] || fail "dpkg -r left: ${left[*]}"
[ -f /etc/handoff/handoffd.conf ] || fail "dpkg -r removed the conffile"
dpkg --purge handoff >/dev/null
[ ! -e /etc/handoff/handoffd.conf ] || fail "purge left the conffile"
getent passwd handoff >/dev/null && fail "purge left the handoff user"
echo "package test passed"
