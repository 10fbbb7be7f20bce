#!/usr/bin/env bash
# Starts or stops a local Redis Cluster of three primaries on loopback, for
# `make test-cluster` and for trying Trellis on a cluster by hand.
#
#   scripts/redis-cluster.sh start   # prints REDIS_CLUSTER_ADDRS=...
#   scripts/redis-cluster.sh stop
#   scripts/redis-cluster.sh addrs   # the addresses, comma-separated
#
# REDIS_CLUSTER_PORT is the first port (default 7101; the nodes use it and
# the next two, their cluster buses the same ports + 10000).
# REDIS_CLUSTER_DIR holds each node's data, log and pid file (default
# ${TMPDIR:-/tmp}/trellis-redis-cluster). Stop kills the PIDs recorded there.
set -euo pipefail

base=${REDIS_CLUSTER_PORT:-7101}
dir=${REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/trellis-redis-cluster}
ports=("$base" "$((base + 1))" "$((base + 2))")

log() { echo "redis-cluster: $*" >&2; }

addrs() {
  local out=()
  for p in "${ports[@]}"; do out+=("127.0.0.1:$p"); done
  (IFS=,; echo "${out[*]}")
}

stop() {
  for p in "${ports[@]}"; do
    local pidfile="$dir/$p/redis.pid"
    if [ -f "$pidfile" ]; then
      local pid
      pid=$(cat "$pidfile")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      fi
      rm -f "$pidfile"
    fi
  done
  rm -rf "$dir"
  log "stopped"
}

start() {
  command -v redis-server >/dev/null || { log "redis-server is not installed (scripts/services.sh installs it)"; exit 1; }
  for p in "${ports[@]}"; do
    if redis-cli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1; then
      log "port $p is taken; run '$0 stop' or set REDIS_CLUSTER_PORT"
      exit 1
    fi
  done
  rm -rf "$dir"
  for p in "${ports[@]}"; do
    mkdir -p "$dir/$p"
    redis-server --bind 127.0.0.1 --port "$p" --dir "$dir/$p" --daemonize yes \
      --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --save "" --appendonly no
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 100); do redis-cli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  local nodes=()
  for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 \
    || { cat "$dir/create.log" >&2; stop; exit 1; }
  for p in "${ports[@]}"; do
    local ok=""
    for _ in $(seq 200); do
      if redis-cli -h 127.0.0.1 -p "$p" cluster info | grep -q '^cluster_state:ok'; then ok=1; break; fi
      sleep 0.1
    done
    [ -n "$ok" ] || { log "node $p did not reach cluster_state:ok"; stop; exit 1; }
  done
  log "up in $dir"
  echo "REDIS_CLUSTER_ADDRS=$(addrs)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  addrs) addrs ;;
  *) echo "usage: $0 start|stop|addrs" >&2; exit 2 ;;
esac
