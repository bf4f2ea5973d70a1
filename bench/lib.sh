# Shared by bench/mta-bench.sh and bench/profile.sh (source it): the configuration logmta runs
# with in the relay benchmarks — fdatasync on, default logging, everything relayed to a sink.
#   bench_config FILE DATA_DIR LISTEN_PORT SINK_PORT
bench_config() {
  cat > "$1" <<CF
hostname = "bench.test"
data_dir = "$2"
[smtp]
listen = ["127.0.0.1:$3"]
relay_networks = ["127.0.0.0/8"]
max_connections_per_ip = 1000
[[route]]
domain = "*"
host = "127.0.0.1:$4"
CF
}
