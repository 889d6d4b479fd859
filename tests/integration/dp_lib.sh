#!/usr/bin/env bash
# Shared topology for the data-path integration tests (dp_*.sh): a server netns, one netns +
# cgroup per "pod" joined to it by a veth pair, the agent attached to this test's own cgroup
# subtree with its own pin instance and ports, so tests run in parallel; the agent itself runs
# in a cgroup of its own (DP_CG_AGENT), as in its pod. Sourced, not run.
# Usage: dp_init AGENT_BINARY; everything is torn down by the EXIT trap.
set -uo pipefail

DP_SKIP=77
dp_fail=0
dp_pass=0

dp_skip() { echo "SKIP: $*"; exit $DP_SKIP; }
ok() { echo "ok - $*"; dp_pass=$((dp_pass + 1)); }
not_ok() { echo "not ok - $*"; dp_fail=$((dp_fail + 1)); }
check() { # check DESC CMD...
	local d=$1; shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
# dp_until SECONDS CMD...: run CMD every 0.1 s until it succeeds, for at most SECONDS (a
# deadline for a loaded machine, never a timing assertion); CMD's last status.
dp_until() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep 0.1
	done
}
# Whether the agent is a sanitizer build (its memory figures then say nothing). Not
# `ldd | grep -q`: under pipefail, ldd killed by SIGPIPE after grep's early exit fails it.
dp_sanitized() {
	[[ $(ldd "$DP_AGENT" 2>/dev/null) == *libasan* ]]
}

# dp_tap OUTPUT: a client's own "ok - " / "not ok - " lines become this test's.
dp_tap() {
	echo "$1"
	dp_pass=$((dp_pass + $(grep -c '^ok - ' <<<"$1")))
	dp_fail=$((dp_fail + $(grep -c '^not ok - ' <<<"$1")))
}
dp_done() {
	echo "# $dp_pass passed, $dp_fail failed"
	[[ $dp_fail -eq 0 ]]
}

dp_init() {
	DP_AGENT=$1
	[[ $(id -u) -eq 0 ]] || dp_skip "needs root"
	for t in ip curl python3 ss; do command -v $t >/dev/null || dp_skip "needs $t"; done
	[[ -x $DP_AGENT ]] || dp_skip "agent not built"
	DP_ROOT=$(awk '$0 ~ / - cgroup2 / { print $5; exit }' /proc/self/mountinfo)
	[[ -n $DP_ROOT ]] || dp_skip "no cgroup v2"
	DP_ID=$$
	# DP_PFX: the prefix of every netns, cgroup, veth and pin name (default mm; the chaos
	# suite uses chx), so suites can tell their leftovers apart.
	DP_PFX=${DP_PFX:-mm}
	DP_DIR=$(mktemp -d /tmp/meshmask-dp.XXXXXX)
	DP_CG_REL=/${DP_PFX}dp-$DP_ID
	DP_CG=$DP_ROOT$DP_CG_REL
	# The agent's own cgroup (a sibling, as the agent's pod is): its cgroup/getsockopt
	# program attaches there, never to the machine's root cgroup.
	DP_CG_AGENT=$DP_ROOT/${DP_PFX}dp-$DP_ID-agent
	DP_INSTANCE=${DP_PFX#mm}dp$DP_ID
	DP_BPFFS=/sys/fs/bpf
	# The proxy port lives in pod netns (unique per test, below the ephemeral range); the admin
	# port in the root netns: ask the kernel for a free one.
	DP_PPORT=$((10000 + DP_ID % 20000))
	DP_APORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	DP_SPORT=8080
	DP_NS_SRV=${DP_PFX}srv$DP_ID
	DP_PODS=()
	DP_PIDS=()
	DP_AGENT_PID=
	mkdir -p "$DP_CG" "$DP_CG_AGENT" "$DP_DIR/policies" "$DP_DIR/state" ||
		dp_skip "cannot create cgroup"
	trap dp_cleanup EXIT
	ip netns add "$DP_NS_SRV" || dp_skip "cannot create netns"
	ip -n "$DP_NS_SRV" link set lo up
	ip netns exec "$DP_NS_SRV" python3 "$(dirname "${BASH_SOURCE[0]}")/dp_server.py" $DP_SPORT &
	DP_PIDS+=($!)
	ip netns exec "$DP_NS_SRV" python3 "$(dirname "${BASH_SOURCE[0]}")/dp_server.py" $((DP_SPORT + 1)) &
	DP_PIDS+=($!)
	for _ in $(seq 50); do
		ip netns exec "$DP_NS_SRV" ss -Hltn "sport = :$((DP_SPORT + 1))" | grep -q . && break
		sleep 0.1
	done
}

dp_cleanup() {
	set +e
	[[ -n $DP_AGENT_PID ]] && kill -9 "$DP_AGENT_PID" 2>/dev/null
	for p in "${DP_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	# Anything left in the test cgroups (clients of a failed assertion).
	for f in $(find "$DP_CG" "$DP_CG_AGENT" -name cgroup.procs 2>/dev/null); do
		for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null; done
	done
	sleep 0.2
	wait 2>/dev/null
	# A killed process leaves its cgroup a little after it is reaped.
	for _ in $(seq 30); do
		grep -qs 'populated 1' "$DP_CG/cgroup.events" "$DP_CG_AGENT/cgroup.events" || break
		sleep 0.1
	done
	for n in "${DP_PODS[@]}"; do ip netns del "$DP_PFX$n$DP_ID" 2>/dev/null; done
	ip netns del "$DP_NS_SRV" 2>/dev/null
	find "$DP_CG" "$DP_CG_AGENT" -depth -type d -exec rmdir {} \; 2>/dev/null
	rm -rf "$DP_BPFFS/meshmask/$DP_INSTANCE"
	if [[ $dp_fail -ne 0 && -f $DP_DIR/agent.log ]]; then
		echo "# agent log (tail):"
		tail -n 30 "$DP_DIR/agent.log" | sed 's/^/#   /'
	fi
	rm -rf "$DP_DIR"
}

# dp_pod NAME INDEX: netns mmNAME<id> with 10.211.INDEX.2, the server at 10.211.INDEX.1, a
# cgroup DP_CG/NAME holding a long-lived process of the pod (its "pause" container).
dp_pod() {
	local name=$1 i=$2 ns=$DP_PFX$1$DP_ID
	local vp=${DP_PFX/#mm/m}v # mv<i>a<id>, as before, or chxv<i>a<id>: 15 characters at most
	local va=$vp${i}a$DP_ID vb=$vp${i}b$DP_ID
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip link add "$va" type veth peer name "$vb"
	ip link set "$va" netns "$ns"
	ip link set "$vb" netns "$DP_NS_SRV"
	ip -n "$ns" addr add 10.211.$i.2/24 dev "$va"
	ip -n "$DP_NS_SRV" addr add 10.211.$i.1/24 dev "$vb"
	ip -n "$ns" addr add fd00:211:$i::2/64 dev "$va" nodad
	ip -n "$DP_NS_SRV" addr add fd00:211:$i::1/64 dev "$vb" nodad
	ip -n "$ns" link set "$va" up
	ip -n "$DP_NS_SRV" link set "$vb" up
	mkdir -p "$DP_CG/$name"
	DP_PODS+=("$name")
	sh -c "echo \$\$ > $DP_CG/$name/cgroup.procs; exec ip netns exec $ns sleep 100000" &
	DP_PIDS+=($!)
}

# dp_in NAME CMD...: run CMD inside pod NAME's netns and cgroup.
dp_in() {
	local name=$1; shift
	# Join the cgroup first: `ip netns exec` remounts /sys, hiding the cgroup tree.
	sh -c "echo \$\$ > $DP_CG/$name/cgroup.procs; exec ip netns exec $DP_PFX$name$DP_ID \"\$@\"" sh "$@"
}

# dp_policy NAME FAILURE_MODE SOURCE_GLOB EXEMPT_GLOB PORT [CIDR]
# (DP_DIRECTIONS: the directions list; DP_SPEC_EXTRA: more spec keys, e.g. ' "tunnels": "pass",')
dp_policy() {
	local dest="{ \"port\": $5 }"
	[[ -n ${6:-} ]] && dest="{ \"port\": $5, \"cidr\": \"$6\" }"

	cat >"$DP_DIR/policies/$1.json" <<JSON
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "$1" },
  "spec": {
    "mode": "enforce",
    "selector": { "destinations": [ $dest ],
                  "sources": [ { "cgroup": "$DP_CG_REL/$3" } ] },
    "exempt": [ { "cgroup": "$DP_CG_REL/$4" } ],
    "directions": [ ${DP_DIRECTIONS:-\"response\"} ],
    "failureMode": "$2",${DP_SPEC_EXTRA:-}
    "rules": [
      { "name": "ssn", "fields": [ "\$..ssn" ], "action": { "type": "mask", "keepLast": 4, "char": "X" } },
      { "name": "cards", "entities": [ "CREDIT_CARD" ], "action": { "type": "mask", "keepLast": 4 } },
      { "name": "email", "entities": [ "EMAIL_ADDRESS" ], "action": { "type": "replace", "value": "<email>" } }
    ] } }
JSON
}

dp_agent_start() {
	# DP_AGENT_UNSHARE="unshare -C": the agent in a cgroup namespace of its own, as in a
	# Kubernetes container (its /proc/self/cgroup then reads "/").
	sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$DP_CG_AGENT" ${DP_AGENT_UNSHARE:-} "$DP_AGENT" --policies "$DP_DIR/policies" --state-dir "$DP_DIR/state" \
		--admin 127.0.0.1:$DP_APORT --audit-log "$DP_DIR/audit.log" \
		--attach-cgroup "$DP_CG" --instance "$DP_INSTANCE" --proxy-port $DP_PPORT \
		--log-level debug ${DP_AGENT_EXTRA:-} "$@" >>"$DP_DIR/agent.log" 2>&1 &
	DP_AGENT_PID=$!
	local n0=$(grep -c "ready (admin" "$DP_DIR/agent.log" 2>/dev/null)
	for _ in $(seq 100); do
		[[ $(grep -c "ready (admin" "$DP_DIR/agent.log") -gt ${n0:-0} ]] && return 0
		kill -0 $DP_AGENT_PID 2>/dev/null || break
		sleep 0.1
	done
	echo "# agent did not start:"; sed 's/^/#   /' "$DP_DIR/agent.log"
	return 1
}

dp_agent_kill() {
	kill -9 "$DP_AGENT_PID" 2>/dev/null
	wait "$DP_AGENT_PID" 2>/dev/null
	DP_AGENT_PID=
}

# dp_wait_listener NAME [STATE]: until the agent listens (or, STATE=absent, no longer does)
# inside pod NAME's netns.
dp_wait_listener() {
	local ns=$DP_PFX$1$DP_ID want=${2:-present}
	for _ in $(seq 200); do
		if ip netns exec "$ns" ss -Hltn "sport = :$DP_PPORT" | grep -q .; then
			[[ $want == present ]] && return 0
		else
			[[ $want == absent ]] && return 0
		fi
		sleep 0.1
	done
	return 1
}

# Steered connections accepted so far, from the agent's metrics.
dp_metric() {
	curl -s --max-time 5 "http://127.0.0.1:$DP_APORT/metrics" | grep -E "^$1" | awk '{ s += $NF } END { print s + 0 }'
}

# With DP_AGENT_EXTRA containing --splice (the *_splice variants of the suite): the splice was
# on and carried the responses (the kernel's counters, exported as metrics once a second).
dp_check_splice() {
	[[ ${DP_AGENT_EXTRA:-} == *--splice* ]] || return 0
	check "splice: the agent turned the sk_msg splice on" grep -q "loopback splice on" "$DP_DIR/agent.log"
	local bytes=0 red=0
	for _ in $(seq 30); do
		bytes=$(dp_metric meshmask_splice_bytes_total)
		red=$(dp_metric 'meshmask_splice_messages_total\{verdict="redirected"\}')
		((bytes > 0 && red > 0)) && break
		sleep 0.1
	done
	check "splice: responses went through it ($bytes bytes, $red sends redirected)" \
		test "$bytes" -gt 0 -a "$red" -gt 0
	if command -v promtool >/dev/null; then
		curl -s --max-time 5 "http://127.0.0.1:$DP_APORT/metrics" >"$DP_DIR/metrics-splice.txt"
		check "splice: the exposition with the splice counters passes promtool" \
			bash -c 'promtool check metrics <"$1"' _ "$DP_DIR/metrics-splice.txt"
	fi
}
