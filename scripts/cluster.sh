#!/usr/bin/env bash
# A cluster of separate processes on loopback: one login_server, one route_server, one
# db_proxy_server, two msg_servers, and one each of file_server, push_server (no provider
# enabled), msfs and http_msg_server. QA, benchmarks and the fault tests drive the suite
# through it.
#
#   scripts/cluster.sh up       start what is not running (build first if needed); the last
#                               line printed is the login URL
#   scripts/cluster.sh down     SIGTERM everything, wait for it to exit
#   scripts/cluster.sh status   one line per server: running (pid) or down
#
# Environment:
#   IM_RUN_DIR      run directory: configs, logs, one <server>.pid per process, the SQLite
#                   file, imctl.toml (default: target/im-cluster in the repository)
#   IM_STORAGE      sqlite (default) or mysql
#   IM_MYSQL_URL    with IM_STORAGE=mysql, e.g. mysql://root@127.0.0.1:3306/teamtalk
#   IM_REDIS_URL    with IM_STORAGE=mysql, e.g. redis://127.0.0.1:6379/
#   IM_PORT_BASE    first port (default 21000): login HTTP base+80, login msg_server port
#                   base+100, route base+200, db_proxy base+600, msg_servers base+0/base+1,
#                   file_server base+300 (clients) / base+301 (msg_servers), http_msg_server
#                   base+400, push_server base+500, msfs base+700; admin ports are the main
#                   port + 1000
#   IM_PROFILE      release (default) or debug: which build to run
#   IM_BIN_DIR      take the binaries from here instead of building
#
# `imctl --config "$IM_RUN_DIR/imctl.toml" status` talks to the cluster's admin ports.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${IM_RUN_DIR:-$repo/target/im-cluster}
storage=${IM_STORAGE:-sqlite}
base=${IM_PORT_BASE:-21000}
profile=${IM_PROFILE:-release}
servers=(msfs db_proxy_server route_server file_server push_server http_msg_server login_server
  msg_server-1 msg_server-2)

port_of() {
  case $1 in
    login_http) echo $((base + 80)) ;;
    login_msg) echo $((base + 100)) ;;
    route_server) echo $((base + 200)) ;;
    db_proxy_server) echo $((base + 600)) ;;
    msg_server-1) echo $((base + 0)) ;;
    msg_server-2) echo $((base + 1)) ;;
    login_server) echo $((base + 80)) ;;
    file_server) echo $((base + 300)) ;;
    file_msg) echo $((base + 301)) ;;
    http_msg_server) echo $((base + 400)) ;;
    push_server) echo $((base + 500)) ;;
    msfs) echo $((base + 700)) ;;
  esac
}
admin_of() { echo $(($(port_of "$1") + 1000)); }

binary_of() { echo "${1%-[0-9]}"; }

bin_dir() {
  if [ -n "${IM_BIN_DIR:-}" ]; then echo "$IM_BIN_DIR"; return; fi
  echo "$repo/target/$profile"
}

ensure_built() {
  local dir missing=0
  dir=$(bin_dir)
  for b in db_proxy_server route_server login_server msg_server file_server push_server msfs \
    http_msg_server; do
    [ -x "$dir/$b" ] || missing=1
  done
  if [ "$missing" = 1 ]; then
    if [ -n "${IM_BIN_DIR:-}" ]; then
      echo "cluster.sh: binaries missing in IM_BIN_DIR=$IM_BIN_DIR" >&2; exit 1
    fi
    echo "cluster.sh: building the servers ($profile)..." >&2
    local flag=""; [ "$profile" = release ] && flag="--release"
    (cd "$repo" && cargo build --workspace $flag --bins) >&2
  fi
}

token() {
  local f="$run_dir/admin.token"
  if [ ! -s "$f" ]; then
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$f"
    chmod 600 "$f"
  fi
  cat "$f"
}

write_configs() {
  local t; t=$(token)
  local storage_section
  if [ "$storage" = mysql ]; then
    : "${IM_MYSQL_URL:?IM_STORAGE=mysql needs IM_MYSQL_URL}"
    : "${IM_REDIS_URL:?IM_STORAGE=mysql needs IM_REDIS_URL}"
    storage_section=$(printf '[storage]\nbackend = "mysql"\ncache = "redis"\n[storage.mysql]\nurl = "%s"\n[storage.redis]\nurl = "%s"\n' "$IM_MYSQL_URL" "$IM_REDIS_URL")
  elif [ "$storage" = sqlite ]; then
    storage_section=$(printf '[storage]\nbackend = "sqlite"\ncache = "embedded"\n[storage.sqlite]\npath = "%s/teamtalk.db"\n' "$run_dir")
  else
    echo "cluster.sh: IM_STORAGE=$storage: expected sqlite or mysql" >&2; exit 1
  fi
  local api; api=$(token)-api
  cat > "$run_dir/msfs.toml" <<EOF
name = "msfs"
listen = "127.0.0.1:$(port_of msfs)"
data_dir = "$run_dir/msfs"
[admin]
listen = "127.0.0.1:$(admin_of msfs)"
token = "$t"
EOF
  cat > "$run_dir/file_server.toml" <<EOF
name = "file_server"
client_listen = "127.0.0.1:$(port_of file_server)"
msg_server_listen = "127.0.0.1:$(port_of file_msg)"
advertise = ["127.0.0.1"]
data_dir = "$run_dir/offline_file"
db_proxy = ["127.0.0.1:$(port_of db_proxy_server)"]
[admin]
listen = "127.0.0.1:$(admin_of file_server)"
token = "$t"
EOF
  cat > "$run_dir/push_server.toml" <<EOF
name = "push_server"
listen = "127.0.0.1:$(port_of push_server)"
[db_proxy]
addresses = ["127.0.0.1:$(port_of db_proxy_server)"]
[admin]
listen = "127.0.0.1:$(admin_of push_server)"
token = "$t"
EOF
  cat > "$run_dir/http_msg_server.toml" <<EOF
name = "http_msg_server"
listen = "127.0.0.1:$(port_of http_msg_server)"
api_token = "$api"
db_proxy = ["127.0.0.1:$(port_of db_proxy_server)"]
route_servers = ["127.0.0.1:$(port_of route_server)"]
[admin]
listen = "127.0.0.1:$(admin_of http_msg_server)"
token = "$t"
EOF
  cat > "$run_dir/db_proxy_server.toml" <<EOF
name = "db_proxy_server"
listen = "127.0.0.1:$(port_of db_proxy_server)"
msfs_url = "http://127.0.0.1:$(port_of msfs)/"
$storage_section
[admin]
listen = "127.0.0.1:$(admin_of db_proxy_server)"
token = "$t"
EOF
  cat > "$run_dir/route_server.toml" <<EOF
name = "route_server"
listen = "127.0.0.1:$(port_of route_server)"
[admin]
listen = "127.0.0.1:$(admin_of route_server)"
token = "$t"
EOF
  cat > "$run_dir/login_server.toml" <<EOF
name = "login_server"
http_listen = "127.0.0.1:$(port_of login_http)"
msg_server_listen = "127.0.0.1:$(port_of login_msg)"
legacy_client_listen = ""
msfs = "http://127.0.0.1:$(port_of msfs)/"
discovery = "http://127.0.0.1:$(port_of http_msg_server)/api/discovery"
[admin]
listen = "127.0.0.1:$(admin_of login_server)"
token = "$t"
EOF
  for ms in msg_server-1 msg_server-2; do
    cat > "$run_dir/$ms.toml" <<EOF
name = "$ms"
listen = "127.0.0.1:$(port_of "$ms")"
ip1 = "127.0.0.1"
db_proxy = ["127.0.0.1:$(port_of db_proxy_server)"]
route_servers = ["127.0.0.1:$(port_of route_server)"]
login_servers = ["127.0.0.1:$(port_of login_msg)"]
file_servers = ["127.0.0.1:$(port_of file_msg)"]
push_servers = ["127.0.0.1:$(port_of push_server)"]
[admin]
listen = "127.0.0.1:$(admin_of "$ms")"
token = "$t"
EOF
  done
  cat > "$run_dir/imctl.toml" <<EOF
token = "$t"
login_url = "http://127.0.0.1:$(port_of login_http)/msg_server"

[admin]
login_server = ["127.0.0.1:$(admin_of login_server)"]
route_server = ["127.0.0.1:$(admin_of route_server)"]
msg_server = ["127.0.0.1:$(admin_of msg_server-1)", "127.0.0.1:$(admin_of msg_server-2)"]
db_proxy_server = ["127.0.0.1:$(admin_of db_proxy_server)"]
file_server = ["127.0.0.1:$(admin_of file_server)"]
push_server = ["127.0.0.1:$(admin_of push_server)"]
msfs = ["127.0.0.1:$(admin_of msfs)"]
http_msg_server = ["127.0.0.1:$(admin_of http_msg_server)"]
EOF
  echo "$api" > "$run_dir/http_api.token"
}

running() {
  local pidf="$run_dir/$1.pid"
  [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null
}

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! running "$name"; then
      echo "cluster.sh: $name exited; last lines of $run_dir/$name.log:" >&2
      tail -n 20 "$run_dir/$name.log" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  echo "cluster.sh: $name did not listen on $port" >&2; exit 1
}

start() {
  local name=$1 bin extra=()
  bin="$(bin_dir)/$(binary_of "$name")"
  [ "$name" = db_proxy_server ] && extra=(--seed "$repo/fixtures/seed/demo.toml")
  # exec, so that the recorded pid is the server itself (signals reach it) and no shell
  # lingers holding our stdout open.
  (cd "$run_dir" && RUST_LOG=${RUST_LOG:-info} exec nohup "$bin" --config "$run_dir/$name.toml" \
     "${extra[@]}" >>"$run_dir/$name.log" 2>&1 </dev/null) &
  echo $! > "$run_dir/$name.pid"
  wait_port "$(port_of "$name")" "$name"
  echo "started $name (pid $(cat "$run_dir/$name.pid"))" >&2
}

login_ready() {
  local port; port=$(port_of login_http)
  for _ in $(seq 1 150); do
    if exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
      printf 'GET /msg_server HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&3
      if timeout 2 cat <&3 | grep -q '"code" : 0'; then exec 3>&-; return 0; fi
      exec 3>&-
    fi
    sleep 0.1
  done
  echo "cluster.sh: login_server hands out no msg_server yet (see $run_dir/*.log)" >&2
  return 1
}

cmd=${1:-}
case $cmd in
  up)
    mkdir -p "$run_dir"
    ensure_built
    write_configs
    for s in "${servers[@]}"; do
      if running "$s"; then echo "$s already running (pid $(cat "$run_dir/$s.pid"))" >&2; else start "$s"; fi
    done
    login_ready
    echo "admin config: $run_dir/imctl.toml" >&2
    echo "http://127.0.0.1:$(port_of login_http)/msg_server"
    ;;
  down)
    for s in $(printf '%s\n' "${servers[@]}" | tac); do
      if running "$s"; then
        kill -TERM "$(cat "$run_dir/$s.pid")"
        for _ in $(seq 1 100); do running "$s" || break; sleep 0.1; done
        if running "$s"; then echo "$s did not stop in 10 s; killing" >&2; kill -KILL "$(cat "$run_dir/$s.pid")"; fi
        echo "stopped $s" >&2
      fi
      rm -f "$run_dir/$s.pid"
    done
    ;;
  status)
    down=0
    for s in "${servers[@]}"; do
      if running "$s"; then echo "$s running pid $(cat "$run_dir/$s.pid")"; else echo "$s down"; down=1; fi
    done
    exit $down
    ;;
  *)
    echo "usage: scripts/cluster.sh up|down|status  (see the top of the script for the environment)" >&2
    exit 2
    ;;
esac
