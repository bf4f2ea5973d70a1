#!/usr/bin/env bash
# Where logmta's CPU goes under the relay benchmark's load, in figures that survive a loaded
# machine: CPU seconds per 1,000 messages (user and system, from /proc), system calls per message
# (perf trace), and a V8 CPU profile's proportions (node --cpu-prof), for one `logmta serve`.
#   bench/profile.sh [--size BYTES] [--conc N] [-n N] [--warmup N] [--syscalls] [--no-prof] [--no-sync] [--held] [--session-thread|--main-thread] [--keep DIR]
# --no-sync runs the daemon with --unsafe-no-sync (benchmark-only: what fdatasync costs).
# --session-thread runs the SMTP sessions in their own worker thread (smtp.session_thread, the
# default); --main-thread runs them on the main thread (session_thread = false).
# --held holds the benchmark's recipient domain for ODMR (bench_config_held in lib.sh): the same
# durable accept, then nothing is delivered — set beside a relay run, the difference is what
# relaying a message costs the daemon (no sink is started; the e2e figure is then "-").
# Work happens in a fresh /tmp/logmta-profile.* directory; its queue is removed at the end, the
# log and the profile stay. --keep DIR works in DIR instead and keeps everything.
# A warm-up run of WARM messages (default 3,000; not counted) comes first, so that the figures
# are of JIT-compiled code; then N (default 20,000) messages are measured.
# The daemon runs as in bench/mta-bench.sh (fdatasync on, default logging to a file, relaying to
# the shared kit's counting sink); Postfix's smtp-source injects N messages over CONC sessions.
# --syscalls counts the daemon's system calls by kind with `perf trace -s` (slower; the CPU
# figures of that run include perf's overhead, the counts do not depend on it).
# --cpu-prof output: PROFILE_DIR/*.cpuprofile (open it in Chrome DevTools or speedscope.app);
# bench/profile-summary.mjs prints self time by category and the top functions.
# Needs the shared bench kit (../shared/bench) and smtp-source (Debian's postfix package).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
root=$(cd "$here/.." && pwd)
kit=${BENCH_KIT:-$root/../shared/bench}
[ -f "$kit/load.sh" ] || [ -n "${BENCH_KIT:-}" ] || kit=$root/../../shared/bench  # from a worktree
[ -f "$kit/load.sh" ] || { echo "bench kit not found at $kit (set BENCH_KIT)" >&2; exit 2; }
SIZE=4096 CONC=50 N=20000 WARM=3000 SYSCALLS=0 PROF=1 KEEP="" NOSYNC=0 HELD=0
while [ $# -gt 0 ]; do
  case $1 in
    --size) SIZE=$2; shift ;;
    --conc) CONC=$2; shift ;;
    -n) N=$2; shift ;;
    --warmup) WARM=$2; shift ;;
    --syscalls) SYSCALLS=1 ;;
    --no-prof) PROF=0 ;;
    --no-sync) NOSYNC=1 ;;
    --held) HELD=1 ;;
    --session-thread) export BENCH_SESSION_THREAD=true ;;
    --main-thread) export BENCH_SESSION_THREAD=false ;;
    --keep) KEEP=$2; shift ;;
    *) echo "usage: $0 [--size BYTES] [--conc N] [-n N] [--warmup N] [--syscalls] [--no-prof] [--no-sync] [--held] [--session-thread|--main-thread] [--keep DIR]" >&2; exit 64 ;;
  esac
  shift
done
PORT=${PORT:-2710} SINK=${SINK:-2711} ODMR=${ODMR:-2712}
work=${KEEP:-$(mktemp -d /tmp/logmta-profile.XXXXXX)}
mkdir -p "$work"
pid="" tracer=""
cleanup() {
  [ -n "$tracer" ] && kill -INT "$tracer" 2>/dev/null
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
}
trap cleanup EXIT
(cd "$root" && npx tsc -p tsconfig.json) || exit 1
HZ=$(getconf CLK_TCK)
rm -rf "$work/data" "$work/prof"
if [ "$HELD" = 1 ]; then
  bench_config_held "$work/logmta.toml" "$work/data" "$PORT" "$ODMR"
  SINK=-
else
  bench_config "$work/logmta.toml" "$work/data" "$PORT" "$SINK"
fi
flags=(${NODE_FLAGS:-})
[ "$PROF" = 1 ] && flags=(--cpu-prof --cpu-prof-dir="$work/prof")
node "${flags[@]}" "$root/bin/logmta.js" serve --config "$work/logmta.toml" $([ "$NOSYNC" = 1 ] && echo --unsafe-no-sync) > "$work/logmta.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do ss -ltnH "sport = :$PORT" | grep -q . && break; sleep 0.1; done
ss -ltnH "sport = :$PORT" | grep -q . || { echo "logmta did not start" >&2; cat "$work/logmta.log" >&2; exit 1; }
# user, system ticks of the daemon (all its threads: libuv's pool does the fdatasyncs), then of
# its main thread alone (the event loop: what one loop must do per message, whatever the cores)
ticks() { awk '{ sub(/^.*\) /, ""); printf "%s %s ", $12, $13 }' "/proc/$pid/stat" "/proc/$pid/task/$pid/stat"; }
if [ "$WARM" -gt 0 ]; then
  bash "$kit/load.sh" 127.0.0.1 "$PORT" "$SIZE" "$CONC" "$WARM" "$SINK" 300 >/dev/null || { echo "warm-up run failed" >&2; exit 1; }
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$SYSCALLS" = 1 ]; then
  perf trace -s -p "$pid" -o "$work/syscalls.txt" &
  tracer=$!
  sleep 1
fi
read -r u0 s0 mu0 ms0 < <(ticks)
line=$(bash "$kit/load.sh" 127.0.0.1 "$PORT" "$SIZE" "$CONC" "$N" "$SINK" 300)
read -r u1 s1 mu1 ms1 < <(ticks)
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$line"
if [ -n "$tracer" ]; then kill -INT "$tracer"; wait "$tracer" 2>/dev/null; tracer=""; fi
awk -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v hz="$HZ" -v n="$N" 'BEGIN {
  printf "cpu_s_per_1000: user %.3f  system %.3f  total %.3f  (%d messages)\n", u/hz*1000/n, s/hz*1000/n, (u+s)/hz*1000/n, n }'
awk -v u="$((mu1 - mu0))" -v s="$((ms1 - ms0))" -v t="$((u1 - u0 + s1 - s0))" -v hz="$HZ" -v n="$N" 'BEGIN {
  m = (u + s) / hz * 1000 / n
  printf "main_thread_cpu_s_per_1000: user %.3f  system %.3f  total %.3f  (%.0f%% of the process; one event loop saturates at ~%.0f msg/s)\n", u/hz*1000/n, s/hz*1000/n, m, (t > 0 ? 100 * (u + s) / t : 0), (m > 0 ? 1000 / m : 0) }'
kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=""
awk -v n="$((N + WARM))" '/"received"/ { r++ } { s += length($0) + 1; l++ }
  END { printf "log: %d lines, %d \"received\", %.1f lines and %.0f bytes per message\n", l, r, l / n, s / n }' "$work/logmta.log"
if [ "$SYSCALLS" = 1 ]; then
  node "$here/profile-syscalls.mjs" "$work/syscalls.txt" "$N"
fi
if [ "$PROF" = 1 ]; then
  prof=$(ls "$work"/prof/*.cpuprofile | head -n 1)
  node "$here/profile-summary.mjs" "$prof"
  echo "profile: $prof"
fi
# The queue the run filled (tens of MiB per run) goes; the log, the profile and the trace stay.
[ -n "$KEEP" ] || { rm -rf "$work/data"; echo "work directory: $work (log, profile; the queue removed)"; }
