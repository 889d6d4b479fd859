#!/usr/bin/env bash
# HTTP/2 beside HTTP/1.1 through the agent (`scripts/bench.sh h2`): the same nginx origin
# serves the bench JSON documents over HTTP/1.1 and over h2c (prior knowledge); h2load drives
# both (--h1 for HTTP/1.1), directly (an uncovered caller) and through the agent (a caller the
# bench policy covers), in interleaved rounds. Prints req/s, the agent/direct ratio per
# protocol, the h2 ratio against the HTTP/1.1 one (aim: within 10 %), and the agent's CPU
# time per 1000 requests. Needs root (netns, cgroups, BPF); installs nginx and
# nghttp2-client when missing.
#   scripts/bench.sh h2 [--seconds S] [--rounds N] [--payloads 1k,64k] [--conns C] [--streams M]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
bench=$root/scripts/bench
seconds=5 rounds=3 payloads=1k,64k conns=32 streams=1
while (($#)); do
	case $1 in
	--seconds) seconds=$2 ;;
	--rounds) rounds=$2 ;;
	--payloads) payloads=$2 ;;
	--conns) conns=$2 ;;
	--streams) streams=$2 ;;
	*) echo "usage: scripts/bench.sh h2 [--seconds S] [--rounds N] [--payloads 1k,64k] [--conns C] [--streams M]" >&2; exit 2 ;;
	esac
	shift 2
done
[[ $(id -u) -eq 0 ]] || { echo "bench h2: needs root" >&2; exit 1; }
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
if ((${#need[@]})); then
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
dir=build-bench-bpf
if [[ -f $dir/build.ninja ]]; then
	meson setup --reconfigure "$dir" --buildtype=release >"$dir.setup.log" 2>&1
else
	meson setup "$dir" --buildtype=release >"$dir.setup.log" 2>&1
fi || { cat "$dir.setup.log" >&2; exit 1; }
ninja -C "$dir" -j "${BENCH_JOBS:-2}" agent/meshmask-agent >/dev/null
agent_bin=$root/$dir/agent/meshmask-agent

id=$$
tmp=$(mktemp -d /tmp/meshmask-h2bench.XXXXXX)
chmod 755 "$tmp"
ns=mmh2b$id
cgroot=$(awk '$0 ~ / - cgroup2 / { print $5; exit }' /proc/self/mountinfo)
cg_rel=/mmh2b-$id
cg=$cgroot$cg_rel
cg_direct=$cgroot/mmh2b-direct-$id
cg_agent=$cgroot/mmh2b-agent-$id
h1_port=18180 h2_port=18181 grpc_port=18182 proxy_port=18190 admin_port=$((30000 + id % 20000))
instance=h2b$id
pids=()
agent_pid=
cleanup() {
	set +e
	[[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null && sleep 0.5 && kill -9 "$agent_pid" 2>/dev/null
	# TERM first: nginx's master stops its worker (a killed master leaves it running).
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.5
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	find "$cg" "$cg_direct" "$cg_agent" -name cgroup.procs 2>/dev/null | while read -r f; do
		for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null; done
	done
	sleep 0.3
	wait 2>/dev/null
	ip netns del "$ns" 2>/dev/null
	find "$cg" "$cg_direct" "$cg_agent" -depth -type d -exec rmdir {} \; 2>/dev/null
	rm -rf "/sys/fs/bpf/meshmask/$instance" "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$bench/gen_payloads.py" "$tmp" --stream-mb 1 >/dev/null
ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p "$cg/flagged" "$cg_direct" "$cg_agent" "$tmp/policies" "$tmp/state" "$tmp/ngx"
sh -c "echo \$\$ > $cg/flagged/cgroup.procs; exec ip netns exec $ns sleep 100000" &
pids+=($!)
run_in() { # CGROUP-DIR CMD...
	local d=$1
	shift
	sh -c "echo \$\$ > $d/cgroup.procs; exec ip netns exec $ns \"\$@\"" sh "$@"
}
cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/ngx/nginx.pid;
error_log $tmp/ngx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	types { application/json json; }
	default_type application/json;
	# sendfile stalls nginx's HTTP/2 writes behind delayed ACKs (720 req/s at 1 KB instead of
	# 26,000): off for both protocols, so the origin does the same work for each.
	sendfile off;
	tcp_nodelay on;
	keepalive_requests 10000000;
	http2_max_requests 10000000;
	client_body_temp_path $tmp/ngx;
	proxy_temp_path $tmp/ngx;
	fastcgi_temp_path $tmp/ngx;
	uwsgi_temp_path $tmp/ngx;
	scgi_temp_path $tmp/ngx;
	server { listen 127.0.0.1:$h1_port backlog=4096; root $tmp/www; }
	server { listen 127.0.0.1:$h2_port http2 backlog=4096; root $tmp/www; }
}
EOF
ip netns exec "$ns" nginx -c "$tmp/nginx.conf" >"$tmp/ngx/out.log" 2>&1 &
pids+=($!)
sed -e "s#{ \"port\": @ORIGIN_PORT@ }#{ \"port\": $h1_port }, { \"port\": $h2_port }#" \
	-e "s#@FLAGGED_CGROUP@#$cg_rel/flagged#g" "$bench/policy.json.in" >"$tmp/policies/bench-pii.json"
# gRPC unary: the grpc suite's service (python grpcio) with its descriptor set; one Query per call.
grpc_dir=$root/tests/integration/grpc
mkdir -p "$tmp/gen"
protoc -I "$grpc_dir" --python_out="$tmp/gen" "$grpc_dir/customers.proto"
protoc -I "$grpc_dir" --descriptor_set_out="$tmp/customers.pb" --include_imports "$grpc_dir/customers.proto"
sed -e "s#{ \"port\": @ORIGIN_PORT@ }#{ \"port\": $grpc_port }#" -e "s#@FLAGGED_CGROUP@#$cg_rel/flagged#g" \
	-e "s#\"rules\": \[#\"protobuf\": { \"descriptorSets\": [ \"$tmp/customers.pb\" ] },\n    \"rules\": [#" \
	-e 's#"bench-pii"#"bench-grpc"#' "$bench/policy.json.in" >"$tmp/policies/bench-grpc.json"
ip netns exec "$ns" /usr/bin/python3 "$grpc_dir/grpc_server.py" "$tmp/gen" $grpc_port >"$tmp/grpc.log" 2>&1 &
pids+=($!)
printf '\x00\x00\x00\x00\x03\x0a\x01\x31' >"$tmp/query.bin" # a gRPC message: Query{id: "1"}
sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg_agent" "$agent_bin" \
	--policies "$tmp/policies" --state-dir "$tmp/state" --admin 127.0.0.1:$admin_port \
	--audit-log /dev/null --attach-cgroup "$cg" --instance "$instance" --proxy-port $proxy_port \
	--log-level warn >"$tmp/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do
	ip netns exec "$ns" ss -Hltn "sport = :$proxy_port" | grep -q . &&
		ip netns exec "$ns" ss -Hltn "sport = :$h2_port" | grep -q . && break
	sleep 0.1
done

# Correctness first: through the agent, over both protocols, no secret arrives raw.
for p in ${payloads//,/ }; do
	run_in "$cg/flagged" curl -s --http2-prior-knowledge "http://127.0.0.1:$h2_port/$p.json" \
		-o "$tmp/h2-$p.json"
	run_in "$cg/flagged" curl -s "http://127.0.0.1:$h1_port/$p.json" -o "$tmp/h1-$p.json"
	for proto in h1 h2; do
		res=$(python3 "$bench/check_secrets.py" "$tmp/secrets-$p.txt" "$tmp/$proto-$p.json" --expect masked)
		echo "check $proto $p: $res"
	done
done

cpu() { awk '{ print $14 + $15 }' "/proc/$agent_pid/stat"; }
# pct FILE: p50 and p99 of h2load's per-request times (--log-file: microseconds, column 3).
pct() {
	sort -n -k3,3 "$1" | awk '{ v[NR] = $3 } END {
		if (!NR) { print "0 0"; exit }
		i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
		print v[i50], v[i99] }'
}
: >"$tmp/results"
for _ in $(seq 100); do
	ip netns exec "$ns" ss -Hltn "sport = :$grpc_port" | grep -q . && break
	sleep 0.1
done
grpc_load() { # cgroup dir: h2load with the gRPC-framed Query, unary, 8 connections
	run_in "$1" h2load -c 8 -m 1 -D "$seconds" --warm-up-time 1 -d "$tmp/query.bin" \
		-H 'content-type: application/grpc' -H 'te: trailers' \
		"http://127.0.0.1:$grpc_port/mm.it.Customers/Get" 2>&1 || true
}
# Correctness: the answer through the agent holds no raw secret.
run_in "$cg/flagged" curl -s --http2-prior-knowledge -H 'content-type: application/grpc' \
	-H 'te: trailers' --data-binary "@$tmp/query.bin" \
	"http://127.0.0.1:$grpc_port/mm.it.Customers/Get" -o "$tmp/grpc-answer.bin"
if grep -q -e 536-22-8710 -e 4111111111111111 "$tmp/grpc-answer.bin" || ! grep -q XXX-XX-8710 "$tmp/grpc-answer.bin"; then
	echo "check grpc: RAW or not masked"
else
	echo "check grpc: masked, nothing raw"
fi
for r in $(seq "$rounds"); do
	for sys in direct agent; do
		d=$cg_direct
		[[ $sys == agent ]] && d=$cg/flagged
		c0=$(cpu)
		out=$(grpc_load "$d")
		c1=$(cpu)
		rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
		done_n=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
		echo "grpc h2 $sys $r ${rps:-0} ${done_n:-0} $((c1 - c0))" >>"$tmp/results"
	done
done
for p in ${payloads//,/ }; do
	for r in $(seq "$rounds"); do
		for proto in h1 h2; do
			port=$h1_port flag=--h1
			[[ $proto == h2 ]] && port=$h2_port flag=
			for sys in direct agent; do
				d=$cg_direct
				[[ $sys == agent ]] && d=$cg/flagged
				c0=$(cpu)
				out=$(run_in "$d" h2load $flag -c "$conns" -m "$streams" -D "$seconds" \
					--warm-up-time 1 "http://127.0.0.1:$port/$p.json" 2>&1 || true)
				c1=$(cpu)
				rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
				done_n=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
				echo "$p $proto $sys $r ${rps:-0} ${done_n:-0} $((c1 - c0))" >>"$tmp/results"
			done
		done
	done
done

# Added latency at a fixed rate well below saturation (open loop: h2load --rps), 1 KB and the
# gRPC call: p50/p99 from h2load's per-request log, direct and through the agent, interleaved.
: >"$tmp/latency"
for r in $(seq "$rounds"); do
	for proto in h1 h2 grpc; do
		for sys in direct agent; do
			d=$cg_direct
			[[ $sys == agent ]] && d=$cg/flagged
			case $proto in
			h1) args=(--h1 "http://127.0.0.1:$h1_port/1k.json") ;;
			h2) args=("http://127.0.0.1:$h2_port/1k.json") ;;
			grpc) args=(-d "$tmp/query.bin" -H 'content-type: application/grpc' -H 'te: trailers'
				"http://127.0.0.1:$grpc_port/mm.it.Customers/Get") ;;
			esac
			rm -f "$tmp/lat.log" # h2load appends to its log
			run_in "$d" h2load -c 4 -m 1 --rps 50 -D "$seconds" --warm-up-time 1 \
				--log-file "$tmp/lat.log" "${args[@]}" >/dev/null 2>&1 || true
			echo "$proto $sys $r $(pct "$tmp/lat.log")" >>"$tmp/latency"
		done
	done
done

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -r)"
echo "command: scripts/bench.sh h2 --seconds $seconds --rounds $rounds --payloads $payloads --conns $conns --streams $streams"
echo "h2load $(h2load --version 2>/dev/null | head -1 | awk '{print $2}'), nginx $(nginx -v 2>&1 | sed 's#.*/##'); client, origin and agent share the $(nproc) CPUs"
python3 - "$tmp/results" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
tck = float(sys.argv[2])
med = lambda xs: statistics.median(xs) if xs else 0
print("| payload | protocol | direct req/s | agent req/s | agent/direct | agent CPU s per 1000 req |")
print("|---|---|---|---|---|---|")
ratio = {}
for p in dict.fromkeys(r[0] for r in rows):
    for proto in ("h1", "h2"):
        sel = [r for r in rows if r[0] == p and r[1] == proto]
        if not sel:
            continue
        d = med([float(r[4]) for r in sel if r[2] == "direct"])
        a = med([float(r[4]) for r in sel if r[2] == "agent"])
        # per round: agent CPU over requests done through the agent
        cpu = [int(r[6]) / tck / max(int(r[5]), 1) * 1000 for r in sel if r[2] == "agent"]
        ratio[p, proto] = a / d if d else 0

        name = "gRPC unary" if p == "grpc" else "HTTP/1.1" if proto == "h1" else "HTTP/2"
        print(f"| {p} | {name} | {d:,.0f} | {a:,.0f} | "
              f"{ratio[p, proto]:.2f}x | {med(cpu):.4f} |")
print()
for p in dict.fromkeys(r[0] for r in rows if r[0] != "grpc"):
    h1, h2 = ratio[p, "h1"], ratio[p, "h2"]
    rel = h2 / h1 if h1 else 0
    print(f"{p}: HTTP/2 ratio {h2:.2f}x vs HTTP/1.1 {h1:.2f}x = {rel:.2f} of it "
          f"(aim >= 0.90: {'met' if rel >= 0.9 else 'missed'})")
PY
echo
echo "Added latency at 200 requests/s (4 connections, 50 req/s each, open loop), medians of the"
echo "rounds' paired differences:"
python3 - "$tmp/latency" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("| protocol | direct p50 / p99 (µs) | added p50 | added p99 |")
print("|---|---|---|---|")
for proto, name in (("h1", "HTTP/1.1, 1 KB"), ("h2", "HTTP/2, 1 KB"), ("grpc", "gRPC unary")):
    d = [(int(r[3]), int(r[4])) for r in rows if r[0] == proto and r[1] == "direct"]
    a = [(int(r[3]), int(r[4])) for r in rows if r[0] == proto and r[1] == "agent"]
    if not d or not a:
        continue
    add50 = statistics.median(x[0] - y[0] for x, y in zip(a, d))
    add99 = statistics.median(x[1] - y[1] for x, y in zip(a, d))
    print(f"| {name} | {statistics.median(x[0] for x in d):,.0f} / "
          f"{statistics.median(x[1] for x in d):,.0f} | {add50:+,.0f} µs | {add99:+,.0f} µs |")
PY
