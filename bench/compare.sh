#!/usr/bin/env bash
# compare.sh: echod beside baseline echo servers, measured by 'echod bench'
# under identical conditions in one run, and one table of medians and ratios.
#
# Every server runs pinned to one CPU and the load generator to another;
# rounds are interleaved (and the order of servers rotates each round) so
# that drift on a shared machine hits every server alike. It is a benchmark,
# not a test: it takes a few minutes, and its figures are only as steady as
# the machine (see the spread it prints).
#
# Usage: bench/compare.sh            (from anywhere in the repository)
# Settings, from the environment:
#   ROUNDS=3  DURATION=2s  WARMUP=500ms  IDLE_CONNS=10000  IDLE_HOLD=2s
#   SERVER_CPU=0  LOAD_CPU=1
#   PEERS="echod-epoll echod-goroutine iocopy bufloop gnet cepoll udploop"
#   BASELINES="iocopy bufloop gnet cepoll udploop"
#   UDP_PEERS="echod-epoll udploop" (the servers that take part in the udp row)
#   SOURCES=127.0.0.1-127.0.0.8 (local addresses for cycle and idle, past the ephemeral-port limit)
#   RUN_LIMIT=60 (seconds before a stuck run is interrupted)
# Needs: go, jq, cc (for cepoll), taskset (util-linux), timeout (coreutils)
# on Linux. Loopback only. gnet is built in its own module
# (bench/peers/gnet), fetched by go on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-2s}
WARMUP=${WARMUP:-500ms}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_HOLD=${IDLE_HOLD:-2s}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SOURCES=${SOURCES:-127.0.0.1-127.0.0.8}
RUN_LIMIT=${RUN_LIMIT:-60} # seconds before a stuck run is interrupted (it still reports)

for tool in go jq cc; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d)
SCRIPT=compare.sh
# Pinning, starting and stopping servers, the table: shared with the
# other compare script.
# shellcheck source=bench/compare-lib.sh
source bench/compare-lib.sh
cleanup() {
  # Only the server this script started, by its PID.
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building into $work" >&2
go build -o "$work/echod" ./cmd/echod
go build -o "$work/iocopy" ./bench/peers/iocopy
go build -o "$work/bufloop" ./bench/peers/bufloop
go build -o "$work/udploop" ./bench/peers/udploop
(cd bench/peers/gnet && go build -o "$work/gnet" .)
cc -O2 -o "$work/cepoll" bench/peers/cepoll/main.c

# The servers to compare: NAME and the command that starts it. {addr} is
# replaced by 127.0.0.1:0; the server must print a line with "listening" and
# "addr=HOST:PORT" (the port it got) on stdout or stderr, and stop on
# SIGTERM. To compare another server, build it above and add a line here
# (and its name to PEERS, if PEERS is set). Names starting with "echod" are
# the subjects of the ratio columns; BASELINES are what they are divided by.
declare -A START=(
  [echod]="$work/echod serve -listen {addr}"
  [echod-epoll]="$work/echod serve -engine epoll -listen {addr}"
  [echod-goroutine]="$work/echod serve -engine goroutine -listen {addr}"
  [iocopy]="$work/iocopy -listen {addr}"
  [bufloop]="$work/bufloop -listen {addr}"
  [gnet]="$work/gnet -listen {addr}"
  [cepoll]="$work/cepoll -listen {addr}"
  [udploop]="$work/udploop -listen {addr}"
)
PEERS=${PEERS:-"echod-epoll echod-goroutine iocopy bufloop gnet cepoll udploop"}
BASELINES=${BASELINES:-"iocopy bufloop gnet cepoll udploop"}
# The udp row runs only on these (udploop serves nothing else); echod gets
# UDP echo with its rate limits off, which a benchmark from one address needs.
UDP_PEERS=${UDP_PEERS:-"echod-epoll udploop"}
UDP_SERVE="-udp -udp-source-rate 0 -udp-global-rate 0"

# The scenarios: NAME, a label for the table, and the 'echod bench' flags.
SCENARIOS=(
  "pingpong-1|ping-pong 1 conn 64 B|-mode pingpong -c 1 -size 64"
  "pingpong-100|ping-pong 100 conns 512 B|-mode pingpong -c 100 -size 512"
  "pingpong-1000|ping-pong 1000 conns 512 B|-mode pingpong -c 1000 -size 512"
  "bulk-1|bulk 1 conn|-mode bulk -c 1"
  "cycle-50|cycle 50 at once 1 KiB|-mode cycle -c 50 -size 1024 -source $SOURCES"
  "idle-$IDLE_CONNS|idle $IDLE_CONNS conns|-mode idle -c $IDLE_CONNS -timeout 2s -source $SOURCES"
  "udp-4x32|udp 4 sockets x 32, 64 B|-mode udp -c 4 -depth 32 -size 64"
)

# rows: SCENARIO PEER ROUND METRIC VALUE, plus FAULT lines.
rows="$work/rows.tsv"
: >"$rows"
read -ra peers <<<"$PEERS"
for round in $(seq "$ROUNDS"); do
  for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r scen label flags <<<"$s"
    # Rotate the order of the servers each round.
    n=${#peers[@]}
    for i in $(seq 0 $((n - 1))); do
      peer=${peers[$(((i + round) % n))]}
      extra=""
      if [[ $scen == udp-* ]]; then
        [[ " $UDP_PEERS " == *" $peer "* ]] || continue
        [[ $peer == echod* ]] && extra=$UDP_SERVE
      elif [[ $peer == udploop ]]; then
        continue
      fi
      echo "round $round/$ROUNDS: $scen on $peer" >&2
      start_server "$peer" "$extra"
      read -ra fl <<<"$flags"
      if [[ $scen == idle-* ]]; then
        timing=(-d "$IDLE_HOLD")
      else
        timing=(-d "$DURATION" -warmup "$WARMUP")
      fi
      out="$work/$scen.$peer.$round.json"
      # SIGINT makes bench stop and report what it measured.
      timeout -s INT "$RUN_LIMIT" "${load_pin[@]}" "$work/echod" bench -json -pid "$server_pid" "${timing[@]}" "${fl[@]}" "$server_addr" \
        >"$out" 2>"$out.err" || true
      stop_server
      if ! jq -e . "$out" >/dev/null 2>&1; then
        printf 'FAULT\t%s\t%s\t%s\t%s\n' "$scen" "$peer" "$round" "no result: $(head -c 200 "$out.err")" >>"$rows"
        continue
      fi
      jq -r --arg s "$scen" --arg p "$peer" --arg r "$round" '
        def row(m; v): [$s, $p, $r, m, (v | tostring)] | @tsv;
        def fault(text): ["FAULT", $s, $p, $r, text] | @tsv;
        if .ops == 0 then
          fault("nothing echoed in the measured window: \(.first_mismatch.error // .first_error // "no error")")
        else
          if .mode == "idle" then
            row("server B/conn"; .server.rss_per_conn // 0), row("conns served"; .idle.served)
          elif .mode == "bulk" then
            row("MB/s"; .mb_per_sec), row("server ns/byte"; .server.cpu_per_op_ns // 0)
          else
            row(.unit + "s/s"; .ops_per_sec), row("server µs/" + .unit; (.server.cpu_per_op_ns // 0) / 1000),
            row("p99 µs"; (.latency.p99_ns // 0) / 1000)
          end,
          if .mismatches > 0 or .errors > 0 then
            fault("\(.mismatches) mismatches, \(.errors) errors: \(.first_mismatch.error // .first_error)")
          else empty end
        end' "$out" >>"$rows"
    done
  done
done

labels=$(printf '%s\n' "${SCENARIOS[@]}" | cut -d'|' -f1,2)
echo
echo "echod compare: medians of $ROUNDS interleaved rounds, $DURATION each after $WARMUP warm-up (idle: $IDLE_CONNS conns held $IDLE_HOLD);"
echo "server on CPU $SERVER_CPU, load (echod bench) on CPU $LOAD_CPU; $(nproc) CPUs, $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "ratios are the echod column over the baseline's: above 1 is better for rates, below 1 for CPU, latency and memory"
echo
print_table "$rows" "$labels" "conns served"
