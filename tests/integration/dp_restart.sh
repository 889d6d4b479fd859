#!/usr/bin/env bash
# Overlapping restarts: a new agent starts before the old one has exited (SIGTERM first, and
# both fully running first). The old agent's exit must not remove the new agent's listener
# entries or heartbeat: clients keep getting masked answers in both failure modes, never the
# raw secret, the entries in steer_listeners are the new agent's, and /readyz is true only
# while every covered netns has its entry (a netns where the agent cannot listen keeps it false).
# Upgrades: to an agent whose maps differ and back, and from the previous release's build
# (tests/integration/previous_release, built from git into PREV_DIR) to this one and back.
#   dp_restart.sh AGENT [SOURCE_ROOT PREV_DIR]
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
command -v bpftool >/dev/null || dp_skip "needs bpftool"
OPEN_PORT=$((DP_SPORT + 1))
PIN=$DP_BPFFS/meshmask/$DP_INSTANCE
SRC=${2:-} PREV_DIR=${3:-}

# The previous release's agent, built once from its commit (git archive: no worktree) into
# PREV_DIR. Prints the binary.
prev_agent() {
	local ver rev bin=$PREV_DIR/build/agent/meshmask-agent
	read -r ver rev <"$SRC/tests/integration/previous_release" || return 1
	if [[ ! -x $bin || $(cat "$PREV_DIR/rev" 2>/dev/null) != "$rev" ]]; then
		git -C "$SRC" cat-file -e "$rev^{commit}" 2>/dev/null || return 1
		rm -rf "$PREV_DIR" && mkdir -p "$PREV_DIR/src" &&
			git -C "$SRC" archive "$rev" | tar -x -C "$PREV_DIR/src" &&
			meson setup "$PREV_DIR/build" "$PREV_DIR/src" -Dbpf=enabled >"$PREV_DIR/setup.log" 2>&1 &&
			ninja -C "$PREV_DIR/build" agent/meshmask-agent >"$PREV_DIR/build.log" 2>&1 &&
			echo "$rev" >"$PREV_DIR/rev" || return 1
	fi
	echo "$bin"
}
ROUNDS=(${DP_RESTART_ROUNDS:-term-first both-running upgrade downgrade})
if [[ -n $SRC && -n $PREV_DIR ]]; then
	read -r _ prev_rev <"$SRC/tests/integration/previous_release"
	if ! git -C "$SRC" cat-file -e "$prev_rev^{commit}" 2>/dev/null; then
		# A shallow clone or a source tarball: there is nothing to build the release from.
		echo "ok - release rounds # SKIP $prev_rev is not in the history of $SRC"
	elif PREV=$(prev_agent); then
		ROUNDS+=(release-upgrade release-downgrade)
	else
		not_ok "the previous release's agent builds (from git history; see $PREV_DIR/*.log)"
	fi
fi

dp_policy strict closed 'app-*' 'none' $DP_SPORT
dp_policy lenient open 'app-*' 'none' $OPEN_PORT
dp_pod app-a 1
masked() { grep -q '"XXX-XX-6789"' "$1" && ! grep -q '123-45-6789' "$1"; }

# start_agent LOG ADMIN_PORT [ARGS...]: one more agent of the same instance (pins, proxy port,
# cgroup); prints its pid once it is ready.
start_agent() {
	local log=$1 port=$2
	shift 2
	sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$DP_CG_AGENT" "${AGENT:-$DP_AGENT}" \
		--policies "$DP_DIR/policies" --state-dir "$DP_DIR/state" \
		--admin 127.0.0.1:$port --audit-log "$DP_DIR/audit.log" \
		--attach-cgroup "$DP_CG" --instance "$DP_INSTANCE" --proxy-port $DP_PPORT \
		--log-level debug "$@" >>"$log" 2>&1 &
	local pid=$!
	DP_PIDS+=($pid)
	for _ in $(seq 100); do
		grep -q "ready (admin" "$log" 2>/dev/null && { echo $pid; return 0; }
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	sed 's/^/#   /' "$log" >&2
	return 1
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
instance_of() { sed -n 's/.*steering: instance \([0-9a-f]*\).*/\1/p' "$1" | tail -n 1; }
# The owners of the steer_listeners entries (hex, as the agent logs its id), one a line, each
# once (dp_in joins the pod's cgroup before its netns, so for a moment a covered process is in
# the host's netns and the agent may listen there too until its next rescan).
owners() {
	bpftool -j map dump pinned "$PIN/${LISTENERS:-maps/steer_listeners}" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    v = e.get("value")
    b = bytes(int(x, 16) for x in v) if isinstance(v, list) else None
    print("%016x" % int.from_bytes(b, "little") if b else v)' | sort -u
}
ready() { curl -s --max-time 3 "http://127.0.0.1:$1/readyz" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ready"])'; }
wait_ready() { # wait_ready PORT True|False
	for _ in $(seq 50); do [[ $(ready "$1") == "$2" ]] && return 0; sleep 0.1; done
	return 1
}
# traffic OUT: one new connection to each port every 50 ms, until OUT.stop exists; responses
# appended to OUT.
traffic() {
	local out=$1
	while [[ ! -e $out.stop ]]; do
		for port in $DP_SPORT $OPEN_PORT; do
			r=$(dp_in app-a curl -s --max-time 3 http://10.211.1.1:$port/customers)
			echo "$(date +%s.%N) $port ${r:-FAILED}" >>"$out"
		done
		sleep 0.05
	done
}
check_traffic() { # check_traffic OUT WHAT SINCE: SINCE = when the new agent was ready
	local n raw raw_closed raw_after fail masked
	n=$(wc -l <"$1")
	raw_closed=$(grep -c "^[0-9.]* $DP_SPORT .*123-45-6789" "$1")
	raw_after=$(awk -v t="$3" '$1 > t + 0.2 && /123-45-6789/' "$1" | wc -l)
	fail=$(awk -v t="$3" -v p=$OPEN_PORT '$1 > t + 0.2 && $2 == p && $3 == "FAILED"' "$1" | wc -l)
	masked=$(awk -v t="$3" '$1 > t + 0.2 && /XXX-XX-6789/' "$1" | wc -l)
	after=$(awk -v t="$3" '$1 > t + 0.2' "$1" | wc -l)
	check "$2: closed mode never got the raw secret ($n requests, $raw_closed raw)" test "$n" -gt 10 -a "$raw_closed" -eq 0
	check "$2: once the new agent is ready, no raw secret ($raw_after of $after)" test "$after" -gt 10 -a "$raw_after" -eq 0
	check "$2: once the new agent is ready, open mode never refused ($fail)" test "$fail" -le 1
	check "$2: once the new agent is ready, masked answers ($masked of $after)" test "$masked" -ge $((after - 2))
}

# The maps' ABI is their shapes: a capacity of steer_callers other than the default stands for
# an agent version whose maps changed (upgrade: the new agent's differ; downgrade: back).
abi_dirs() { (cd "$PIN" && ls -d abi-* 2>/dev/null); }
# The previous release pins its maps flat in <instance>/ (no ABI directory, no "maps" link).
for round in "${ROUNDS[@]}"; do
	A_LOG=$DP_DIR/a-$round.log B_LOG=$DP_DIR/b-$round.log
	A_PORT=$(free_port)
	A_ARGS=() B_ARGS=() A_BIN=$DP_AGENT B_BIN=$DP_AGENT LISTENERS=
	[[ $round == upgrade ]] && B_ARGS=(--max-callers 3000)
	[[ $round == downgrade ]] && A_ARGS=(--max-callers 3000)
	[[ $round == release-upgrade ]] && A_BIN=$PREV
	[[ $round == release-downgrade ]] && B_BIN=$PREV
	A=$(AGENT=$A_BIN start_agent "$A_LOG" $A_PORT "${A_ARGS[@]}") ||
		{ not_ok "$round: first agent starts"; continue; }
	a_abi=$(readlink "$PIN/maps")
	check "$round: first agent listens in the pod" dp_wait_listener app-a
	check "$round: first agent ready" wait_ready $A_PORT True
	traffic "$DP_DIR/t-$round.txt" &
	tpid=$!
	sleep 1
	B_PORT=$(free_port)
	if [[ $round == term-first ]]; then
		# The old agent is told to stop, the new one starts while it drains.
		kill -TERM $A
		B=$(AGENT=$B_BIN start_agent "$B_LOG" $B_PORT "${B_ARGS[@]}") ||
			not_ok "$round: second agent starts"
		wait_ready $B_PORT True
		b_ready=$(date +%s.%N)
	else
		# Both run (a surge rollout), then the old one stops.
		B=$(AGENT=$B_BIN start_agent "$B_LOG" $B_PORT "${B_ARGS[@]}") ||
			not_ok "$round: second agent starts"
		sleep 1.5
		check "$round: both agents serve at once (the new one is ready)" wait_ready $B_PORT True
		b_ready=$(date +%s.%N)
		kill -TERM $A
	fi
	# The exit can take seconds: with TLS capture on, each per-process uprobe of the pod's
	# short-lived curls is closed under the kernel's event_mutex with an RCU wait (docs/tls.md).
	for _ in $(seq 300); do kill -0 $A 2>/dev/null || break; sleep 0.1; done
	if kill -0 $A 2>/dev/null; then
		not_ok "$round: old agent exited"
		tail -15 "$A_LOG" | sed "s/^/#A  /" >&2
		for t in /proc/$A/task/*; do echo "$t $(cat $t/comm) $(cat $t/wchan)"; done | sed "s/^/#S  /" >&2
	else
		ok "$round: old agent exited"
	fi
	sleep 1.5 # longer than one rescan of the new agent
	# Enough answers once the new agent is ready (check_traffic wants more than 10), however
	# slowly a loaded machine makes them come.
	answers_after() { (($(awk -v t="$b_ready" '$1 > t + 0.2' "$DP_DIR/t-$round.txt" | wc -l) > 12)); }
	dp_until 60 answers_after
	touch "$DP_DIR/t-$round.txt.stop"
	wait $tpid
	check_traffic "$DP_DIR/t-$round.txt" "$round" "$b_ready"
	b_id=$(instance_of "$B_LOG")
	b_abi=$(readlink "$PIN/maps")
	if [[ $round == release-upgrade ]]; then
		check "$round: the previous release's flat pins removed" \
			bash -c "! ls '$PIN'/steer_* 2>/dev/null"
	elif [[ $round == release-downgrade ]]; then
		# The previous release pins flat beside ours and switches the links: this agent yields.
		LISTENERS=steer_listeners
		check "$round: the newer agent yielded when the links ran the older programs" \
			grep -q "the pinned links run another agent's programs" "$A_LOG"
	elif [[ $round == upgrade || $round == downgrade ]]; then
		check "$round: the maps of another ABI pinned beside the old ($a_abi -> $b_abi)" \
			test -n "$a_abi" -a -n "$b_abi" -a "$a_abi" != "$b_abi"
		check "$round: the old agent yielded when the links ran the new programs" \
			grep -q "the pinned links run another agent's programs" "$A_LOG"
	else
		check "$round: the same ABI's maps reused ($a_abi)" test -n "$a_abi" -a "$a_abi" = "$b_abi"
		# One ABI: the maps are shared, the heartbeat decides who writes; nobody yields.
		check "$round: the old agent did not yield (same maps)" \
			bash -c "! grep -q \"the pinned links run another agent's programs\" '$A_LOG'"
	fi
	[[ $round == release-downgrade ]] ||
		check "$round: only the version in use keeps pins ($(abi_dirs | tr '\n' ' '))" \
			test "$(abi_dirs)" = "$b_abi"
	o=$(owners)
	check "$round: steer_listeners holds the new agent's entry ($o, new $b_id)" \
		test -n "$b_id" -a "$o" = "$b_id"
	check "$round: new agent ready after the old one exited" wait_ready $B_PORT True
	dp_in app-a curl -s --max-time 5 http://10.211.1.1:$OPEN_PORT/customers >"$DP_DIR/o.json"
	check "$round: open mode masked after the old agent exited" masked "$DP_DIR/o.json"
	dp_in app-a curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers >"$DP_DIR/c.json"
	check "$round: closed mode masked after the old agent exited" masked "$DP_DIR/c.json"
	sleep 3.5 # past the heartbeat lifetime: a cleared or stale heartbeat would show now
	dp_in app-a curl -s --max-time 5 http://10.211.1.1:$OPEN_PORT/customers >"$DP_DIR/o2.json"
	check "$round: open mode still masked 3.5 s later (heartbeat the new agent's)" masked "$DP_DIR/o2.json"

	# An entry removed behind the agent's back comes back at the next rescan.
	lm=$PIN/${LISTENERS:-maps/steer_listeners}
	bpftool map delete pinned "$lm" key $(bpftool -j map dump pinned "$lm" |
		python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)[0]["key"]))') 2>/dev/null
	for _ in $(seq 30); do [[ -n $(owners) ]] && break; sleep 0.1; done
	check "$round: a deleted listener entry is restored by the rescan" test "$(owners)" = "$b_id"
	kill -TERM $B
	for _ in $(seq 100); do kill -0 $B 2>/dev/null || break; sleep 0.1; done
	check "$round: the last agent's exit removes its own entry" test -z "$(owners)"
done

# /readyz honest: a netns where the agent cannot open its listener keeps it not ready.
dp_pod app-b 2
ip netns exec mmapp-b$DP_ID python3 -c "
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', $DP_PPORT)); s.listen(); time.sleep(600)" &
BLOCKER=$!
DP_PIDS+=($BLOCKER)
sleep 0.3
C_LOG=$DP_DIR/c.log C_PORT=$(free_port)
C=$(start_agent "$C_LOG" $C_PORT) || not_ok "third agent starts"
sleep 1.5
check "port taken in one covered netns: /readyz says not ready" test "$(ready $C_PORT)" = False
kill $BLOCKER
check "port free again: the listener opens and /readyz says ready" wait_ready $C_PORT True
kill -TERM $C
dp_done
