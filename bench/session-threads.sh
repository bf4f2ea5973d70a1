#!/usr/bin/env bash
# SMTP sessions on the main thread against sessions in worker threads (bench/session-threads.ts):
# the same SMTP engine, hooks and durable queue, accept only, loaded by Postfix's smtp-source
# (the shared kit's load.sh: CONC sessions, SIZE-byte messages, no pipelining), alternating the
# thread counts over ROUNDS rounds; medians and every round's figures.
#   bench/session-threads.sh [--rounds R] [--threads "0 1 2"] [-n N] [--warmup N] [--size B] [--conc C] [--relay] [--hooks-on-main]
# --hooks-on-main: with threads, the MAIL/RCPT/DATA checks run on the main thread (a round trip
# each from the session's thread), as a daemon that keeps its policy in one place would; a thread
# count written "Km" in --threads (e.g. "0 1 1m") does that for its runs only, so both alternate.
# --relay: the probe also relays every message to a fresh counting sink per run (load.sh then
# waits until the sink has them all: the end-to-end figure); without it, accept only.
# Per run: accepted msg/s (load.sh's accept_mps), CPU ms a message of the whole process, of the
# main thread (the queue's thread; with --threads 0 also the sessions'), and of the busiest other
# thread (a session thread when K > 0), from /proc; and how busy the machine was (all cores).
# Needs the shared bench kit (../shared/bench) and smtp-source (Debian's postfix package).
# Work happens in a fresh /tmp directory per run, removed at the end.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
kit=${BENCH_KIT:-$root/../shared/bench}
[ -f "$kit/load.sh" ] || [ -n "${BENCH_KIT:-}" ] || kit=$root/../../shared/bench  # from a worktree
[ -f "$kit/load.sh" ] || { echo "bench kit not found at $kit (set BENCH_KIT)" >&2; exit 2; }
ROUNDS=3 THREADS="0 1 2" N=20000 WARM=3000 SIZE=4096 CONC=50 RELAY=0 HOOKS=0
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    -n) N=$2; shift ;;
    --warmup) WARM=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --conc) CONC=$2; shift ;;
    --relay) RELAY=1 ;;
    --hooks-on-main) HOOKS=1 ;;
    *) echo "usage: $0 [--rounds R] [--threads \"0 1 2\"] [-n N] [--warmup N] [--size B] [--conc C] [--relay] [--hooks-on-main]" >&2; exit 64 ;;
  esac
  shift
done
PORT=${PORT:-2790} SINK=${SINK:-2791}
sink=- relay_args=()
[ "$RELAY" = 1 ] && { sink=$SINK; relay_args=(--relay "$SINK"); }
[ "$HOOKS" = 1 ] && relay_args+=(--hooks-on-main)
HZ=$(getconf CLK_TCK)
(cd "$root" && npx tsc -p tsconfig.json) || exit 1
pid="" work=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; [ -n "$work" ] && rm -rf "$work"; }
trap cleanup EXIT

# "tid ticks" for every thread of $pid (user + system)
thread_ticks() {
  local t
  for t in /proc/"$pid"/task/*; do
    awk -v t="${t##*/}" '{ sub(/^.*\) /, ""); print t, $12 + $13 }' "$t/stat" 2>/dev/null
  done
}

one_run() { # K -> prints "K msg/s process_ms main_ms busiest_other_ms busy% e2e_msg/s"
  local k=$1 before after line mps busy main extra=()
  [ "${k%m}" != "$k" ] && extra=(--hooks-on-main)
  work=$(mktemp -d /tmp/logmta-session-threads.XXXXXX)
  node "$root/dist/bench/session-threads.js" --threads "${k%m}" "${extra[@]}" --port "$PORT" --dir "$work/q" "${relay_args[@]}" >"$work/out" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do grep -q '^ready' "$work/out" && break; sleep 0.05; done
  grep -q '^ready' "$work/out" || { echo "probe did not start:" >&2; cat "$work/out" >&2; exit 1; }
  if [ "$WARM" -gt 0 ]; then
    bash "$kit/load.sh" 127.0.0.1 "$PORT" "$SIZE" "$CONC" "$WARM" "$sink" 300 >/dev/null || { echo "warm-up failed" >&2; exit 1; }
  fi
  before=$(thread_ticks)
  line=$(bash "$kit/load.sh" 127.0.0.1 "$PORT" "$SIZE" "$CONC" "$N" "$sink" 300) || { echo "load failed: $line" >&2; exit 1; }
  after=$(thread_ticks)
  main=$pid
  kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=""
  grep -q "^accepted $((N + WARM))$" "$work/out" || { echo "probe accepted other than $((N + WARM)):" >&2; cat "$work/out" >&2; exit 1; }
  rm -rf "$work"; work=""
  mps=$(sed -n 's/.*accept_mps=\([0-9]*\).*/\1/p' <<<"$line")
  busy=$(sed -n 's/.*cpu_busy_pct=\([0-9]*\).*/\1/p' <<<"$line")
  e2e=$(sed -n 's/.*e2e_mps=\([0-9-]*\).*/\1/p' <<<"$line")
  awk -v k="$k" -v mps="$mps" -v busy="$busy" -v e2e="$e2e" -v hz="$HZ" -v n="$N" -v main="$main" '
    NR == FNR { b[$1] = $2; next }
    { d = $2 - b[$1]; tot += d; if ($1 == main) m = d; else if (d > o) o = d }
    END { printf "%s %s %.4f %.4f %.4f %s %s\n", k, mps, tot / hz * 1000 / n, m / hz * 1000 / n, o / hz * 1000 / n, busy, e2e }
  ' <(echo "$before") <(echo "$after")
}

echo "session-threads: relay=$RELAY hooks_on_main=$HOOKS rounds=$ROUNDS threads=\"$THREADS\" n=$N warmup=$WARM size=$SIZE conc=$CONC ($(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg))"
results=()
for r in $(seq 1 "$ROUNDS"); do
  for k in $THREADS; do
    res=$(one_run "$k") || exit 1
    echo "round $r: threads=$k accept_mps=$(cut -d' ' -f2 <<<"$res") cpu_ms_per_msg: process $(cut -d' ' -f3 <<<"$res") main $(cut -d' ' -f4 <<<"$res") busiest_other $(cut -d' ' -f5 <<<"$res") machine_busy=$(cut -d' ' -f6 <<<"$res")% e2e_mps=$(cut -d' ' -f7 <<<"$res")"
    results+=("$res")
  done
done
printf '%s\n' "${results[@]}" | awk '
  function med(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
  { k[$1] = 1; mps[$1] = mps[$1] " " $2; pr[$1] = pr[$1] " " $3; mn[$1] = mn[$1] " " $4; ot[$1] = ot[$1] " " $5; bz[$1] = bz[$1] " " $6; ee[$1] = ee[$1] " " $7; if (!($1 in first)) { first[$1] = 1; order[++no] = $1 } }
  END {
    print ""
    print "| session threads | accepted msg/s (rounds) | median | end-to-end msg/s (median) | CPU ms a message: process | main thread | busiest other thread | machine busy |"
    print "| --- | --- | --- | --- | --- | --- | --- | --- |"
    for (i = 1; i <= no; i++) { x = order[i]; r = mps[x]; sub(/^ /, "", r); gsub(/ /, " / ", r)
      printf "| %s | %s | %s | %s | %s | %s | %s | %s%% |\n", (x == "0" ? "0 (sessions on the main thread)" : (x ~ /m$/ ? substr(x, 1, length(x) - 1) " (checks on the main thread)" : x)), r, med(mps[x]), med(ee[x]), med(pr[x]), med(mn[x]), med(ot[x]), med(bz[x]) }
  }'
