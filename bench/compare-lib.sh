# compare-lib.sh: what compare.sh and ws-compare.sh share, sourced by both:
# pinning the server and the load to a CPU each, starting and stopping the
# servers by PID, and the table of medians and ratios. The script sets
# SCRIPT (its name, for messages), work (its temporary directory), START
# (NAME -> command, {addr} for the address), SERVER_CPU and LOAD_CPU before
# sourcing it.

# Pin the server and the load to a CPU each where there are two. Go sizes
# GOMAXPROCS from the CPUs it may run on, so each Go server gets one P.
server_pin=() load_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_pin=(taskset -c "$SERVER_CPU")
  load_pin=(taskset -c "$LOAD_CPU")
else
  echo "$SCRIPT: one CPU or no taskset: server and load share the CPUs; the figures say little" >&2
fi

server_pid=""

# start_server NAME [FLAGS]: starts it with FLAGS added, sets server_pid and
# server_addr.
start_server() {
  local cmd="${START[$1]//\{addr\}/127.0.0.1:0} ${2:-}" log="$work/$1.log" argv
  read -ra argv <<<"$cmd"
  # Empty the log here, not in the background job's redirection, which may
  # run after the poll below has read the last run's port from it.
  : >"$log"
  # Started directly (no subshell), so $! is the server's own PID: taskset
  # execs the server in its place, and the load reads that process's CPU
  # and memory.
  "${server_pin[@]}" "${argv[@]}" >"$log" 2>&1 &
  server_pid=$!
  server_addr=""
  for _ in $(seq 200); do
    server_addr=$(grep -m1 -o 'listening.*addr=[^ ]*' "$log" 2>/dev/null | sed 's/.*addr=//') || true
    [ -n "$server_addr" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "$SCRIPT: $1 did not report a listening address:" >&2
  cat "$log" >&2
  exit 1
}

stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}

# print_table ROWS LABELS TALLY: the table of rows (SCENARIO PEER ROUND
# METRIC VALUE, and FAULT lines) with the medians of each server, the ratio
# of each echod* server to each of BASELINES, and the spread of the rounds.
# LABELS holds a "NAME|label" line per scenario; TALLY names the metric that
# counts rather than measures (no ratio, no spread).
print_table() {
  awk -F'\t' -v peers="$PEERS" -v baselines="$BASELINES" -v labels="$2" -v tally="$3" '
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
    w = 10; mw = 14; pw = 10; rw = 15
    for (i = 1; i <= nl; i++) { split(L[i], kv, "|"); label[kv[1]] = kv[2]; if (length(kv[2]) > w) w = length(kv[2]) }
    for (i = 1; i <= np; i++) {
      if (length(P[i]) > pw) pw = length(P[i])
      if (P[i] ~ /^echod/) S[++ns] = P[i]
    }
    for (i = 1; i <= ns; i++) for (j = 1; j <= nb; j++) if (length(S[i] "/" B[j]) > rw) rw = length(S[i] "/" B[j])
  }
  $1 == "FAULT" { faults = faults sprintf("  %s on %s, round %s: %s\n", $2, $3, $4, $5); next }
  {
    key = $1 SUBSEP $4
    if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
    if (length($4) > mw) mw = length($4)
    vals[key, $2] = vals[key, $2] " " $5
    all[key, $2, ++count[key, $2]] = $5
  }
  END {
    printf "%-*s %-*s", w, "scenario", mw, "metric"
    for (i = 1; i <= np; i++) printf " %*s", pw, P[i]
    for (i = 1; i <= ns; i++) for (j = 1; j <= nb; j++) printf " %*s", rw, S[i] "/" B[j]
    printf " %7s\n", "spread"
    for (k = 1; k <= nk; k++) {
      maxdev = -1
      split(order[k], sk, SUBSEP)
      shown = (sk[1] == last) ? "" : label[sk[1]]; last = sk[1]
      printf "%-*s %-*s", w, shown, mw, sk[2]
      for (i = 1; i <= np; i++) {
        m[P[i]] = (order[k], P[i]) in vals ? median(vals[order[k], P[i]]) : ""
        printf " %*s", pw, fmt(m[P[i]])
        for (c = 1; c <= count[order[k], P[i]]; c++) {
          v = all[order[k], P[i], c]
          if (m[P[i]] > 0 && sk[2] != tally) { d = (v - m[P[i]]) / m[P[i]]; if (d < 0) d = -d; if (d > maxdev) maxdev = d }
        }
      }
      for (i = 1; i <= ns; i++) for (j = 1; j <= nb; j++) {
        a = m[S[i]]; b = m[B[j]]
        printf " %*s", rw, (a != "" && b != "" && b > 0 && sk[2] != tally) ? sprintf("%.2f", a / b) : "-"
      }
      printf " %7s\n", maxdev < 0 ? "-" : sprintf("%.0f%%", 100 * maxdev)
    }
    printf "\nspread: how far the furthest round of any server in the row was from that server'"'"'s median (±)\n"
    if (faults != "") printf "\nfaults (a server that fails a run is not comparable there):\n%s", faults
  }' "$1"
}
