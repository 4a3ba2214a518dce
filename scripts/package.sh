#!/bin/bash
# scripts/package.sh — build handoff's Debian package from the tree.
#
#   scripts/package.sh [OUTDIR]
#
# Builds with meson (a release build in build-pkg/ with --prefix=/usr, or
# the build folder named by $HANDOFF_PACKAGE_BUILD: any prefix, moved to
# /usr in the package), installs it with DESTDIR into a staging tree and
# makes OUTDIR/handoff_VERSION_ARCH.deb with dpkg-deb. Prints the .deb's
# path last. Needs dpkg-dev and help2man (scripts/deps.sh).
#
# The package: /usr/bin/handoffd and handoff, libhandoff (.so, handoff.h,
# handoff.pc), man pages generated from --help, /etc/handoff/handoffd.conf
# (a conffile: data in /var/lib/handoff), the systemd unit and sysusers
# snippet (deploy/systemd/, when present), the alert rules
# (deploy/prometheus/handoff-alerts.yml, when present) under
# /usr/share/handoff/, README and CHANGELOG. postinst makes the system user
# handoff and /var/lib/handoff and starts nothing; postrm removes the user
# on purge only, and the data folder only if it is empty (a store is never
# deleted by the package manager).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT}" && cd "${1:-$ROOT}" && pwd)
VERSION=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$ROOT/meson.build" | awk 'NR == 1')
ARCH=$(dpkg --print-architecture)
[ -n "$VERSION" ] || { echo "package.sh: no version in meson.build" >&2; exit 1; }

BUILD=${HANDOFF_PACKAGE_BUILD:-$ROOT/build-pkg}
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" --prefix=/usr --buildtype=release \
		-Dtests=false >/dev/null
fi
ninja -C "$BUILD" >/dev/null

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/handoff-pkg-XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
D=$STAGE/root
meson install -C "$BUILD" --destdir "$D" --no-rebuild >/dev/null
PREFIX=$(meson introspect "$BUILD" --buildoptions |
	python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"][0])')
if [ "$PREFIX" != /usr ]; then
	# a build made for another prefix: the same files, under /usr
	mkdir -p "$D/usr"
	cp -a "$D$PREFIX/." "$D/usr/"
	rm -rf "${D:?}$PREFIX"
	find "$D/usr" -name '*.pc' -exec sed -i "s|^prefix=.*|prefix=/usr|" {} +
	rmdir -p "$(dirname "$D$PREFIX")" 2>/dev/null || true
fi

# configuration, unit, alerts, docs
install -D -m 0644 "$ROOT/deploy/handoff/handoffd.conf" "$D/etc/handoff/handoffd.conf"
if [ -f "$ROOT/deploy/systemd/handoffd.service" ]; then
	install -D -m 0644 "$ROOT/deploy/systemd/handoffd.service" \
		"$D/usr/lib/systemd/system/handoffd.service"
fi
if [ -f "$ROOT/deploy/systemd/handoff.sysusers" ]; then
	install -D -m 0644 "$ROOT/deploy/systemd/handoff.sysusers" \
		"$D/usr/lib/sysusers.d/handoff.conf"
fi
if [ -f "$ROOT/deploy/prometheus/handoff-alerts.yml" ]; then
	install -D -m 0644 "$ROOT/deploy/prometheus/handoff-alerts.yml" \
		"$D/usr/share/handoff/handoff-alerts.yml"
fi
DOC=$D/usr/share/doc/handoff
install -D -m 0644 "$ROOT/README.md" "$DOC/README.md"
[ -f "$ROOT/CHANGELOG.md" ] && install -m 0644 "$ROOT/CHANGELOG.md" "$DOC/CHANGELOG.md"

# man pages from --help (help2man runs the staged programs)
LIBDIR=$(dirname "$(find "$D/usr" -name 'libhandoff.so*' | awk 'NR == 1')")
mkdir -p "$D/usr/share/man/man1" "$D/usr/share/man/man8"
LD_LIBRARY_PATH=$LIBDIR help2man -N --no-discard-stderr \
	--version-string="$VERSION" -s 8 \
	-n "the handoff durable event broker" \
	"$D/usr/bin/handoffd" >"$D/usr/share/man/man8/handoffd.8"
LD_LIBRARY_PATH=$LIBDIR help2man -N --no-discard-stderr \
	--version-string="$VERSION" -s 1 \
	-n "command-line client of the handoff event broker" \
	"$D/usr/bin/handoff" >"$D/usr/share/man/man1/handoff.1"
gzip -9n "$D/usr/share/man/man1/handoff.1" "$D/usr/share/man/man8/handoffd.8"

# Depends: the packages of the shared libraries the programs load directly
deps=()
for name in $(readelf -d "$D/usr/bin/handoffd" "$D/usr/bin/handoff" "$LIBDIR"/libhandoff.so.*.* |
	sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u); do
	case $name in libhandoff.so*) continue ;; esac
	lib=$(ldconfig -p | awk -v n="$name" '$1 == n && !found {print $NF; found = 1}')
	[ -n "$lib" ] || continue
	pkg=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(realpath "$lib")" 2>/dev/null ||
		dpkg -S "/usr$lib" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null || true)
	pkg=${pkg%%:*}
	if [ -n "$pkg" ]; then deps+=("$pkg"); fi
done
DEPENDS=$(printf '%s\n' "${deps[@]}" adduser | sort -u | paste -sd, - | sed 's/,/, /g')

mkdir -p "$D/DEBIAN"
SIZE=$(du -sk --exclude=DEBIAN "$D" | cut -f1)
cat >"$D/DEBIAN/control" <<EOF
Package: handoff
Version: $VERSION
Architecture: $ARCH
Maintainer: handoff maintainers <handoff@localhost>
Installed-Size: $SIZE
Depends: $DEPENDS
Section: net
Priority: optional
Description: durable event broker (LMDB, nanomsg, HTTP)
 handoffd stores every published event durably in LMDB and delivers it to
 each subscription at least once, with leases, retries and dead letters;
 handoff is its command-line client and libhandoff its C client library
 (handoff.h, pkg-config handoff).
EOF
echo /etc/handoff/handoffd.conf >"$D/DEBIAN/conffiles"
cat >"$D/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Makes the handoff system user and /var/lib/handoff; starts nothing.
set -e
if [ "$1" = configure ]; then
	if ! getent passwd handoff >/dev/null; then
		adduser --system --group --quiet --home /var/lib/handoff \
			--no-create-home handoff
	fi
	if [ ! -d /var/lib/handoff ]; then
		install -d -o handoff -g handoff -m 0750 /var/lib/handoff
	fi
	ldconfig
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || true
	fi
fi
exit 0
EOF
cat >"$D/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# On purge: the handoff user goes, and /var/lib/handoff only if empty (a
# store is data: never deleted by the package manager).
set -e
case "$1" in
remove)
	ldconfig
	;;
purge)
	ldconfig
	rmdir /var/lib/handoff 2>/dev/null || true
	if getent passwd handoff >/dev/null; then
		deluser --quiet --system handoff >/dev/null 2>&1 || true
	fi
	if getent group handoff >/dev/null; then
		delgroup --quiet --system handoff >/dev/null 2>&1 || true
	fi
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$D/DEBIAN/postinst" "$D/DEBIAN/postrm"
DEB=$OUT/handoff_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group --build "$D" "$DEB" >/dev/null
echo "$DEB"
