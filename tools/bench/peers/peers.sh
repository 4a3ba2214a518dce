#!/usr/bin/env bash
# tools/bench/peers/peers.sh — handoff against peer brokers, same machine,
# same session.
#
#   bash tools/bench/peers/peers.sh [--rounds N] [--duration S] [--only LIST] [--keep]
#
# Installs what is missing (Debian packages of the peers and their C
# clients, plus the project's own build deps from scripts/deps.sh), builds
# the bench clients into build-peers/, then runs every round: each broker
# in turn is started on 127.0.0.1 (non-default ports, data in a temp
# folder), driven through the four workloads of tools/bench/peers/peer_common.h
# (w256, w1, e2e, lat1k) and stopped. At the end one table: the median
# over the rounds of each figure, and handoff's throughput divided by each
# peer's.
#
#   --rounds N     rounds (default 1); brokers alternate within a round
#   --duration S   seconds per workload (default 5)
#   --only LIST    comma list of handoff,redis,beanstalkd,rabbitmq,nats
#                  (default all)
#   --keep         keep the temp folder (logs, data, results.jsonl)
#
# Ports (environment overrides): PEERS_REDIS_PORT=16379
# PEERS_BEANSTALKD_PORT=11301 PEERS_RABBITMQ_PORT=15673
# PEERS_RABBITMQ_DIST_PORT=25673 PEERS_EPMD_PORT=14370 PEERS_NATS_PORT=14222.
# Every server listens on 127.0.0.1 only and is stopped by its pid, on exit
# and on ctrl-C too. The raw JSON lines are kept in
# build-peers/peers-results.jsonl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
BUILD="$ROOT/build-peers"
BENCH="$BUILD/tools/bench/peers"
CMDLINE="bash tools/bench/peers/peers.sh $*"

ROUNDS=1
DURATION=5
ONLY="handoff,redis,beanstalkd,rabbitmq,nats"
KEEP=0
REDIS_PORT=${PEERS_REDIS_PORT:-16379}
BEANSTALKD_PORT=${PEERS_BEANSTALKD_PORT:-11301}
RABBITMQ_PORT=${PEERS_RABBITMQ_PORT:-15673}
RABBITMQ_DIST_PORT=${PEERS_RABBITMQ_DIST_PORT:-25673}
EPMD_PORT=${PEERS_EPMD_PORT:-14370}
NATS_PORT=${PEERS_NATS_PORT:-14222}
RABBITMQ_NODE=handoffbench@localhost
WORKLOADS=(w256 w1 e2e lat1k)

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=${2:?--rounds needs a number}; shift 2 ;;
	--duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
	--only) ONLY=${2:?--only needs a list}; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "peers.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "peers.sh: bad --rounds" >&2; exit 2; }
[[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "peers.sh: bad --duration" >&2; exit 2; }
for p in ${ONLY//,/ }; do
	case "$p" in
	handoff | redis | beanstalkd | rabbitmq | nats) ;;
	*) echo "peers.sh: unknown peer '$p' in --only" >&2; exit 2 ;;
	esac
done
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }

log() { printf '[peers] %s\n' "$*" >&2; }

# ---- servers and cleanup ---------------------------------------------------

TMP=""
SERVER_PIDS=()     # pids this script started, stopped on exit
EPMD_STARTED=0

# Stop one pid: TERM, wait up to 15 s, then KILL.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid ignored TERM; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

forget_pid() {
	local pid=$1 p keep=()
	for p in "${SERVER_PIDS[@]}"; do
		[ "$p" = "$pid" ] || keep+=("$p")
	done
	SERVER_PIDS=("${keep[@]}")
}

stop_epmd() {
	if [ "$EPMD_STARTED" = 1 ]; then
		ERL_EPMD_PORT=$EPMD_PORT epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
		EPMD_STARTED=0
	fi
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	if [ "${#SERVER_PIDS[@]}" -gt 0 ]; then
		for pid in "${SERVER_PIDS[@]}"; do
			stop_pid "$pid"
		done
	fi
	stop_epmd
	if [ -n "$TMP" ] && [ -d "$TMP" ]; then
		if [ "$KEEP" = 1 ]; then
			log "kept $TMP"
		else
			rm -rf "$TMP"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Wait until 127.0.0.1:port accepts, while pid lives; 0 when it does.
wait_port() {
	local port=$1 pid=$2 secs=${3:-30} i
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		port_busy "$port" && return 0
		sleep 0.1
	done
	return 1
}

show_log() {
	if [ -f "$1" ]; then
		tail -n 20 "$1" | sed 's/^/    /' >&2
	fi
}

# ---- install and build ----------------------------------------------------

PEER_PACKAGES=(redis-server rabbitmq-server beanstalkd nats-server
	libhiredis-dev librabbitmq-dev libnats-dev)
SERVICES=(redis-server rabbitmq-server beanstalkd nats-server)

install_all() {
	local -a before=() newly=()
	local svc
	# shellcheck source=scripts/deps.sh disable=SC1091
	. "$ROOT/scripts/deps.sh"
	HANDOFF_DEB_PACKAGES+=("${PEER_PACKAGES[@]}")
	command -v dpkg-query >/dev/null 2>&1 && mapfile -t before < <(handoff_missing_deps)
	handoff_install_deps || { log "install the packages above and run again"; exit 1; }
	# Debian starts a package's service on install (where policy allows):
	# stop the ones installed just now so they hold no ports or epmd names.
	for svc in "${SERVICES[@]}"; do
		[[ " ${before[*]} " == *" $svc "* ]] && newly+=("$svc")
	done
	for svc in "${newly[@]}"; do
		if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
			systemctl stop "$svc" >/dev/null 2>&1 || true
		elif command -v service >/dev/null 2>&1; then
			service "$svc" stop >/dev/null 2>&1 || true
		fi
	done
}

build_all() {
	local -a setup=(meson setup "$BUILD" -Dpeers=true -Dtests=false)
	# Reconfigure every time: tools/bench/peers/meson.build builds
	# peer-rabbitmq and peer-nats only when their sources exist at
	# configure time.
	if [ -d "$BUILD" ] && [ -f "$BUILD/build.ninja" ]; then
		setup+=(--reconfigure)
	fi
	(cd "$ROOT" && "${setup[@]}" >"$TMP/meson-setup.log" 2>&1) || {
		log "meson setup failed:"; show_log "$TMP/meson-setup.log"; exit 1; }
	ninja -C "$BUILD" >"$TMP/ninja.log" 2>&1 || {
		log "build failed:"; tail -n 40 "$TMP/ninja.log" >&2; exit 1; }
}

# ---- running one client ----------------------------------------------------

RESULTS=""

# run_client ROUND PEER VARIANT BINARY ARGS... : one JSON line to RESULTS.
run_client() {
	local round=$1 peer=$2 variant=$3 bin=$4 line rc=0 w
	shift 4
	for w in "${WORKLOADS[@]}"; do
		log "round $round: $peer${variant:+ ($variant)} $w"
		line=$(timeout $((${DURATION%.*} + 120)) "$bin" --workload "$w" \
			--duration "$DURATION" "$@" 2>>"$TMP/$peer$variant.client.log" |
			tail -n 1) || rc=$?
		python3 - "$round" "$peer" "$variant" "$w" "$rc" "$line" >>"$RESULTS" <<'EOF'
import json, sys
rnd, peer, variant, w, rc, line = sys.argv[1:]
try:
    r = json.loads(line)
except ValueError:
    r = {"peer": peer, "variant": variant, "workload": w, "rate": 0,
         "error": "client exit %s, no result line" % rc}
r["round"] = int(rnd)
r["variant"] = variant
print(json.dumps(r))
EOF
		if ! python3 -c 'import json,sys; sys.exit(1 if json.loads(sys.argv[1]).get("error") else 0)' \
			"$(tail -n 1 "$RESULTS")"; then
			log "  failed: $(tail -n 1 "$RESULTS")"
			show_log "$TMP/$peer$variant.client.log"
		fi
		rc=0
	done
}

skip_all() { # ROUND PEER VARIANT REASON
	local w
	for w in "${WORKLOADS[@]}"; do
		python3 -c 'import json,sys; print(json.dumps({"round":int(sys.argv[1]),"peer":sys.argv[2],"variant":sys.argv[3],"workload":sys.argv[4],"rate":0,"skipped":sys.argv[5],"error":sys.argv[5]}))' \
			"$1" "$2" "$3" "$w" "$4" >>"$RESULTS"
	done
	log "round $1: $2${3:+ ($3)}: $4"
}

# ---- the brokers -----------------------------------------------------------

run_handoff() {
	local round=$1 dir="$TMP/handoff.$1" pid
	mkdir -p "$dir/data"
	"$BUILD/broker/handoffd" --data "$dir/data" --listen "ipc://$dir/handoff.sock" \
		>"$dir/handoffd.log" 2>&1 &
	pid=$!
	SERVER_PIDS+=("$pid")
	local i
	for ((i = 0; i < 100; i++)); do
		[ -S "$dir/handoff.sock" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! kill -0 "$pid" 2>/dev/null || [ ! -S "$dir/handoff.sock" ]; then
		log "handoffd did not start:"; show_log "$dir/handoffd.log"
		skip_all "$round" handoff "" "server did not start"
	else
		run_client "$round" handoff "" "$BENCH/peer-handoff" --url "ipc://$dir/handoff.sock"
	fi
	stop_pid "$pid"; forget_pid "$pid"
	rm -rf "$dir/data"
}

run_redis() {
	local round=$1 dir="$TMP/redis.$1" pid
	if port_busy "$REDIS_PORT"; then
		skip_all "$round" redis "" "port $REDIS_PORT busy"; return
	fi
	mkdir -p "$dir"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" \
		--appendonly yes --appendfsync always --save '' --daemonize no \
		>"$dir/redis.log" 2>&1 &
	pid=$!
	SERVER_PIDS+=("$pid")
	if wait_port "$REDIS_PORT" "$pid" 30; then
		run_client "$round" redis "" "$BENCH/peer-redis" --host 127.0.0.1 --port "$REDIS_PORT"
	else
		log "redis-server did not start:"; show_log "$dir/redis.log"
		skip_all "$round" redis "" "server did not start"
	fi
	stop_pid "$pid"; forget_pid "$pid"
	rm -rf "$dir"
}

run_beanstalkd() {
	local round=$1 dir="$TMP/beanstalkd.$1" pid
	if port_busy "$BEANSTALKD_PORT"; then
		skip_all "$round" beanstalkd "" "port $BEANSTALKD_PORT busy"; return
	fi
	mkdir -p "$dir"
	beanstalkd -l 127.0.0.1 -p "$BEANSTALKD_PORT" -b "$dir" -f 0 \
		>"$dir/beanstalkd.log" 2>&1 &
	pid=$!
	SERVER_PIDS+=("$pid")
	if wait_port "$BEANSTALKD_PORT" "$pid" 30; then
		run_client "$round" beanstalkd "" "$BENCH/peer-beanstalkd" --host 127.0.0.1 --port "$BEANSTALKD_PORT"
	else
		log "beanstalkd did not start:"; show_log "$dir/beanstalkd.log"
		skip_all "$round" beanstalkd "" "server did not start"
	fi
	stop_pid "$pid"; forget_pid "$pid"
	rm -rf "$dir"
}

# RabbitMQ runs from its own scripts (not the /usr/sbin wrapper, which
# switches to the rabbitmq user) with HOME, data, logs, plugins list and
# Erlang cookie in the temp folder, and its own epmd port, so it cannot
# meet any other node on the machine.
rabbit_env() {
	local dir=$1
	shift
	env HOME="$dir/home" \
		ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
		RABBITMQ_NODENAME="$RABBITMQ_NODE" \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT="$RABBITMQ_PORT" \
		RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT" \
		RABBITMQ_MNESIA_BASE="$dir/mnesia" \
		RABBITMQ_LOG_BASE="$dir/log" \
		RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
		RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
		RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
		RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
		"$@"
}

run_rabbitmq() {
	local round=$1 dir="$TMP/rabbitmq.$1" pid beam="" ok=0 i v
	local rbin=/usr/lib/rabbitmq/bin
	if [ ! -x "$BENCH/peer-rabbitmq" ]; then
		skip_all "$round" rabbitmq quorum "skipped (client not built)"
		skip_all "$round" rabbitmq classic "skipped (client not built)"
		return
	fi
	if port_busy "$RABBITMQ_PORT" || port_busy "$RABBITMQ_DIST_PORT"; then
		skip_all "$round" rabbitmq quorum "port $RABBITMQ_PORT/$RABBITMQ_DIST_PORT busy"
		skip_all "$round" rabbitmq classic "port $RABBITMQ_PORT/$RABBITMQ_DIST_PORT busy"
		return
	fi
	[ -x "$rbin/rabbitmq-server" ] || rbin=$(dirname "$(readlink -f "$(command -v rabbitmq-server)")")
	mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
	echo '[].' >"$dir/enabled_plugins"   # no management plugin
	printf 'listeners.tcp.default = %s\n' "$RABBITMQ_PORT" >"$dir/rabbitmq.conf"
	echo '[].' >"$dir/advanced.config"
	: >"$dir/rabbitmq-env.conf"
	port_busy "$EPMD_PORT" || EPMD_STARTED=1
	rabbit_env "$dir" "$rbin/rabbitmq-server" >"$dir/server.log" 2>&1 &
	pid=$!
	SERVER_PIDS+=("$pid")
	for ((i = 0; i < 60; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		if rabbit_env "$dir" "$rbin/rabbitmqctl" -n "$RABBITMQ_NODE" status >/dev/null 2>&1 &&
			rabbit_env "$dir" "$rbin/rabbitmqctl" -n "$RABBITMQ_NODE" await_startup >/dev/null 2>&1; then
			ok=1; break
		fi
		sleep 1
	done
	[ -f "$dir/rabbitmq.pid" ] && beam=$(tr -dc 0-9 <"$dir/rabbitmq.pid")
	[ -n "$beam" ] && SERVER_PIDS+=("$beam")
	if [ "$ok" = 1 ]; then
		for v in quorum classic; do
			run_client "$round" rabbitmq "$v" "$BENCH/peer-rabbitmq" \
				--host 127.0.0.1 --port "$RABBITMQ_PORT" --variant "$v"
		done
	else
		log "rabbitmq did not start in 60 s:"; show_log "$dir/server.log"
		skip_all "$round" rabbitmq quorum "server did not start"
		skip_all "$round" rabbitmq classic "server did not start"
	fi
	rabbit_env "$dir" timeout 60 "$rbin/rabbitmqctl" -n "$RABBITMQ_NODE" stop >/dev/null 2>&1 || true
	stop_pid "$pid"; forget_pid "$pid"
	if [ -n "$beam" ]; then stop_pid "$beam"; forget_pid "$beam"; fi
	stop_epmd
	rm -rf "$dir"
}

run_nats() {
	local round=$1 dir="$TMP/nats.$1" pid
	if [ ! -x "$BENCH/peer-nats" ]; then
		skip_all "$round" nats "" "skipped (client not built)"; return
	fi
	if port_busy "$NATS_PORT"; then
		skip_all "$round" nats "" "port $NATS_PORT busy"; return
	fi
	mkdir -p "$dir"
	nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$dir" >"$dir/nats.log" 2>&1 &
	pid=$!
	SERVER_PIDS+=("$pid")
	if wait_port "$NATS_PORT" "$pid" 30; then
		run_client "$round" nats "" "$BENCH/peer-nats" --host 127.0.0.1 --port "$NATS_PORT"
	else
		log "nats-server did not start:"; show_log "$dir/nats.log"
		skip_all "$round" nats "" "server did not start"
	fi
	stop_pid "$pid"; forget_pid "$pid"
	rm -rf "$dir"
}

# ---- main ------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/handoff-peers.XXXXXX")
chmod 755 "$TMP"
RESULTS="$TMP/results.jsonl"
: >"$RESULTS"

install_all
build_all

for ((round = 1; round <= ROUNDS; round++)); do
	wanted handoff && run_handoff "$round"
	wanted redis && run_redis "$round"
	wanted beanstalkd && run_beanstalkd "$round"
	wanted rabbitmq && run_rabbitmq "$round"
	wanted nats && run_nats "$round"
done
cp "$RESULTS" "$BUILD/peers-results.jsonl"

# ---- the table ---------------------------------------------------------------

versions() {
	local v
	wanted redis && { v=$(redis-server --version 2>/dev/null | sed -n 's/.*v=\([^ ]*\).*/\1/p'); echo "redis ${v:-?}"; }
	wanted beanstalkd && { v=$(beanstalkd -v 2>/dev/null | awk '{print $2}'); echo "beanstalkd ${v:-?}"; }
	wanted rabbitmq && { v=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null); echo "rabbitmq ${v:-?}"; }
	wanted nats && { v=$(nats-server --version 2>/dev/null | awk '{print $NF}'); echo "nats-server ${v:-?}"; }
	true
}

python3 - "$RESULTS" "$CMDLINE" "$(nproc)" \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
	"$(date -u '+%Y-%m-%d %H:%M UTC')" "$DURATION" "$ROUNDS" \
	"$(versions | paste -sd, - | sed 's/,/, /g')" <<'EOF'
import json, statistics, sys

path, cmd, ncpu, cpu, date, duration, rounds, vers = sys.argv[1:]
rows = {}
order = []
for line in open(path):
    r = json.loads(line)
    key = (r["peer"], r.get("variant", ""))
    if key not in rows:
        rows[key] = {}
        order.append(key)
    rows[key].setdefault(r["workload"], []).append(r)

LABEL = {
    ("handoff", ""): "handoff (LMDB, durable commit per request)",
    ("redis", ""): "Redis Streams, appendfsync always",
    ("rabbitmq", "quorum"): "RabbitMQ quorum queue, persistent, confirms",
    ("rabbitmq", "classic"): "RabbitMQ classic durable queue, persistent, confirms",
    ("beanstalkd", ""): "beanstalkd -b DIR -f 0 (fsync per write)",
    ("nats", ""): "NATS JetStream file store - not durable: no fsync per write",
}

def good(key, w):
    return [r for r in rows.get(key, {}).get(w, []) if not r.get("error")]

def med(key, w, field):
    v = [r.get(field, 0) for r in good(key, w)]
    return statistics.median(v) if v else None

def why(key, w):
    rs = rows.get(key, {}).get(w, [])
    if any(r.get("skipped") for r in rs):
        return rs[0]["skipped"]
    return "failed" if rs else "not run"

def rate(key, w):
    v = med(key, w, "rate")
    return "{:,.0f}".format(v) if v is not None else None

def lat(key, a, b, show_rate=False):
    x, y = med(key, "lat1k", a), med(key, "lat1k", b)
    if x is None:
        return None
    s = "{:.2f} / {:.2f}".format(x, y)
    r = med(key, "lat1k", "rate")
    if show_rate and r is not None and r < 990:
        s += " (held only {:,.0f}/s)".format(r)
    return s

print("# handoff vs peer brokers")
print()
print("- command: `{}`".format(cmd))
print("- date: {}; machine: {} CPUs, {}".format(date, ncpu, cpu))
print("- {} s per workload, median of {} round(s); 256-byte payloads; "
      "1 producer + 1 consumer on loopback".format(duration, rounds))
if vers:
    print("- versions: {}".format(vers))
print()
cols = ["w256 /s", "w1 /s", "e2e /s", "lat1k confirm p50/p99 ms",
        "lat1k deliver p50/p99 ms"]
print("| peer | " + " | ".join(cols) + " |")
print("| --- |" + " --- |" * len(cols))
for key in order:
    cells = [rate(key, "w256"), rate(key, "w1"), rate(key, "e2e"),
             lat(key, "confirm_p50_ms", "confirm_p99_ms", True),
             lat(key, "deliver_p50_ms", "deliver_p99_ms")]
    if all(c is None for c in cells):
        cells = [why(key, "w256")] + [""] * (len(cols) - 1)
    else:
        ws = ["w256", "w1", "e2e", "lat1k", "lat1k"]
        cells = [c if c is not None else why(key, w) for c, w in zip(cells, ws)]
    print("| {} | {} |".format(LABEL.get(key, "%s %s" % key), " | ".join(cells)))

hk = ("handoff", "")
if hk in rows:
    print()
    print("handoff / peer (throughput ratio; above 1 = handoff faster):")
    print()
    print("| peer | w256 | w1 | e2e |")
    print("| --- | --- | --- | --- |")
    h = {w: med(hk, w, "rate") for w in ("w256", "w1", "e2e")}
    print("| handoff figure | " + " | ".join(
        "{:,.0f}/s".format(h[w]) if h[w] is not None else "n/a"
        for w in ("w256", "w1", "e2e")) + " |")
    for key in order:
        if key == hk:
            continue
        cells = []
        for w in ("w256", "w1", "e2e"):
            p = med(key, w, "rate")
            if p and h[w]:
                cells.append("{:.2f} x".format(h[w] / p))
            else:
                cells.append("n/a")
        print("| {} | {} |".format(LABEL.get(key, "%s %s" % key), " | ".join(cells)))
print()
print("Notes: w256 = up to 256 published and unconfirmed (handoff: one "
      "256-event batch per request, its REQ/REP client has one request in "
      "flight); w1 = one at a time; e2e = acked per second with a consumer; "
      "lat1k = open loop 1,000/s, confirm latency from the scheduled send "
      "time. NATS is not durable in this configuration (no fsync per write).")
EOF
log "raw results: $BUILD/peers-results.jsonl"
