#!/usr/bin/env bash
# Benchmarks. Each subcommand builds what it needs in build-bench (buildtype=release) and
# prints a table.
#   scripts/bench.sh engine [--seconds S] [--stream-mb N]   masking engine throughput, RSS
#   scripts/bench.sh tls [--seconds S]   TLS uprobe cost per SSL_write+SSL_read (root)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-bench

usage() {
	echo "usage: $0 engine [--seconds S] [--stream-mb N]" >&2
	exit 2
}

configure() {
	if [[ -f $dir/build.ninja ]]; then
		meson setup --reconfigure "$dir" --buildtype=release -Dbpf=disabled >"$dir.setup.log" 2>&1
	else
		meson setup "$dir" --buildtype=release -Dbpf=disabled >"$dir.setup.log" 2>&1
	fi || { cat "$dir.setup.log" >&2; exit 1; }
}

machine() {
	echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -r)"
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
case $cmd in
engine)
	configure
	ninja -C "$dir" -j "${BENCH_JOBS:-2}" tests/bench/bench_engine >/dev/null
	machine
	"$dir/tests/bench/bench_engine" "$@"
	;;
all)
	scripts/bench/compare.sh "$@"
	;;
tls)
	# TLS uprobe cost to an application (none / idle / capture); BPF needs its own build dir.
	dir=build-bench-bpf
	if [[ -f $dir/build.ninja ]]; then
		meson setup --reconfigure "$dir" --buildtype=release >"$dir.setup.log" 2>&1
	else
		meson setup "$dir" --buildtype=release >"$dir.setup.log" 2>&1
	fi || { cat "$dir.setup.log" >&2; exit 1; }
	ninja -C "$dir" -j "${BENCH_JOBS:-2}" tests/bpf/ssl_bench >/dev/null
	machine
	"$dir/tests/bpf/ssl_bench" "$@"
	;;
*)
	usage
	;;
esac
