#!/usr/bin/env bash
# A three-node Redis Cluster on loopback for trying db_proxy_server's Redis Cluster mode by hand
# (storage.redis.cluster_urls). The tests do not need it: servers/storage/tests/redis_cluster.rs
# starts and stops its own nodes.
#
#   scripts/redis-cluster.sh start [DIR] [FIRST_PORT]   # default /tmp/im-redis-cluster, 7101
#   scripts/redis-cluster.sh stop  [DIR]
#
# Nodes listen on FIRST_PORT..FIRST_PORT+2 (cluster bus: +10000), no persistence. `start`
# prints the cluster_urls line to put in the config.
set -euo pipefail

cmd=${1:-}
dir=${2:-/tmp/im-redis-cluster}
first=${3:-7101}
ports=("$first" "$((first + 1))" "$((first + 2))")

case "$cmd" in
  start)
    mkdir -p "$dir"
    for i in 0 1 2; do
      port=${ports[$i]}
      redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "$dir/nodes-$i.conf" --cluster-node-timeout 5000 \
        --save "" --appendonly no --daemonize yes --dir "$dir" \
        --pidfile "$dir/redis-$i.pid" --logfile "$dir/redis-$i.log"
    done
    for port in "${ports[@]}"; do
      for _ in $(seq 1 100); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.1
      done
    done
    redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
    for port in "${ports[@]}"; do
      for _ in $(seq 1 300); do
        redis-cli -p "$port" cluster info | grep -q cluster_state:ok && break
        sleep 0.1
      done
    done
    echo "cluster_urls = [\"redis://127.0.0.1:${ports[0]}/\", \"redis://127.0.0.1:${ports[1]}/\", \"redis://127.0.0.1:${ports[2]}/\"]"
    ;;
  stop)
    for i in 0 1 2; do
      if [ -f "$dir/redis-$i.pid" ]; then
        kill "$(cat "$dir/redis-$i.pid")" 2>/dev/null || true
        rm -f "$dir/redis-$i.pid"
      fi
    done
    rm -f "$dir"/nodes-*.conf
    ;;
  *)
    echo "usage: $0 start|stop [DIR] [FIRST_PORT]" >&2
    exit 2
    ;;
esac
