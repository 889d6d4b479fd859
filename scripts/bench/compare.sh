#!/usr/bin/env bash
# meshmask side by side with what users would otherwise deploy, in one run on one machine
# (`scripts/bench.sh all`). Systems, all reached from the same network namespace on loopback:
#   direct     the origin (nginx, static JSON files), no masking; the caller's cgroup is
#              outside the one the agent attaches its BPF programs to
#   nginx+lua  an nginx reverse proxy masking in body_filter_by_lua (masker.lua), as API
#              gateways such as Kong do; caller as for direct
#   meshmask   the caller in a covered cgroup (steered to the agent, masked)
#   unflagged  the caller in a cgroup under the agent's attach point that no policy covers
#              (the BPF hooks run, the connection is not steered)
# Workloads: 1 KB / 64 KB / 1 MB JSON documents (round trips with wrk -c1 for p50/p99, wrk
# -c32 for req/s, CPU of the masking process per 1000 requests and its peak RSS), a 100 MB
# document streamed with curl, and the engine alone (`meshmask mask`) on the same payloads.
# Every system's responses are checked for the secrets they must have masked.
#
#   compare.sh [--duration S] [--rounds N] [--stream-mb N] [--payloads 1k,64k,1m]
#              [--systems direct,nginx+lua,meshmask,unflagged] [--out DIR] [--write-docs]
#   compare.sh --proxy [same options] [--bulk-mb N]   (`scripts/bench.sh proxy`)
#
# --proxy measures the plaintext data path itself (issue 3): direct, meshmask and unflagged on
# 1 KB and 64 KB, plus a bulk transfer (--bulk-mb, 1000 MB by default: long enough for direct
# to reach its steady rate, which 100 MB on loopback does not) through the agent under a
# second policy that covers only requests (so the response crosses the proxy
# and its HTTP framing but not the masking engine); proxy_report.py prints the ratios and checks
# the aims (added p99 <= 100 us at 1 KB, unflagged >= 99 % of direct req/s, bulk >= 50 % of
# direct). Results go to DIR (default build-compare/proxy); --write-docs replaces the
# "## Proxy (bench.sh proxy)" section of docs/benchmarks.md.
#
# Needs root (netns, cgroups, BPF). Installs nginx, libnginx-mod-http-lua, wrk and
# gnuplot-nox with apt-get when missing. Writes DIR/report.md and DIR/latency.png (DIR defaults
# to build-compare/compare); --write-docs also copies the plot to docs/bench/latency.png and
# replaces the "## Comparison (bench.sh all)" section of docs/benchmarks.md.
# Round trips run N times (default 3), interleaved over the systems; the report keeps, per
# system, the round with the median p99, so one stall of the shared machine does not decide a
# row. A masking process that dies during a workload is noted in the report and restarted. The
# agent's log is kept in DIR/agent.log; BENCH_AGENT_WRAPPER (e.g. "gdb -batch -ex run -ex bt
# --args") runs the agent under a debugger. BENCH_BUILD_DIR overrides the build directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
bench=$root/scripts/bench
build=${BENCH_BUILD_DIR:-$root/build-compare}
build=$(realpath -m "$build")
duration=10
rounds=3
stream_mb=100
bulk_mb=1000
out=$build/compare
write_docs=0
payloads="1k 64k 1m"
only="direct nginx+lua meshmask unflagged"
# The agent-workers axis: "meshmask" runs once per count, as meshmask-w1, meshmask-w2, ...
workers_axis=${BENCH_WORKERS:-1 2}
proxy=0
cmdline="scripts/bench.sh all${*:+ $*}"
if [[ ${1:-} == --proxy ]]; then
	shift
	proxy=1
	payloads="1k 64k"
	only="direct meshmask unflagged"
	out=$build/proxy
	cmdline="scripts/bench.sh proxy${*:+ $*}"
fi

usage() {
	echo "usage: scripts/bench.sh all|proxy [--duration S] [--rounds N] [--stream-mb N] [--payloads 1k,64k,1m]" >&2
	echo "         [--bulk-mb N] (proxy only)" >&2
	echo "         [--systems direct,nginx+lua,meshmask,unflagged] [--workers 1,2] [--out DIR] [--write-docs]" >&2
	exit 2
}
while [[ $# -gt 0 ]]; do
	case $1 in
	--duration) duration=${2:?}; shift 2 ;;
	--rounds) rounds=${2:?}; shift 2 ;;
	--stream-mb) stream_mb=${2:?}; shift 2 ;;
	--bulk-mb) bulk_mb=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	--payloads) payloads=${2//,/ }; shift 2 ;;
	--systems) only=${2//,/ }; shift 2 ;;
	--workers) workers_axis=${2//,/ }; shift 2 ;;
	--write-docs) write_docs=1; shift ;;
	*) usage ;;
	esac
done
[[ $duration =~ ^[0-9]+$ && $duration -ge 1 && $duration -le 600 ]] || usage
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 && $rounds -le 20 ]] || usage
[[ $stream_mb =~ ^[0-9]+$ && $stream_mb -ge 1 && $stream_mb -le 10000 ]] || usage
[[ $bulk_mb =~ ^[0-9]+$ && $bulk_mb -ge 1 && $bulk_mb -le 10000 ]] || usage
for p in $payloads; do [[ $p =~ ^(1k|64k|1m)$ ]] || usage; done
for p in $only; do [[ $p =~ ^(direct|nginx\+lua|meshmask|unflagged)$ ]] || usage; done
for w in $workers_axis; do [[ $w =~ ^[0-9]+$ && $w -ge 1 && $w -le 16 ]] || usage; done
[[ $(id -u) -eq 0 ]] || { echo "compare: run as root (netns, cgroups, BPF)" >&2; exit 1; }

log() { echo "== $*" >&2; }

# ---- tools --------------------------------------------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx)
[[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]] || need+=(libnginx-mod-http-lua)
command -v wrk >/dev/null || need+=(wrk)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
for t in curl ip ss python3 grep; do command -v $t >/dev/null || { echo "compare: needs $t" >&2; exit 1; }; done
if [[ ${#need[@]} -gt 0 ]]; then
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y --no-install-recommends \
		"${need[@]}" >&2
fi

# ---- build (release) ------------------------------------------------------------------------
if [[ ! -f $build/build.ninja ]]; then
	meson setup "$build" --buildtype=release >"$build.setup.log" 2>&1 || { cat "$build.setup.log" >&2; exit 1; }
fi
ninja -C "$build" -j "${BENCH_JOBS:-2}" agent/cli/meshmask >"$build.log" 2>&1 || { tail -n 30 "$build.log" >&2; exit 1; }
# The agent exists only when meson found the BPF toolchain (-Dbpf=auto).
bpf_ok=0
if grep -q '^build agent/meshmask-agent:' "$build/build.ninja"; then
	bpf_ok=1
	ninja -C "$build" -j "${BENCH_JOBS:-2}" agent/meshmask-agent >>"$build.log" 2>&1 || { tail -n 30 "$build.log" >&2; exit 1; }
fi
meshmask=$build/agent/cli/meshmask
agent_bin=$build/agent/meshmask-agent

# ---- topology -------------------------------------------------------------------------------
id=$$
tmp=$(mktemp -d /tmp/meshmask-compare.XXXXXX)
chmod 755 "$tmp" # nginx workers run as www-data
ns=mmcmp$id
cgroot=$(awk '$0 ~ / - cgroup2 / { print $5; exit }' /proc/self/mountinfo)
[[ -n $cgroot ]] || { echo "compare: no cgroup v2 mount" >&2; exit 1; }
cg_rel=/mmcmp-$id
cg=$cgroot$cg_rel
cg_direct=$cgroot/mmcmp-direct-$id
# The agent's own cgroup, as its pod would be: its cgroup/getsockopt program attaches there.
cg_agent=$cgroot/mmcmp-agent-$id
origin_port=18080
lua_port=18081
bulk_port=18082
proxy_port=18090
admin_port=$((30000 + id % 20000))
instance=cmp$id
pids=()
agent_pid=

cleanup() {
	set +e
	[[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null && sleep 0.5 && kill -9 "$agent_pid" 2>/dev/null
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.3
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	find "$cg" "$cg_direct" "$cg_agent" -name cgroup.procs 2>/dev/null | while read -r f; do
		for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null; done
	done
	sleep 0.2
	wait 2>/dev/null
	# A killed process leaves its cgroup a little after it is reaped.
	for _ in $(seq 30); do
		grep -qs 'populated 1' "$cg/cgroup.events" "$cg_agent/cgroup.events" || break
		sleep 0.1
	done
	ip netns del "$ns" 2>/dev/null
	find "$cg" "$cg_direct" "$cg_agent" -depth -type d -exec rmdir {} \; 2>/dev/null
	[[ -f $tmp/agent.log ]] && cp "$tmp/agent.log" "$out/agent.log"
	rm -rf "/sys/fs/bpf/meshmask/$instance" "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$out" "$tmp/origin-tmp" "$tmp/lua-tmp" "$tmp/out" "$tmp/policies" "$tmp/state"
rm -f "$out"/*.jsonl "$out"/agent.log
log "payloads (1 KB, 64 KB, 1 MB, ${stream_mb} MB)"
python3 "$bench/gen_payloads.py" "$tmp" --stream-mb "$stream_mb"
# Bulk: bytes no rule looks at (the bulk policy covers requests only), so any content will do.
[[ $proxy -eq 1 ]] && head -c "${bulk_mb}M" /dev/zero >"$tmp/www/bulk.bin"

ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p "$cg/flagged" "$cg/plain" "$cg_direct" "$cg_agent"
for pod in flagged plain; do
	# The pod's long-lived process: the agent finds the pod's netns through it.
	sh -c "echo \$\$ > $cg/$pod/cgroup.procs; exec ip netns exec $ns sleep 100000" &
	pids+=($!)
done

# run_in POD CMD...: run CMD in the bench netns, inside cgroup POD (joined before `ip netns exec`
# remounts /sys).
run_in() {
	local dir=$cg/$1
	[[ $1 == direct ]] && dir=$cg_direct
	shift
	sh -c "echo \$\$ > $dir/cgroup.procs; exec ip netns exec $ns \"\$@\"" sh "$@"
}

conf() { # template -> file
	sed -e "s#@DIR@#$tmp#g" -e "s#@BENCH@#$bench#g" -e "s#@ORIGIN_PORT@#$origin_port#g" \
		-e "s#@LUA_PORT@#$lua_port#g" -e "s#@BULK_PORT@#$bulk_port#g" \
		-e "s#@FLAGGED_CGROUP@#$cg_rel/flagged#g" "$1" >"$2"
}

wait_port() { # port
	for _ in $(seq 100); do
		ip netns exec "$ns" ss -Hltn "sport = :$1" | grep -q . && return 0
		sleep 0.1
	done
	echo "compare: nothing listens on port $1 in $ns" >&2
	return 1
}

conf "$bench/nginx-origin.conf.in" "$tmp/origin.conf"
conf "$bench/nginx-lua.conf.in" "$tmp/lua.conf"
conf "$bench/policy.json.in" "$tmp/policies/bench-pii.json"
[[ $proxy -eq 1 ]] && conf "$bench/policy-bulk.json.in" "$tmp/policies/bench-bulk.json"
ip netns exec "$ns" nginx -p "$tmp" -c "$tmp/origin.conf" &
pids+=($!)
ip netns exec "$ns" nginx -p "$tmp" -c "$tmp/lua.conf" &
lua_master=$!
pids+=("$lua_master")
wait_port $origin_port
wait_port $lua_port

worker_of() { # nginx master pid -> its worker pid
	local w
	for _ in $(seq 50); do
		w=$(ps -o pid= --ppid "$1" | head -n1 | tr -d ' ')
		[[ -n $w ]] && { echo "$w"; return 0; }
		sleep 0.1
	done
	return 1
}

cpu_ticks() { # pid -> utime + stime in clock ticks (empty if gone)
	awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || true
}
hwm_reset() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
hwm_kb() { # pid -> VmHWM in kB, or null if gone
	local v
	v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true)
	echo "${v:-null}"
}
hz=$(getconf CLK_TCK)

emit() { echo "$1" >>"$out/$2.jsonl"; }

# Systems as "name pod port masking-pid" (pid "-": no masking process).
systems=()

check_all() { # SYSTEM POD PORT
	local sys=$1 pod=$2 port=$3 n res records expect=masked
	[[ $sys == direct || $sys == unflagged ]] && expect=present
	use_system "$sys"
	log "$sys: correctness"
	for n in 1k 64k 1m; do
		run_in "$pod" curl -s --max-time 60 -o "$tmp/out/$sys-$n.json" "http://127.0.0.1:$port/$n.json" || true
		records=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["users"]))' "$tmp/www/$n.json")
		res=$(python3 "$bench/check_secrets.py" "$tmp/secrets-$n.txt" "$tmp/out/$sys-$n.json" \
			--expect $expect --json --records "$records")
		emit "{\"system\":\"$sys\",\"payload\":\"$n\",\"check\":$res}" check
	done
}

roundtrips() { # SYSTEM POD PORT PAYLOAD ROUND
	local line
	use_system "$1"
	log "$1: $4 round trips (wrk -c1, ${duration}s, round $5/$rounds)"
	line=$(run_in "$2" timeout $((duration + 60)) wrk -c1 -t1 -d"${duration}s" --timeout 10s \
		--latency -s "$bench/wrk_report.lua" "http://127.0.0.1:$3/$4.json" | sed -n 's/^WRKJSON //p')
	emit "{\"system\":\"$1\",\"payload\":\"$4\",\"round\":$5,\"wrk\":${line:-null}}" latency
}

throughput() { # SYSTEM POD PORT MASKPID PAYLOAD [ROUND]
	local line c0=0 c1 cpu=null hwm=null
	use_system "$1"
	set -- "$1" "$2" "$3" "$(resolve "$4")" "$5" "${6:-1}"
	log "$1: $5 throughput (wrk -c32 -t2, ${duration}s)"
	if [[ $4 != - ]]; then
		hwm_reset "$4"
		c0=$(cpu_ticks "$4")
	fi
	line=$(run_in "$2" timeout $((duration + 60)) wrk -c32 -t2 -d"${duration}s" --timeout 10s \
		-s "$bench/wrk_report.lua" "http://127.0.0.1:$3/$5.json" | sed -n 's/^WRKJSON //p')
	if [[ $4 != - ]]; then
		c1=$(cpu_ticks "$4")
		[[ -n $c0 && -n $c1 ]] &&
			cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.3f", (b - a) / hz }')
		hwm=$(hwm_kb "$4")
	fi
	emit "{\"system\":\"$1\",\"payload\":\"$5\",\"round\":${6:-1},\"wrk\":${line:-null},\"cpu_s\":$cpu,\"hwm_kb\":$hwm,\"bytes\":$(stat -c %s "$tmp/www/$5.json")}" throughput
}

streaming() { # SYSTEM POD PORT MASKPID
	local sys=$1 pod=$2 url=http://127.0.0.1:$3/stream.json w hwm=null res code size secs
	local expect=masked
	[[ $sys == direct || $sys == unflagged ]] && expect=present
	log "$sys: ${stream_mb} MB streaming (curl)"
	[[ $4 != - ]] && hwm_reset "$4"
	w=$(run_in "$pod" curl -s --max-time 600 -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$url" || true)
	[[ $4 != - ]] && hwm=$(hwm_kb "$4")
	read -r code size secs <<<"${w:-0 0 0}"
	run_in "$pod" curl -s --max-time 600 -o "$tmp/out/$sys-stream.json" "$url" || true
	res=$(python3 "$bench/check_secrets.py" "$tmp/secrets-stream.txt" "$tmp/out/$sys-stream.json" --expect $expect)
	rm -f "$tmp/out/$sys-stream.json"
	emit "{\"system\":\"$sys\",\"payload\":\"stream\",\"code\":${code:-0},\"bytes\":${size:-0},\"seconds\":${secs:-0},\"hwm_kb\":$hwm,\"check\":$res}" stream
}

note() { emit "{\"system\":\"$1\",\"note\":\"$2\"}" notes; }

bulk() { # SYSTEM POD ROUND: bulk.bin from the bulk port (response not masked); round 0 = warm-up
	local w code size secs
	log "$1: ${bulk_mb} MiB bulk (curl, $( (($3)) && echo "round $3/$rounds" || echo "warm-up, not counted"))"
	w=$(run_in "$2" curl -s --max-time 600 -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
		"http://127.0.0.1:$bulk_port/bulk.bin" || true)
	read -r code size secs <<<"${w:-0 0 0}"
	(($3)) || return 0
	emit "{\"system\":\"$1\",\"payload\":\"bulk\",\"round\":$3,\"code\":${code:-0},\"bytes\":${size:-0},\"seconds\":${secs:-0}}" bulk
}

# ---- runs -----------------------------------------------------------------------------------
agent_workers=${workers_axis%% *}
agent_start() {
	log "starting the agent (--workers $agent_workers)"
	# shellcheck disable=SC2016
	sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg_agent" \
		${BENCH_AGENT_WRAPPER:-} "$agent_bin" --policies "$tmp/policies" --state-dir "$tmp/state" \
		--admin 127.0.0.1:$admin_port --audit-log "$tmp/audit.log" \
		--attach-cgroup "$cg" --instance "$instance" --proxy-port $proxy_port \
		--workers "$agent_workers" --log-level info >>"$tmp/agent.log" 2>&1 &
	agent_pid=$!
	for _ in $(seq 100); do
		grep -q "ready (admin" "$tmp/agent.log" && wait_port $proxy_port && return 0
		kill -0 $agent_pid 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# resolve PID-SPEC: "@agent" and "@lua" are looked up at each step (a process that died is
# replaced), other values pass through.
resolve() {
	case $1 in
	@agent) echo "${agent_pid:--}" ;;
	@lua) worker_of "$lua_master" || echo - ;;
	*) echo "$1" ;;
	esac
}

# use_system SYSTEM: meshmask-wN needs the agent on N workers (restarted when it has another
# count; the pins and listeners carry over as in an agent restart).
use_system() {
	[[ $1 == meshmask-w* && -n $agent_pid ]] || return 0
	local n=${1#meshmask-w}
	[[ $n == "$agent_workers" ]] && return 0
	kill "$agent_pid" 2>/dev/null
	wait "$agent_pid" 2>/dev/null
	agent_workers=$n
	agent_start || { note "$1" "the agent did not start on $n workers"; agent_pid=; }
	sleep 1 # listeners of the new agent in place, the old one's gone
}

# after SYSTEM STEP: if the agent died during STEP, note it and start a new one.
after() {
	[[ $1 == meshmask* && -n $agent_pid ]] || return 0
	kill -0 "$agent_pid" 2>/dev/null && return 0
	local st=0
	wait "$agent_pid" 2>/dev/null || st=$?
	local how="exit status $st"
	[[ $st -gt 128 ]] && how="killed by signal $((st - 128))$([[ $st -eq 139 ]] && echo ' (SIGSEGV)')"
	log "the agent died during $2 ($how): restarting it"
	note meshmask "the agent died during $2 ($how) and was restarted; later workloads ran on a new agent"
	agent_pid=
	agent_start || { note meshmask "the agent did not restart"; agent_pid=; }
}

# direct and nginx+lua callers sit in a cgroup outside the agent's attach point (no BPF hook
# runs for them); unflagged callers sit under it, in a cgroup no policy covers.
systems+=("direct direct $origin_port -" "nginx+lua direct $lua_port @lua")
if [[ $bpf_ok -eq 0 ]]; then
	note meshmask "not measured: the agent was not built (BPF toolchain missing)"
	note unflagged "not measured: the agent was not built (BPF toolchain missing)"
else
	if agent_start; then
		for w in $workers_axis; do
			systems+=("meshmask-w$w flagged $origin_port @agent")
		done
		systems+=("unflagged plain $origin_port -")
	else
		why=$(tail -n 3 "$tmp/agent.log" | tr -d '"\\' | tr '\n' ' ')
		note meshmask "not measured: the agent did not start ($why)"
		note unflagged "not measured: the agent did not start"
		kill $agent_pid 2>/dev/null
		agent_pid=
	fi
fi
# Keep the systems asked for.
kept=()
for s in "${systems[@]}"; do
	n=${s%% *}
	[[ " $only " == *" ${n%-w*} "* ]] && kept+=("$s")
done
systems=("${kept[@]}")

# Interleaved: each workload runs on every system back to back, so a change in the shared
# machine's load hits all systems alike.
for s in "${systems[@]}"; do
	read -r name pod port mpid <<<"$s"
	check_all "$name" "$pod" "$port"
	after "$name" "the correctness fetches"
done
for n in $payloads; do
	for r in $(seq "$rounds"); do
		for s in "${systems[@]}"; do
			read -r name pod port mpid <<<"$s"
			roundtrips "$name" "$pod" "$port" "$n" "$r"
			after "$name" "$n round trips"
		done
	done
	# --proxy compares req/s within 1 %: rounds interleaved there too (the report takes the
	# median), a single run otherwise.
	for r in $(seq "$([[ $proxy -eq 1 ]] && echo "$rounds" || echo 1)"); do
		for s in "${systems[@]}"; do
			read -r name pod port mpid <<<"$s"
			throughput "$name" "$pod" "$port" "$mpid" "$n" "$r"
			after "$name" "$n throughput (32 connections)"
		done
	done
done
for s in "${systems[@]}"; do
	read -r name pod port mpid <<<"$s"
	use_system "$name"
	streaming "$name" "$pod" "$port" "$(resolve "$mpid")"
	after "$name" "${stream_mb} MB streaming"
done
if [[ $proxy -eq 1 ]]; then
	# The first transfer of the file pays for page cache and connection warm-up: not counted.
	read -r name pod port mpid <<<"${systems[0]}"
	bulk "$name" "$pod" 0
	for r in $(seq "$rounds"); do
		for s in "${systems[@]}"; do
			read -r name pod port mpid <<<"$s"
			use_system "$name"
			bulk "$name" "$pod" "$r"
			after "$name" "${bulk_mb} MiB bulk"
		done
	done
fi
if [[ -n $agent_pid ]]; then
	steered=$(curl -s --max-time 5 "http://127.0.0.1:$admin_port/metrics" |
		awk '/^meshmask_flows_steered_total/ { s += $NF } END { print s + 0 }')
	note meshmask "flows steered through the agent during the run: $steered"
	if [[ $proxy -eq 1 ]]; then
		steered=$(curl -s --max-time 5 "http://127.0.0.1:$admin_port/metrics" |
			awk '/^meshmask_flows_steered_total.*bench-bulk/ { s += $NF } END { print s + 0 }')
		note meshmask "bulk transfers steered through the agent (policy bench-bulk): $steered"
		# The agent warns once when it falls back to reading steer_by_port itself.
		via=yes
		grep -q "cgroup/getsockopt (SO_ORIGINAL_DST) attached" "$tmp/agent.log" || via=no
		grep -q "SO_ORIGINAL_DST not answered" "$tmp/agent.log" && via=no
		note meshmask "original destinations through cgroup/getsockopt on the agent's cgroup: $via$([[ $via == no ]] && echo ' (steer_by_port map read)')"
	fi
fi

if [[ $proxy -eq 0 ]]; then
	log "engine alone (meshmask mask)"
	python3 "$bench/engine_alone.py" "$meshmask" "$tmp/policies/bench-pii.json" \
		"$tmp/www/1k.json" "$tmp/www/64k.json" "$tmp/www/1m.json" "$tmp/www/stream.json" >"$out/engine.jsonl"
fi

machine="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
versions="nginx $(nginx -v 2>&1 | sed 's#.*/##'), libnginx-mod-http-lua $(dpkg-query -W -f '${Version}' libnginx-mod-http-lua 2>/dev/null), wrk $(dpkg-query -W -f '${Version}' wrk 2>/dev/null)"
load=$(cut -d' ' -f1-3 /proc/loadavg)
report=report.py plot=latency.png
[[ $proxy -eq 1 ]] && report=proxy_report.py plot=proxy-latency.png
rc=0
python3 "$bench/$report" --results "$out" --command "$cmdline" --machine "$machine" \
	--versions "$versions" --load "$load" --duration "$duration" --rounds "$rounds" --stream-mb "$stream_mb" \
	$([[ $proxy -eq 1 ]] && echo --bulk-mb "$bulk_mb") \
	--plot-data "$out/latency" >"$out/report.md" || rc=$? # proxy_report.py: 1 = an aim missed
gnuplot -e "datadir='$out/latency'; outfile='$out/latency.png'; payloads='$payloads'" \
	"$bench/latency.gp" || log "the latency plot failed (see gnuplot's message above)"
if [[ $write_docs -eq 1 ]]; then
	mkdir -p "$root/docs/bench"
	cp "$out/latency.png" "$root/docs/bench/$plot"
	python3 "$bench/$report" --splice "$out/report.md" "$root/docs/benchmarks.md"
fi
cat "$out/report.md"
exit $rc
