#!/usr/bin/env bash
# The standard benchmarks against a multi-process cluster (scripts/cluster.sh), on SQLite and,
# when MariaDB and Redis are reachable, on MariaDB + Redis; writes target/bench/report.md
# (the README's performance table comes from it) and one JSON + Markdown report per run.
#
#   scripts/bench.sh                 everything (about 20 minutes, release build first)
#   IM_BENCH_ONLY=sqlite scripts/bench.sh
#
# What runs, per storage (each on a fresh database):
#   1. login storm: IM_BENCH_LOGINS distinct users (default 5,000) log in at once; three
#      storms, the median reported with the range
#   2. maximum throughput: 1:1 chat between IM_BENCH_USERS users (default 2,000, so that no
#      connection exceeds msg_server's 100 msgs/s limit) paired across the two msg_servers,
#      closed model (each user keeps IM_BENCH_IN_FLIGHT messages unacked, default 16),
#      warm-up then IM_BENCH_DURATION s
#   3. latency: the same chat, open model at half the maximum acked rate
#   2b, 3b. the same two runs with one message in flight per user. Both maxima leave the CPU
#      1-4% idle; the pipelined one is about twice as high because a msg_server then reads
#      many messages per segment and the machine sends 1.0-1.3 TCP segments per message
#      instead of 5.5-6.5 (counted per run, see tcp_segs). The open-model latency run sends one message
#      at a time, so it has the second shape whatever the maximum it is half of.
#   4. group fan-out: 500 users in temporary groups of 50, 200 msgs/s offered
#   5. idle connections: IM_BENCH_IDLE users (default 50,000) logged in and idle; memory per
#      connection from the msg_servers' admin stats, on msg_servers restarted for it (a
#      third msg_server is started so that no process needs more than ~17,000 sockets;
#      imctl splits itself over worker processes for the same reason)
#
# Users: bench00001..benchNNNNN, password 123456, created through db_proxy_server's admin port
# by the first run that needs them (`imctl bench --create-users`, names already taken are
# kept), so the login storm measures logins, not account creation.
#
# Environment:
#   IM_BENCH_DIR        output directory (default target/bench)
#   IM_BENCH_ONLY       sqlite or mysql: run one storage only
#   IM_BENCH_DURATION   measured seconds of the chat runs (default 30), IM_BENCH_WARMUP (5)
#   IM_BENCH_USERS, IM_BENCH_IN_FLIGHT, IM_BENCH_LOGINS, IM_BENCH_IDLE   see above
#   IM_BENCH_NO_BUILD   set: use the release binaries as they are
#   IM_MYSQL_URL / IM_REDIS_URL (or IM_TEST_MYSQL_URL / IM_TEST_REDIS_URL): MariaDB and Redis;
#                       the benchmark uses its own database `teamtalk_bench` (dropped and
#                       created) on that server, and Redis database 0 as the original does
#
# Durability as shipped: SQLite synchronous=FULL; MariaDB as configured on its server (the
# report reads innodb_flush_log_at_trx_commit from it).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${IM_BENCH_DIR:-$repo/target/bench}
duration=${IM_BENCH_DURATION:-30}
warmup=${IM_BENCH_WARMUP:-5}
users=${IM_BENCH_USERS:-2000}
in_flight=${IM_BENCH_IN_FLIGHT:-16}
logins=${IM_BENCH_LOGINS:-5000}
idle=${IM_BENCH_IDLE:-50000}
only=${IM_BENCH_ONLY:-}
imctl=$repo/target/release/imctl
mkdir -p "$out"

# Sockets: every process may open as many files as the hard limit allows (50,000 idle
# connections need ~17,000 per msg_server and per imctl worker).
ulimit -n "$(ulimit -Hn)"

if [ -z "${IM_BENCH_NO_BUILD:-}" ]; then
  echo "bench.sh: building (release)..." >&2
  # The whole workspace, as everywhere: a build of some packages resolves features anew and
  # rebuilds what a workspace build had built.
  (cd "$repo" && cargo build --release --workspace) >&2
fi

# The login storm run with the median rate becomes login.json / login.md; login.range holds
# "lowest-highest" of the runs.
median_login() {
  python3 - "$1" <<'PY'
import json, os, shutil, sys
d = sys.argv[1]
runs = []
for i in (1, 2, 3):
    try:
        runs.append((json.load(open(os.path.join(d, f"login-{i}.json")))["logins"]["per_sec"], i))
    except Exception:
        pass
if runs:
    runs.sort()
    rate, i = runs[len(runs) // 2]
    for ext in ("json", "md"):
        shutil.copy(os.path.join(d, f"login-{i}.{ext}"), os.path.join(d, f"login.{ext}"))
    open(os.path.join(d, "login.range"), "w").write(f"{runs[0][0]:.0f}-{runs[-1][0]:.0f}")
PY
}

json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d'+sys.argv[2]))" "$1" "$2"; }

machine() {
  local cpu mem disk
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
  disk=$(df -h "$out" | awk 'NR==2 {print $1 " (" $2 ", " $5 " used)"}')
  echo "- CPU: $(nproc) cores, $cpu"
  echo "- Memory: $mem; kernel $(uname -r); open files (hard limit) $(ulimit -Hn)"
  echo "- Disk: $disk"
  echo "- Load generator and servers on the same machine (loopback), $(date -u +%Y-%m-%d)"
}

extra_msg_server() {
  # A third msg_server for the idle run, configured like the second one.
  local run=$1 base=$2
  sed -e "s/msg_server-2/msg_server-3/" -e "s/127.0.0.1:$((base + 1))\"/127.0.0.1:$((base + 2))\"/" \
      -e "s/127.0.0.1:$((base + 1001))\"/127.0.0.1:$((base + 1002))\"/" \
      "$run/msg_server-2.toml" > "$run/msg_server-3.toml"
  (cd "$run" && RUST_LOG=warn exec nohup "$repo/target/release/msg_server" \
     --config "$run/msg_server-3.toml" >>"$run/msg_server-3.log" 2>&1 </dev/null) &
  echo $! > "$run/msg_server-3.pid"
  sleep 2
}

# TCP segments sent on this machine (every process, loopback included) over one run,
# written as <run>.segs: divided by the messages delivered it shows what a message costs
# the kernel, which depends on how many messages share a segment.
tcp_segs() { awk '/^Tcp:/ { if (h) { for (i = 1; i <= NF; i++) if (n[i] == "OutSegs") print $i } else { h = 1; for (i = 1; i <= NF; i++) n[i] = $i } }' /proc/net/snmp; }
tcp_segs_begin() { segs0=$(tcp_segs); }
tcp_segs_end() { echo $(($(tcp_segs) - segs0)) > "$1.segs"; }

suite() {
  local label=$1 storage=$2 base=$3
  local run="$out/$label-cluster" dir="$out/$label"
  rm -rf "$run" "$dir"; mkdir -p "$run" "$dir"
  export IM_RUN_DIR=$run IM_STORAGE=$storage IM_PORT_BASE=$base IM_PROFILE=release
  RUST_LOG=warn "$repo/scripts/cluster.sh" up >/dev/null
  extra_msg_server "$run" "$base"
  local cfg=(--config "$run/imctl.toml")
  local all_ms="msg_server=127.0.0.1:$((base + 1000)),127.0.0.1:$((base + 1001)),127.0.0.1:$((base + 1002))"
  local common=(--quiet --label "$label")

  # A storm lasts about a second, and successive ones on one cluster gave 3,960-4,802/s: three
  # of them, the median reported (login.json, login.md) with the range.
  echo "bench.sh [$label] login storm: $logins users, three times" >&2
  local i create
  for i in 1 2 3; do
    create=()
    [ "$i" = 1 ] && create=(--create-users)
    "$imctl" "${cfg[@]}" bench login --users "$logins" "${create[@]}" "${common[@]}" \
      --out-json "$dir/login-$i.json" --out-md "$dir/login-$i.md" >/dev/null || true
  done
  median_login "$dir"

  # Each chat run twice: with IM_BENCH_IN_FLIGHT messages in flight per user (pipelined,
  # the maximum), then with one (every user waits for the ack before the next send, the
  # traffic shape of the open-model latency run); latency at half of each maximum.
  local k max half shapes=("$in_flight")
  [ "$in_flight" = 1 ] || shapes+=(1)
  for k in "${shapes[@]}"; do
    local sfx=""
    [ "$k" = "$in_flight" ] || sfx="-k$k"
    echo "bench.sh [$label] maximum throughput (closed model, $k in flight per user)" >&2
    tcp_segs_begin
    "$imctl" "${cfg[@]}" bench chat --users "$users" --create-users --closed --in-flight "$k" \
      --warmup "$warmup" --duration "$duration" "${common[@]}" \
      --out-json "$dir/max$sfx.json" --out-md "$dir/max$sfx.md" >/dev/null || true
    tcp_segs_end "$dir/max$sfx"
    max=$(json_get "$dir/max$sfx.json" "['messages']['acked_per_sec']")
    half=$(python3 -c "print(max(1, int(float('$max') / 2)))")

    echo "bench.sh [$label] latency at $half msgs/s (half of $max)" >&2
    tcp_segs_begin
    "$imctl" "${cfg[@]}" bench chat --users "$users" --rate "$half" \
      --warmup "$warmup" --duration "$duration" "${common[@]}" \
      --out-json "$dir/latency$sfx.json" --out-md "$dir/latency$sfx.md" >/dev/null || true
    tcp_segs_end "$dir/latency$sfx"
  done

  echo "bench.sh [$label] group fan-out" >&2
  "$imctl" "${cfg[@]}" bench group --users 500 --group-size 50 --rate 200 --create-users \
    --warmup "$warmup" --duration "$duration" "${common[@]}" \
    --out-json "$dir/group.json" --out-md "$dir/group.md" >/dev/null || true

  # Fresh msg_servers for the idle run: memory growth on processes warmed by the chat runs
  # is mostly heap being reused, not what a connection costs (the third one took part in
  # the chat runs too: left warm, it grew by 0 bytes and diluted the average to 1.2 KB).
  for ms in msg_server-1 msg_server-2 msg_server-3; do
    kill "$(cat "$run/$ms.pid")" 2>/dev/null || true
  done
  sleep 2
  RUST_LOG=warn "$repo/scripts/cluster.sh" up >/dev/null
  extra_msg_server "$run" "$base"

  echo "bench.sh [$label] $idle idle connections" >&2
  "$imctl" "${cfg[@]}" --admin "$all_ms" bench idle --users "$idle" --create-users --hold 5 \
    "${common[@]}" --out-json "$dir/idle.json" --out-md "$dir/idle.md" >/dev/null || true

  local durability
  if [ "$storage" = sqlite ]; then
    durability="SQLite synchronous=$(grep -o 'synchronous *= *"[a-z]*"' "$run/db_proxy_server.toml" | cut -d'"' -f2 || true)"
    [ "$durability" = "SQLite synchronous=" ] && durability="SQLite synchronous=full (default)"
  else
    durability="MariaDB innodb_flush_log_at_trx_commit=$(mariadb -h 127.0.0.1 -uroot -N -e 'SELECT @@innodb_flush_log_at_trx_commit' 2>/dev/null || echo '?'), sync_binlog=$(mariadb -h 127.0.0.1 -uroot -N -e 'SELECT @@sync_binlog' 2>/dev/null || echo '?')"
  fi
  echo "$durability" > "$dir/durability.txt"

  kill "$(cat "$run/msg_server-3.pid")" 2>/dev/null || true
  "$repo/scripts/cluster.sh" down >/dev/null 2>&1 || true
  unset IM_RUN_DIR IM_STORAGE IM_PORT_BASE
}

rows() {
  # Table rows of one storage from its JSON reports: `main` (one row) or `shapes` (one row
  # per in-flight setting: its maximum and the open-model run at half of it).
  local mode=$1 label=$2 dir="$out/$2"
  python3 - "$mode" "$dir" "$label" "$in_flight" <<'PY'
import json, os, sys
mode, d, label, k = sys.argv[1:5]
def load(n):
    try:
        r = json.load(open(os.path.join(d, n + ".json")))
    except Exception:
        return None
    try:
        r["segs"] = int(open(os.path.join(d, n + ".segs")).read())
    except Exception:
        pass
    return r
def f(x, get, fmt="{:.0f}"):
    try:
        return fmt.format(get(x))
    except Exception:
        return "n/a"
runs = {n: load(n) for n in ("max", "latency", "max-k1", "latency-k1", "login", "group", "idle")}
mx, lat = runs["max"], runs["latency"]
if mode == "main":
    dur = open(os.path.join(d, "durability.txt")).read().strip()
    try:
        login_range = " ({})".format(open(os.path.join(d, "login.range")).read().strip())
    except Exception:
        login_range = ""
    print("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        label, dur,
        f(mx, lambda r: r["messages"]["acked_per_sec"]),
        f(lat, lambda r: r["settings"]["offered_rate"]),
        f(lat, lambda r: r["latency_ms"]["send_deliver"]["p99"], "{:.1f} ms"),
        f(lat, lambda r: r["latency_ms"]["send_ack"]["p99"], "{:.1f} ms"),
        f(runs["login"], lambda r: r["logins"]["per_sec"]) + login_range,
        f(runs["idle"], lambda r: r["settings"]["rss_per_connection_bytes"], "{:.0f} B"),
        f(runs["group"], lambda r: r["messages"]["delivered_per_sec"]),
    ))
    v = lambda r: r["verification"]
    for n in ("max", "latency", "max-k1", "latency-k1", "group"):
        r = runs[n]
        if r and (v(r)["lost"] or v(r)["duplicates"] or v(r)["reordered"]):
            print(f"\n{label} {n}: lost {v(r)['lost']}, duplicates {v(r)['duplicates']}, reordered {v(r)['reordered']}", file=sys.stderr)
else:
    per_msg = lambda r: r["segs"] / r["messages"]["delivered"]
    for sfx, n in (("", k), ("-k1", "1")):
        mx, lat = runs["max" + sfx], runs["latency" + sfx]
        if mx is None and lat is None:
            continue
        busy = lambda r: r["machine"]["cpu_busy_pct"]
        print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            label, n,
            f(mx, lambda r: r["messages"]["acked_per_sec"]),
            f(mx, per_msg, "{:.1f}"),
            f(mx, busy, "{:.0f}%"),
            f(lat, lambda r: r["settings"]["offered_rate"]),
            f(lat, lambda r: r["latency_ms"]["send_deliver"]["p50"], "{:.1f} ms"),
            f(lat, lambda r: r["latency_ms"]["send_deliver"]["p99"], "{:.1f} ms"),
            f(lat, per_msg, "{:.1f}"),
            f(lat, busy, "{:.0f}%"),
        ))
PY
}

mysql_url=${IM_MYSQL_URL:-${IM_TEST_MYSQL_URL:-}}
redis_url=${IM_REDIS_URL:-${IM_TEST_REDIS_URL:-}}
labels=()
if [ "$only" != mysql ]; then
  suite sqlite sqlite 21000
  labels+=(sqlite)
fi
if [ "$only" != sqlite ] && [ -n "$mysql_url" ] && [ -n "$redis_url" ]; then
  host_part=${mysql_url%/*}
  mariadb -h 127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS teamtalk_bench; CREATE DATABASE teamtalk_bench CHARACTER SET utf8mb4" \
    || { echo "bench.sh: cannot (re)create teamtalk_bench" >&2; exit 1; }
  IM_MYSQL_URL="$host_part/teamtalk_bench" IM_REDIS_URL="${redis_url%/*}/0" suite mysql mysql 23000
  labels+=(mysql)
fi

{
  echo "## Benchmarks ($(date -u +%Y-%m-%d))"
  echo
  machine
  echo
  echo "| Storage | Durability | Max delivered msgs/s (1:1, cross-server) | Offered for latency | p99 send→deliver | p99 send→ack | Logins/s ($logins users; median of 3, range) | RSS per idle connection ($idle) | Group deliveries/s |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for l in "${labels[@]}"; do rows main "$l"; done
  echo
  echo "Pipelined against one message in flight per user: the maximum above keeps $in_flight messages"
  echo "in flight per user, so a msg_server reads many of them in one segment; the open-model"
  echo "latency run sends one at a time. TCP segments per message are counted over the whole"
  echo "machine (/proc/net/snmp OutSegs, pure ACKs included) and divided by the messages delivered."
  echo "CPU busy: the share of both cores' time that was not idle over the measured window"
  echo "(/proc/stat, load generator included; near 100% the latency is the machine's queueing)."
  echo
  echo "| Storage | In flight per user | Max delivered msgs/s | Segments per message | CPU busy | Offered (half) | p50 send→deliver | p99 send→deliver | Segments per message | CPU busy |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for l in "${labels[@]}"; do rows shapes "$l"; done
  echo
  for l in "${labels[@]}"; do
    for n in max latency max-k1 latency-k1 login group idle; do
      [ -f "$out/$l/$n.md" ] && { cat "$out/$l/$n.md"; echo; }
    done
  done
} > "$out/report.md"
echo "bench.sh: report in $out/report.md" >&2
