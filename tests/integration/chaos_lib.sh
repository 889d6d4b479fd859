#!/usr/bin/env bash
# The chaos suite's shared part (chaos_*.sh, docs/reliability.md): the dp_lib.sh topology with
# its own names (netns, cgroups, veths and pins prefixed chx), the asyncio upstream
# (chaos_server.py, port CHX_SPORT in the server netns) and the loop client (chaos_client.py),
# which checks every response for raw secrets and records errors and latency.
#
# A scenario: chaos_init "$1"; pods and a policy; dp_agent_start; chaos_loop NAME POD ARGS… in
# the background; the fault; chaos_stop NAME; assertions on chaos_get NAME FIELD; one
# chaos_report line (also appended to $CHAOS_REPORT when set, which is how
# docs/reliability.md's figures are collected); dp_done. Sourced, not run.
source "$(dirname "${BASH_SOURCE[0]}")/dp_lib.sh"

CHX_HERE=$(dirname "${BASH_SOURCE[0]}")
CHX_PY=/usr/bin/python3
[[ -x $CHX_PY ]] || CHX_PY=python3

chaos_init() {
	DP_PFX=chx
	dp_init "$1"
	CHX_SPORT=8090
	ip netns exec "$DP_NS_SRV" $CHX_PY "$CHX_HERE/chaos_server.py" $CHX_SPORT ${CHX_SNDBUF:-} &
	DP_PIDS+=($!)
	for _ in $(seq 50); do
		ip netns exec "$DP_NS_SRV" ss -Hltn "sport = :$CHX_SPORT" | grep -q . && return 0
		sleep 0.1
	done
	dp_skip "chaos_server.py did not start"
}

# chaos_policy NAME FAILURE_MODE SOURCE_GLOB: dp_policy on the chaos server's port.
chaos_policy() { dp_policy "$1" "$2" "$3" 'none' $CHX_SPORT; }

# chaos_loop NAME POD IP [chaos_client.py options…]: the loop client in POD against IP:CHX_SPORT,
# in the background until chaos_stop NAME (or its --duration). Results in $DP_DIR/NAME.json,
# one line per exchange in $DP_DIR/NAME.log.
declare -A CHX_LOOPS
chaos_loop() {
	local name=$1 pod=$2 ip=$3
	shift 3
	rm -f "$DP_DIR/$name.stop"
	dp_in "$pod" $CHX_PY "$CHX_HERE/chaos_client.py" "$ip" $CHX_SPORT \
		--stop-file "$DP_DIR/$name.stop" --log "$DP_DIR/$name.log" "$@" >"$DP_DIR/$name.json" &
	CHX_LOOPS[$name]=$!
	DP_PIDS+=($!)
}

# chaos_stop NAME: ask the loop client to stop, wait for its summary.
chaos_stop() {
	touch "$DP_DIR/$1.stop"
	wait "${CHX_LOOPS[$1]}"
}

# chaos_run NAME POD IP [options…]: the client in the foreground (--duration or --burst).
chaos_run() {
	local name=$1 pod=$2 ip=$3
	shift 3
	dp_in "$pod" $CHX_PY "$CHX_HERE/chaos_client.py" "$ip" $CHX_SPORT \
		--log "$DP_DIR/$name.log" "$@" >"$DP_DIR/$name.json"
}

# chaos_get NAME KEY…: a figure of a client's summary (0 when absent, -1 without a summary),
# e.g. chaos_get load raw; chaos_get mix status 431; chaos_get mix paths /customers masked.
chaos_get() {
	$CHX_PY - "$DP_DIR/$1.json" "${@:2}" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print(-1)
    sys.exit()
for k in sys.argv[2:]:
    d = d.get(k, 0) if isinstance(d, dict) else 0
print(d)
PY
}

# chaos_hwm: the agent's peak resident size (VmHWM, KiB).
chaos_hwm() { awk '/VmHWM/ { print $2 }' /proc/$DP_AGENT_PID/status; }

# chaos_bound DESC VALUE LIMIT: VALUE <= LIMIT (decimals allowed).
chaos_bound() {
	check "$1 ($2 <= $3)" awk -v v="$2" -v l="$3" 'BEGIN { exit !(v ~ /^[0-9.]+$/ && v + 0 <= l + 0) }'
}

# chaos_mem_bound DESC KIB LIMIT_MIB: a resident-size bound; skipped for a sanitizer build (ASan
# keeps freed memory in its quarantine, so its resident size says nothing about the agent's).
chaos_mem_bound() {
	if dp_sanitized; then
		echo "ok - $1 # SKIP sanitizer build"
	else
		chaos_bound "$1 (KiB)" "$2" $(($3 * 1024))
	fi
}

# chaos_report SCENARIO KEY=VALUE…: the scenario's figures on one line, for the log and, when
# CHAOS_REPORT names a file, appended there (with the build: a sanitizer build's are apart).
chaos_report() {
	local line="chaos $1:" build=plain
	shift
	dp_sanitized && build=asan
	line+=" $*"
	echo "# $line"
	[[ -n ${CHAOS_REPORT:-} ]] && echo "$(date -u +%FT%TZ) [$build] $line" >>"$CHAOS_REPORT"
	return 0
}

# chaos_first NAME OUTCOME AFTER: the end (unix seconds) of the first exchange of that outcome
# (raw, masked, other, error) that started after AFTER; empty when none.
chaos_first() {
	awk -v o="$2" -v t="$3" '$3 == o && $1 > t { print $2; exit }' "$DP_DIR/$1.log"
}

# chaos_count NAME OUTCOME FROM [TO]: exchanges of that outcome started within [FROM, TO).
chaos_count() {
	awk -v o="$2" -v f="$3" -v t="${4:-1e12}" '$3 == o && $1 >= f && $1 < t { n++ } END { print n + 0 }' \
		"$DP_DIR/$1.log"
}

# chaos_now: unix seconds with microseconds, as chaos_client.py logs them.
chaos_now() { date +%s.%6N; }

# chaos_done: dp_done; with CHX_KEEP=DIR the scenario's files (client logs, agent log) are
# copied there first, for a look after the run.
chaos_done() {
	[[ -n ${CHX_KEEP:-} ]] && mkdir -p "$CHX_KEEP" && cp -r "$DP_DIR/." "$CHX_KEEP/"
	dp_done
}
