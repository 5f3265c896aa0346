#!/usr/bin/env bash
# ws-compare.sh: echod's WebSocket echo beside gorilla/websocket (a
# goroutine per connection) and lesismal/nbio (non-blocking event loops),
# measured by one client, bench/peers/wsload, under identical conditions in
# one run, and one table of medians and ratios.
#
# As in compare.sh, every server runs pinned to one CPU and the load to
# another; rounds are interleaved and the order of servers rotates each
# round, so that drift on a shared machine hits every server alike. wsload
# checks every echo byte for byte. It is a benchmark, not a test: it takes
# a few minutes, and its figures are only as steady as the machine (see the
# spread it prints).
#
# Usage: bench/ws-compare.sh            (from anywhere in the repository)
# Settings, from the environment:
#   ROUNDS=3  DURATION=2s  WARMUP=500ms  IDLE_CONNS=5000  IDLE_SETTLE=2s
#   SERVER_CPU=0  LOAD_CPU=1
#   PEERS="echod-epoll echod-goroutine gorilla nbio"  BASELINES="gorilla nbio"
#   SOURCES=127.0.0.1-127.0.0.8 (local addresses the idle connections come from)
#   RUN_LIMIT=60 (seconds before a stuck run is interrupted; it still reports)
#   RESULTS_DIR= (if set: where to keep every run's JSON and the rows behind the table)
# Needs: go, jq, taskset (util-linux), timeout (coreutils) on Linux.
# Loopback only. gorilla and nbio are built in their own modules
# (bench/peers/gorilla, bench/peers/nbio), fetched by go on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-2s}
WARMUP=${WARMUP:-500ms}
IDLE_CONNS=${IDLE_CONNS:-5000}
IDLE_SETTLE=${IDLE_SETTLE:-2s}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SOURCES=${SOURCES:-127.0.0.1-127.0.0.8}
RUN_LIMIT=${RUN_LIMIT:-60}
RESULTS_DIR=${RESULTS_DIR:-}

for tool in go jq timeout; do
  command -v "$tool" >/dev/null || { echo "ws-compare.sh: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d)
server_pid=""
cleanup() {
  # Only the server this script started, by its PID.
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$RESULTS_DIR" ]; then
    mkdir -p "$RESULTS_DIR" && cp "$work"/*.json "$work"/*.err "$work"/*.log "$work"/rows.tsv "$RESULTS_DIR"/ 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building into $work" >&2
go build -o "$work/echod" ./cmd/echod
go build -o "$work/wsload" ./bench/peers/wsload
(cd bench/peers/gorilla && go build -o "$work/gorilla" .)
(cd bench/peers/nbio && go build -o "$work/nbio" .)

# The servers to compare: NAME and the command that starts it. {addr} is
# replaced by 127.0.0.1:0; the server must print a line with "listening" and
# "addr=HOST:PORT" (the port it got) on stdout or stderr, serve WebSocket
# echo on every path there, and stop on SIGTERM. Names starting with
# "echod" are the subjects of the ratio columns; BASELINES are what they
# are divided by.
declare -A START=(
  [echod-epoll]="$work/echod serve -engine epoll -http-listen {addr}"
  [echod-goroutine]="$work/echod serve -engine goroutine -http-listen {addr}"
  [gorilla]="$work/gorilla -listen {addr}"
  [nbio]="$work/nbio -listen {addr}"
)
PEERS=${PEERS:-"echod-epoll echod-goroutine gorilla nbio"}
BASELINES=${BASELINES:-"gorilla nbio"}

# The scenarios: NAME, a label for the table, and wsload's flags.
SCENARIOS=(
  "idle|memory per idle WebSocket ($IDLE_CONNS, after one 64-byte echo)|-mode idle -c $IDLE_CONNS -size 64 -settle $IDLE_SETTLE -source $SOURCES"
  "pingpong-1|round trips/s, 1 conn, 64 B|-mode pingpong -c 1 -size 64 -d $DURATION -warmup $WARMUP"
  "pingpong-100|round trips/s, 100 conns, 512 B|-mode pingpong -c 100 -size 512 -d $DURATION -warmup $WARMUP"
)

# Pin the server and the load to a CPU each where there are two. Go sizes
# GOMAXPROCS from the CPUs it may run on, so each Go server gets one P.
server_pin=() load_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_pin=(taskset -c "$SERVER_CPU")
  load_pin=(taskset -c "$LOAD_CPU")
else
  echo "ws-compare.sh: one CPU or no taskset: server and load share the CPUs; the figures say little" >&2
fi

# start_server NAME: starts it, sets server_pid and server_addr.
start_server() {
  local cmd="${START[$1]//\{addr\}/127.0.0.1:0}" log="$work/$1.log" argv
  read -ra argv <<<"$cmd"
  : >"$log"
  # Started directly (no subshell), so $! is the server's own PID: taskset
  # execs the server in its place, and wsload reads that process's memory.
  "${server_pin[@]}" "${argv[@]}" >"$log" 2>&1 &
  server_pid=$!
  server_addr=""
  for _ in $(seq 200); do
    server_addr=$(grep -m1 -o 'listening.*addr=[^ ]*' "$log" 2>/dev/null | sed 's/.*addr=//') || true
    [ -n "$server_addr" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "ws-compare.sh: $1 did not report a listening address:" >&2
  cat "$log" >&2
  exit 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# rows: SCENARIO PEER ROUND METRIC VALUE, plus FAULT lines.
rows="$work/rows.tsv"
: >"$rows"
read -ra peers <<<"$PEERS"
for p in "${peers[@]}"; do
  [ -n "${START[$p]:-}" ] || { echo "ws-compare.sh: unknown server $p in PEERS (known: ${!START[*]})" >&2; exit 2; }
done
for round in $(seq "$ROUNDS"); do
  for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r scen label flags <<<"$s"
    n=${#peers[@]}
    for i in $(seq 0 $((n - 1))); do
      peer=${peers[$(((i + round) % n))]}
      echo "round $round/$ROUNDS: $scen on $peer" >&2
      start_server "$peer"
      read -ra fl <<<"$flags"
      out="$work/$scen.$peer.$round.json"
      # SIGINT makes wsload stop and report what it measured.
      timeout -s INT "$RUN_LIMIT" "${load_pin[@]}" "$work/wsload" -pid "$server_pid" "${fl[@]}" "ws://$server_addr/" \
        >"$out" 2>"$out.err" || true
      stop_server
      if ! jq -e . "$out" >/dev/null 2>&1; then
        printf 'FAULT\t%s\t%s\t%s\t%s\n' "$scen" "$peer" "$round" "no result: $(tail -c 300 "$out.err" | tr '\n' ' ')" >>"$rows"
        continue
      fi
      jq -r --arg s "$scen" --arg p "$peer" --arg r "$round" '
        def row(m; v): [$s, $p, $r, m, (v | tostring)] | @tsv;
        def fault(text): ["FAULT", $s, $p, $r, text] | @tsv;
        if .mode == "idle" then
          if (.open // 0) == 0 then fault("no connection opened: \(.first_error // .first_mismatch // "no error")")
          else row("KiB/conn"; .rss_per_conn / 1024), row("conns open"; .open) end
        elif (.round_trips // 0) == 0 then
          fault("nothing echoed in the measured window: \(.first_mismatch // .first_error // "no error")")
        else
          row("round trips/s"; .round_trips_per_sec), row("server µs/rt"; (.server_cpu_per_round_trip_ns // 0) / 1000)
        end,
        if .mismatches > 0 or .errors > 0 then
          fault("\(.mismatches) mismatches, \(.errors) errors: \(.first_mismatch // .first_error)")
        else empty end' "$out" >>"$rows"
    done
  done
done

labels=$(printf '%s\n' "${SCENARIOS[@]}" | cut -d'|' -f1,2)
echo
echo "echod WebSocket compare: medians of $ROUNDS interleaved rounds, $DURATION each after $WARMUP warm-up (idle: held $IDLE_SETTLE);"
echo "server on CPU $SERVER_CPU, load (bench/peers/wsload, every echo checked) on CPU $LOAD_CPU; $(nproc) CPUs, $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "echod $(git describe --always --dirty 2>/dev/null || echo '(no git)'); ratios are the echod column over the baseline's: above 1 is better for rates, below 1 for memory and CPU"
echo
awk -F'\t' -v peers="$PEERS" -v baselines="$BASELINES" -v labels="$labels" '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function fmt(v) {
    if (v == "") return "-"
    v += 0
    if (v >= 100 || v == int(v)) return sprintf("%.0f", v)
    if (v >= 10) return sprintf("%.1f", v)
    return sprintf("%.2f", v)
  }
  BEGIN {
    np = split(peers, P, " "); nb = split(baselines, B, " ")
    nl = split(labels, L, "\n")
    w = 10
    for (i = 1; i <= nl; i++) { split(L[i], kv, "|"); label[kv[1]] = kv[2]; if (length(kv[2]) > w) w = length(kv[2]) }
    for (i = 1; i <= np; i++) if (P[i] ~ /^echod/) S[++ns] = P[i]
  }
  $1 == "FAULT" { faults = faults sprintf("  %s on %s, round %s: %s\n", $2, $3, $4, $5); next }
  {
    key = $1 SUBSEP $4
    if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
    vals[key, $2] = vals[key, $2] " " $5
    all[key, $2, ++count[key, $2]] = $5
  }
  END {
    printf "%-*s %-14s", w, "scenario", "metric"
    for (i = 1; i <= np; i++) printf " %15s", P[i]
    for (i = 1; i <= ns; i++) for (j = 1; j <= nb; j++) printf " %23s", S[i] "/" B[j]
    printf " %7s\n", "spread"
    for (k = 1; k <= nk; k++) {
      maxdev = -1
      split(order[k], sk, SUBSEP)
      shown = (sk[1] == last) ? "" : label[sk[1]]; last = sk[1]
      printf "%-*s %-14s", w, shown, sk[2]
      for (i = 1; i <= np; i++) {
        m[P[i]] = (order[k], P[i]) in vals ? median(vals[order[k], P[i]]) : ""
        printf " %15s", fmt(m[P[i]])
        for (c = 1; c <= count[order[k], P[i]]; c++) {
          v = all[order[k], P[i], c]
          if (m[P[i]] > 0 && sk[2] != "conns open") { d = (v - m[P[i]]) / m[P[i]]; if (d < 0) d = -d; if (d > maxdev) maxdev = d }
        }
      }
      for (i = 1; i <= ns; i++) for (j = 1; j <= nb; j++) {
        a = m[S[i]]; b = m[B[j]]
        printf " %23s", (a != "" && b != "" && b > 0 && sk[2] != "conns open") ? sprintf("%.2f", a / b) : "-"
      }
      printf " %7s\n", maxdev < 0 ? "-" : sprintf("%.0f%%", 100 * maxdev)
    }
    printf "\nspread: how far the furthest round of any server in the row was from that server'"'"'s median (±)\n"
    if (faults != "") printf "\nfaults (a server that fails a run is not comparable there):\n%s", faults
  }' "$rows"
