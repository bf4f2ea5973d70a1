#!/usr/bin/env bash
# Receive and relay benchmark, logmta against Postfix in one run, on this machine, loopback only.
#   bench/mta-bench.sh [--quick]
# For each message size and session count, Postfix's smtp-source injects N messages (one
# recipient each) into the MTA, which relays everything to a counting sink (countsink.c from
# the shared bench kit). Printed per run: accepted messages/s (inject time) and end-to-end
# messages/s (until the sink has all N). Then, at 50 sessions, logmta with fdatasync switched
# off (a benchmark-only flag) to show what durability costs, and the ratios.
# logmta runs with its default logging (JSON lines at info level, to a file), as Postfix does.
# Env: N (default 20000; --quick 5000), SIZES ("4096 65536"), CONCS ("1 10 50"), TMO (300).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
kit=${BENCH_KIT:-$root/../shared/bench}
[ -x "$kit/load.sh" ] || [ -f "$kit/load.sh" ] || { echo "bench kit not found at $kit (set BENCH_KIT)" >&2; exit 2; }
N=${N:-20000} SIZES=${SIZES:-"4096 65536"} CONCS=${CONCS:-"1 10 50"} TMO=${TMO:-300}
if [ "${1:-}" = "--quick" ]; then N=5000 SIZES="4096" CONCS="50"; fi
LPORT=${LPORT:-2700} LSINK=${LSINK:-2701} PPORT=${PPORT:-2702} PSINK=${PSINK:-2703}
work=$(mktemp -d /tmp/mta-bench.XXXXXX)
out=$work/results.txt
cleanup() { pkill -f "logmta.js serve --config $work" 2>/dev/null; bash "$kit/postfix-stop.sh" >/dev/null 2>&1; }
trap cleanup EXIT

(cd "$root" && npx tsc -p tsconfig.json) || exit 1

start_logmta() { # $1: extra flags
  rm -rf "$work/data"
  cat > "$work/logmta.toml" <<CF
hostname = "bench.test"
data_dir = "$work/data"
[smtp]
listen = ["127.0.0.1:$LPORT"]
relay_networks = ["127.0.0.0/8"]
max_connections_per_ip = 1000
[[route]]
domain = "*"
host = "127.0.0.1:$LSINK"
CF
  node "$root/bin/logmta.js" serve --config "$work/logmta.toml" $1 > "$work/logmta.log" 2>&1 &
  for _ in $(seq 1 100); do ss -ltnH "sport = :$LPORT" | grep -q . && return 0; sleep 0.1; done
  echo "logmta did not start" >&2; cat "$work/logmta.log" >&2; exit 1
}
stop_logmta() {
  pkill -TERM -f "logmta.js serve --config $work" 2>/dev/null
  for _ in $(seq 1 100); do pgrep -f "logmta.js serve --config $work" >/dev/null || break; sleep 0.1; done
}
# p50/p99 ms from "queued" to "delivered", and deliveries per connection, from logmta's log.
logmta_latency() {
  node -e '
    const fs = require("fs"); const q = new Map(); const d = [];
    let stats;
    for (const line of fs.readFileSync(process.argv[1], "utf8").split("\n")) {
      if (!line.startsWith("{")) continue; const e = JSON.parse(line);
      if (e.msg === "received" || e.msg === "queued") q.set(e.id, e.time);
      else if (e.msg === "delivered" && q.has(e.id)) d.push(e.time - q.get(e.id));
      else if (e.msg === "stopped") stats = e;
    }
    d.sort((a, b) => a - b);
    const p = (x) => d.length ? d[Math.min(d.length - 1, Math.floor(x * d.length))] : NaN;
    const per = stats && stats.connections ? (stats.transactions / stats.connections).toFixed(0) : "?";
    console.log(`latency_p50_ms=${p(0.5)} latency_p99_ms=${p(0.99)} deliveries_per_connection=${per}`);
  ' "$1"
}

run() { # name port sink size conc
  local line
  line=$(bash "$kit/load.sh" 127.0.0.1 "$2" "$4" "$5" "$N" "$3" "$TMO")
  echo "system=$1 $line" | tee -a "$out"
}

echo "== logmta (fdatasync on, default logging)"
for size in $SIZES; do for conc in $CONCS; do
  start_logmta ""
  run logmta "$LPORT" "$LSINK" "$size" "$conc"
  stop_logmta
  echo "system=logmta size=$size conc=$conc $(logmta_latency "$work/logmta.log")" | tee -a "$out"
done; done

echo "== logmta (fdatasync OFF: benchmark-only)"
for size in $SIZES; do
  start_logmta "--unsafe-no-sync"
  run logmta-nosync "$LPORT" "$LSINK" "$size" 50
  stop_logmta
done

echo "== postfix (default durability)"
bash "$kit/postfix-setup.sh" "127.0.0.1:$PPORT" "$PSINK" >/dev/null 2>&1 || { echo "postfix setup failed" >&2; exit 1; }
for size in $SIZES; do for conc in $CONCS; do
  bash "$kit/postfix-queue.sh" reset >/dev/null
  run postfix "$PPORT" "$PSINK" "$size" "$conc"
done; done
bash "$kit/postfix-stop.sh" >/dev/null 2>&1

echo
echo "== summary ($(date -u +%FT%TZ), N=$N)"
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => Object.fromEntries(l.split(" ").map((kv) => kv.split("="))));
  const get = (sys, size, conc, k) => { const r = rows.find((r) => r.system === sys && r.size === size && r.conc === conc && r[k] !== undefined); return r ? Number(r[k]) : NaN; };
  const sizes = [...new Set(rows.map((r) => r.size).filter(Boolean))];
  const concs = [...new Set(rows.filter((r) => r.system === "postfix").map((r) => r.conc))];
  console.log("size   sessions  logmta acc/s  postfix acc/s  ratio  logmta e2e/s  postfix e2e/s  ratio  p50ms  p99ms  per-conn");
  for (const s of sizes) for (const c of concs) {
    const la = get("logmta", s, c, "accept_mps"), pa = get("postfix", s, c, "accept_mps");
    const le = get("logmta", s, c, "e2e_mps"), pe = get("postfix", s, c, "e2e_mps");
    console.log([s.padEnd(6), c.padStart(8), String(la).padStart(13), String(pa).padStart(14), (la / pa).toFixed(1).padStart(6), String(le).padStart(13), String(pe).padStart(14), (le / pe).toFixed(1).padStart(6), String(get("logmta", s, c, "latency_p50_ms")).padStart(6), String(get("logmta", s, c, "latency_p99_ms")).padStart(6), String(get("logmta", s, c, "deliveries_per_connection")).padStart(9)].join(" "));
  }
  for (const s of sizes) {
    const on = get("logmta", s, "50", "accept_mps"), off = get("logmta-nosync", s, "50", "accept_mps");
    console.log(`durability cost at ${s} bytes, 50 sessions: with fdatasync ${on}/s, without ${off}/s = ${(100 * on / off).toFixed(0)}%`);
  }
' "$out"
echo "raw results: $out"
