# shellcheck shell=bash
# scripts/deps.sh — the Debian 12 packages handoff needs to build and test,
# and handoff_install_deps, which installs the missing ones.
# Sourced by scripts/run.sh and scripts/test.sh; not run on its own.

HANDOFF_DEB_PACKAGES=(
	build-essential meson ninja-build pkg-config
	liblmdb-dev lmdb-utils
	libnanomsg-dev nanomsg-utils
	libprotobuf-c-dev protobuf-c-compiler
	libsodium-dev libinih-dev zlib1g-dev
	libjansson-dev
	libcmocka-dev
	libmicrohttpd-dev libjansson-dev
	libcurl4-openssl-dev # push delivery (broker/push.c)
	libsystemd-dev # sd_notify (broker/notify.c)
	systemd # systemd-analyze, for the unit file's test
	curl openssl python3-yaml python3-jsonschema
	clang libclang-rt-14-dev llvm clang-format
	btrfs-progs xfsprogs # the full-disk tests' filesystems
	prometheus # promtool and the server: tests/prometheus (GET /metrics, alert rules)
	faketime
	dpkg-dev help2man # scripts/package.sh and its test
)

# Print the packages of HANDOFF_DEB_PACKAGES that are not installed.
handoff_missing_deps() {
	local pkg status
	for pkg in "${HANDOFF_DEB_PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
		if [ "$status" != "install ok installed" ]; then
			printf '%s\n' "$pkg"
		fi
	done
}

# Install whatever is missing: as root directly, otherwise through sudo
# (non-interactive when there is no terminal to ask a password on).
# Returns non-zero, saying what to install, when it cannot.
handoff_install_deps() {
	local -a missing sudo_cmd
	if ! command -v dpkg-query >/dev/null 2>&1; then
		echo "deps: not a Debian system (no dpkg-query); make sure these" \
			"or their equivalents are installed:" >&2
		echo "  ${HANDOFF_DEB_PACKAGES[*]}" >&2
		return 0
	fi
	mapfile -t missing < <(handoff_missing_deps)
	if [ "${#missing[@]}" -eq 0 ]; then
		return 0
	fi
	echo "deps: missing Debian packages: ${missing[*]}" >&2

	sudo_cmd=()
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "deps: missing packages and not root (no sudo). Run as root:" >&2
			echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
			return 1
		fi
		if [ -t 0 ]; then
			sudo_cmd=(sudo)
		else
			sudo_cmd=(sudo -n)
		fi
	fi

	if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get update -q ||
		! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends "${missing[@]}"; then
		echo "deps: could not install: ${missing[*]}" >&2
		echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
		return 1
	fi
}
