#!/usr/bin/env bash
# Benchmarks. Each subcommand builds what it needs in build-bench (buildtype=release) and
# prints a table.
#   scripts/bench.sh engine [--seconds S] [--stream-mb N]   masking engine throughput, RSS;
#                                        with --threads 1,2 the scaling rows only (PII policy)
#   scripts/bench.sh engine-ir [DOC_KB] [POLICY...]   instructions and mispredicted branches
#                                        per input byte (callgrind; a loaded machine does
#                                        not change them); DOC_KB 64 by default, every policy
#   scripts/bench.sh tls [--seconds S] [--rounds R] [--mb N] [--runs N] [--system-libssl]
#                                        TLS uprobe cost per SSL_write+SSL_read, then a curl
#                                        download of N MiB (100): no agent / observe (three
#                                        variants) / stop-rewrite (root)
#   scripts/bench.sh all [options]       meshmask beside nginx+Lua (scripts/bench/compare.sh)
#   scripts/bench.sh proxy [options]     the plaintext data path: direct, steered, unflagged;
#                                        ratios and aims (compare.sh --proxy; exit 1 = missed)
#   scripts/bench.sh h2 [options]        HTTP/2 beside HTTP/1.1 through the agent (h2load,
#                                        nginx h2c): ratios, agent CPU per 1000 requests
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-bench

usage() {
	echo "usage: $0 engine [--seconds S] [--stream-mb N] | engine-ir [DOC_KB] [POLICY...] | tls [--seconds S] [--rounds R] [--mb N] [--runs N] [--system-libssl] | all [...] | proxy [...] | h2 [...]" >&2
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
engine-ir)
	# Per input byte, from the difference of two fixed amounts of work (setup cancels out):
	# Ir (instructions), Bm (mispredicted branches, callgrind's simple predictor) and
	# Ir + 15 x Bm as a rough cycle estimate. SHA-256 runs without SHA-NI under valgrind,
	# so rows with a hash rule overstate its share.
	command -v valgrind >/dev/null || { echo "engine-ir needs valgrind" >&2; exit 1; }
	configure
	ninja -C "$dir" -j "${BENCH_JOBS:-2}" tests/bench/bench_engine >/dev/null
	machine
	doc=${1:-64}
	(($#)) && shift
	pols=("$@")
	((${#pols[@]})) || pols=(0 1 2 3 4 5)
	ir() {
		valgrind --tool=callgrind --branch-sim=yes --callgrind-out-file="$dir/cg.out" \
			"$dir/tests/bench/bench_engine" --mb "$1" --policy "$2" --doc "$doc" >/dev/null 2>&1
		callgrind_annotate "$dir/cg.out" | awk '/PROGRAM TOTALS/ { gsub(",", ""); print $1, $5 + $9 }'
		rm -f "$dir/cg.out"
	}
	printf '%-8s %-8s %8s %8s %10s\n' policy doc Ir/B Bm/B 'Ir+15Bm'
	for k in "${pols[@]}"; do
		read -r a am < <(ir 1 "$k")
		read -r b bm < <(ir 3 "$k")
		awk -v k="$k" -v d="$doc KB" -v a="$a" -v b="$b" -v am="$am" -v bm="$bm" 'BEGIN {
			ir = (b - a) / 2e6; m = (bm - am) / 2e6
			printf "%-8s %-8s %8.2f %8.3f %10.2f\n", k, d, ir, m, ir + 15 * m }'
	done
	;;
all)
	scripts/bench/compare.sh "$@"
	;;
proxy)
	scripts/bench/compare.sh --proxy "$@"
	;;
h2)
	scripts/bench/h2.sh "$@"
	;;
tls)
	# TLS uprobe cost to an application (none / idle / capture), then a real download through
	# each mode (scripts/bench/tls_download.sh); BPF needs its own build dir.
	dir=build-bench-bpf
	if [[ -f $dir/build.ninja ]]; then
		meson setup --reconfigure "$dir" --buildtype=release >"$dir.setup.log" 2>&1
	else
		meson setup "$dir" --buildtype=release >"$dir.setup.log" 2>&1
	fi || { cat "$dir.setup.log" >&2; exit 1; }
	ninja -C "$dir" -j "${BENCH_JOBS:-2}" tests/bpf/ssl_bench tests/integration/tls_harness \
		>/dev/null
	bench_args=()
	dl_args=()
	while (($#)); do
		case $1 in
		--mb | --runs) dl_args+=("$1" "$2"); shift 2 ;;
		--system-libssl) dl_args+=("$1"); sys_ssl=1; shift ;;
		*) bench_args+=("$1"); shift ;;
		esac
	done
	machine
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
	# A private copy of libssl, named so that other agents on a shared machine (which probe
	# every libssl*.so* for every process) leave it alone; ssl_bench attaches to it by path.
	libdir=$(mktemp -d)
	trap 'rm -rf "$libdir"' EXIT
	libenv=()
	if [[ -z ${sys_ssl:-} ]]; then
		sys=$(ldd "$dir/tests/bpf/ssl_bench" | awk '$1 ~ /^libssl\.so/ { print $3; exit }')
		cp "$sys" "$libdir/mmbench-ssl.so"
		ln -s mmbench-ssl.so "$libdir/$(basename "$sys")"
		libenv=(env "LD_LIBRARY_PATH=$libdir")
	fi
	"${libenv[@]}" "$dir/tests/bpf/ssl_bench" "${bench_args[@]}"
	echo
	scripts/bench/tls_download.sh "$dir/tests/integration/tls_harness" "${dl_args[@]}"
	;;
*)
	usage
	;;
esac
