#!/usr/bin/env bash
# Starts MariaDB (127.0.0.1:3306, root without password, database `test`) and Redis
# (127.0.0.1:6379) if they are not answering, and waits until they do. Used by .ci/run and
# by anyone running the MariaDB/Redis tests locally. Idempotent.
set -euo pipefail

wait_for() {
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "ci-services: $what did not come up" >&2
  return 1
}

if ! mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; then
  echo "ci-services: starting MariaDB"
  # mariadbd refuses to run as root unless told which user to run as.
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  wait_for MariaDB mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping
fi
mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -uroot -e "CREATE DATABASE IF NOT EXISTS test"

if [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" != "PONG" ]; then
  echo "ci-services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis sh -c '[ "$(redis-cli -h 127.0.0.1 -p 6379 ping)" = PONG ]'
fi
echo "ci-services: MariaDB and Redis are up"
