# Shared by bench/mta-bench.sh and bench/profile.sh (source it): the configuration logmta runs
# with in the relay benchmarks — fdatasync on, default logging, everything relayed to a sink.
#   bench_config FILE DATA_DIR LISTEN_PORT SINK_PORT
# bench_config_held FILE DATA_DIR LISTEN_PORT ODMR_PORT is the same daemon with the benchmark's
# recipient domain (smtp-source's rcpt@example.test) held for an ODMR account: every message is
# accepted durably as in the relay run and then waits for ATRN, so nothing is delivered — what
# accepting alone costs (bench/profile.sh --held).

# The part both share: host name, data, the SMTP listener open to the loopback load generator.
bench_config_head() {
  cat > "$1" <<CF
hostname = "bench.test"
data_dir = "$2"
[smtp]
listen = ["127.0.0.1:$3"]
relay_networks = ["127.0.0.0/8"]
max_connections_per_ip = 1000
session_thread = ${BENCH_SESSION_THREAD:-true}
CF
}

bench_config() {
  bench_config_head "$1" "$2" "$3"
  cat >> "$1" <<CF
[[route]]
domain = "*"
host = "127.0.0.1:$4"
CF
}

bench_config_held() {
  bench_config_head "$1" "$2" "$3"
  cat >> "$1" <<CF
[odmr]
listen = ["127.0.0.1:$4"]
[[odmr.account]]
user = "bench"
password = "bench-odmr-password"
domains = ["example.test"]
CF
}
