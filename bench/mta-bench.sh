#!/usr/bin/env bash
# Receive and relay benchmark: logmta, Postfix and the protocol ceiling side by side in one run,
# in alternating rounds, on this machine, loopback only.
#   bench/mta-bench.sh [--quick]
# A round is three runs back to back: logmta, Postfix, then the ceiling (Postfix's smtp-source
# straight into the C counting sink, no MTA between). In each run smtp-source injects N messages
# (one recipient each) over CONC sessions; the MTA relays everything to a fresh counting sink
# (countsink.c from the shared bench kit). Per run: accepted messages/s (inject time), end-to-end
# messages/s (until the sink has all N), and the MTA's CPU seconds per 1,000 messages read from
# /proc (logmta: its process; Postfix: the master, its live children and the children it reaped).
# The summary prints medians over the rounds, every round's figures, and the ratios.
# logmta runs with its default logging (JSON lines at info level, to a file), as Postfix does,
# and with fdatasync on; NOSYNC=1 adds one fdatasync-off logmta run per size to show the cost.
# Before each timed logmta and Postfix run, WARM messages (default 2,000; WARM=0 to skip) go
# through the same path untimed: Postfix is set up once and its processes are reused between
# rounds, while logmta is restarted for every round, and without a warm-up its first thousands
# of messages run before V8 has compiled the hot paths (measured: 0.30 CPU s per 1,000 cold over
# 5,000 messages against 0.14 warm) — the warm-up makes both systems be measured warm.
# Env: ROUNDS (3), N (10000; --quick 5000), SIZES ("4096 65536"; --quick "4096"), CONC (50),
#      WARM (2000), TMO (300 s per run), NOSYNC (0). Needs root (Postfix) and the shared bench kit.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
root=$(cd "$here/.." && pwd)
kit=${BENCH_KIT:-$root/../shared/bench}
[ -f "$kit/load.sh" ] || [ -n "${BENCH_KIT:-}" ] || kit=$root/../../shared/bench  # from a worktree
[ -f "$kit/load.sh" ] || { echo "bench kit not found at $kit (set BENCH_KIT)" >&2; exit 2; }
ROUNDS=${ROUNDS:-3} N=${N:-10000} SIZES=${SIZES:-"4096 65536"} CONC=${CONC:-50} TMO=${TMO:-300}
NOSYNC=${NOSYNC:-0} WARM=${WARM:-2000}
if [ "${1:-}" = "--quick" ]; then N=5000 SIZES="4096"; fi
LPORT=${LPORT:-2700} LSINK=${LSINK:-2701} PPORT=${PPORT:-2702} PSINK=${PSINK:-2703} CPORT=${CPORT:-2704}
work=$(mktemp -d /tmp/mta-bench.XXXXXX)
out=$work/results.txt
cleanup() { pkill -f "logmta.js serve --config $work" 2>/dev/null; bash "$kit/postfix-stop.sh" >/dev/null 2>&1; }
trap cleanup EXIT

(cd "$root" && npx tsc -p tsconfig.json) || exit 1
HZ=$(getconf CLK_TCK)

# CPU ticks (user+system) of one process: fields 14, 15 of /proc/PID/stat (after the comm field).
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Postfix: the master's reaped children (cutime+cstime) plus every live process under it.
postfix_ticks() {
  local master
  master=$(head -n 1 /var/spool/postfix/pid/master.pid 2>/dev/null | tr -d ' ')
  [ -n "$master" ] || { echo 0; return; }
  {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$master/stat" 2>/dev/null
    for c in $(pgrep -P "$master"); do proc_ticks "$c"; done
  } | awk '{ s += $1 } END { print s + 0 }'
}

LOGMTA_PID=""
start_logmta() { # $1: extra flags
  rm -rf "$work/data"
  bench_config "$work/logmta.toml" "$work/data" "$LPORT" "$LSINK"
  node "$root/bin/logmta.js" serve --config "$work/logmta.toml" $1 > "$work/logmta.log" 2>&1 &
  LOGMTA_PID=$!
  for _ in $(seq 1 100); do ss -ltnH "sport = :$LPORT" | grep -q . && return 0; sleep 0.1; done
  echo "logmta did not start" >&2; cat "$work/logmta.log" >&2; exit 1
}
stop_logmta() {
  pkill -TERM -f "logmta.js serve --config $work" 2>/dev/null
  for _ in $(seq 1 100); do pgrep -f "logmta.js serve --config $work" >/dev/null || break; sleep 0.1; done
}

# One run; appends "system=NAME round=R <load.sh line> cpu_s_per_1000=X" to $out.
run() { # name round port sink size ticks-function
  local name=$1 round=$2 port=$3 sink=$4 size=$5 ticks=$6 c0 c1 line cpu
  c0=$($ticks)
  line=$(bash "$kit/load.sh" 127.0.0.1 "$port" "$size" "$CONC" "$N" "$sink" "$TMO")
  c1=$($ticks)
  cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v n="$N" 'BEGIN { printf "%.3f", (b - a) / hz * 1000 / n }')
  echo "system=$name round=$round $line cpu_s_per_1000=$cpu" | tee -a "$out"
}
# Untimed warm-up of WARM messages through the same MTA and sink port.
warm() { # port sink size
  [ "$WARM" -gt 0 ] || return 0
  bash "$kit/load.sh" 127.0.0.1 "$1" "$3" "$CONC" "$WARM" "$2" "$TMO" >/dev/null || echo "warm-up run failed" >&2
}
logmta_ticks() { proc_ticks "$LOGMTA_PID"; }
no_ticks() { echo 0; }

bash "$kit/postfix-setup.sh" "127.0.0.1:$PPORT" "$PSINK" >/dev/null 2>&1 || { echo "postfix setup failed" >&2; exit 1; }
for size in $SIZES; do
  for round in $(seq 1 "$ROUNDS"); do
    echo "== size $size, round $round of $ROUNDS"
    start_logmta ""
    sleep 1
    warm "$LPORT" "$LSINK" "$size"
    run logmta "$round" "$LPORT" "$LSINK" "$size" logmta_ticks
    stop_logmta
    bash "$kit/postfix-queue.sh" reset >/dev/null
    warm "$PPORT" "$PSINK" "$size"
    bash "$kit/postfix-queue.sh" reset >/dev/null
    run postfix "$round" "$PPORT" "$PSINK" "$size" postfix_ticks
    run ceiling "$round" "$CPORT" "$CPORT" "$size" no_ticks
  done
  if [ "$NOSYNC" = 1 ]; then
    start_logmta "--unsafe-no-sync"
    sleep 1
    warm "$LPORT" "$LSINK" "$size"
    run logmta-nosync 1 "$LPORT" "$LSINK" "$size" logmta_ticks
    stop_logmta
  fi
done
bash "$kit/postfix-stop.sh" >/dev/null 2>&1

echo
echo "== summary ($(date -u +%FT%TZ), $(nproc) cores, N=$N per run after $WARM untimed, $CONC sessions, $ROUNDS rounds, load average $(cut -d' ' -f1-3 /proc/loadavg))"
node "$here/mta-bench-summary.mjs" "$out"
echo "raw results: $out"
