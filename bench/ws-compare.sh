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
SCRIPT=ws-compare.sh
# Pinning, starting and stopping servers, the table: shared with the
# other compare script.
# shellcheck source=bench/compare-lib.sh
source bench/compare-lib.sh
cleanup() {
  # Only the server this script started, by its PID.
  stop_server
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
print_table "$rows" "$labels" "conns open"
