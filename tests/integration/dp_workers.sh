#!/usr/bin/env bash
# The data path on several worker threads (--workers 4): connections are spread over every
# worker (each owns its own SO_REUSEPORT listener in the pod's netns; the per-worker counters
# say where connections went), and a policy swapped every 0.2 s under a load of 32 keep-alive
# connections never lets a raw secret through (a connection takes the newest policy at each
# message boundary).
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
CLIENT=$(dirname "$0")/dp_load_client.py

dp_policy pii closed 'app-load' 'none' $DP_SPORT
dp_pod app-load 1
DP_AGENT_EXTRA="${DP_AGENT_EXTRA:-} --workers 4" dp_agent_start || {
	not_ok "agent starts"
	dp_done
	exit
}
check "the agent runs 4 worker threads" grep -q "data path on 4 worker threads" "$DP_DIR/agent.log"
check "agent listens in the pod's netns" dp_wait_listener app-load
check "four listeners share the port in the pod's netns (SO_REUSEPORT)" \
	bash -c "test \$(ip netns exec mmapp-load$DP_ID ss -Hltn 'sport = :$DP_PPORT' | grep -c 127.0.0.1) -eq 4"

# Spread: short connections, one request each; the kernel hashes each to one listener.
until=$(echo "$(date +%s.%N) + 3" | bc)
spread=$(dp_in app-load python3 "$CLIENT" 10.211.1.1 $DP_SPORT "$until" --threads 8 --new-connections)
echo "# spread run: $spread"
check "spread run: no raw secret" grep -q " raw=0 " <<<"$spread"
worker_conns() { dp_metric "meshmask_worker_connections_total\\{worker=\"$1\"\\}"; }
for _ in $(seq 30); do # the counters are published once a second
	total=0
	for w in 0 1 2 3; do total=$((total + $(worker_conns $w))); done
	[[ $total -ge 40 ]] && break
	sleep 0.2
done
per=""
for w in 0 1 2 3; do
	n=$(worker_conns $w)
	per+=" w$w=$n"
	check "worker $w accepted connections ($n)" test "$n" -ge 1
done
echo "# connections per worker:$per"

# Swap under load: 32 keep-alive connections for 8 s; the policy changes every 0.2 s (two
# versions that both mask, alternately written to the watched directory).
gen() { grep -c "steering: 1 policies" "$DP_DIR/agent.log"; }
g0=$(gen)
until=$(echo "$(date +%s.%N) + 8" | bc)
dp_in app-load python3 "$CLIENT" 10.211.1.1 $DP_SPORT "$until" --threads 32 >"$DP_DIR/load.txt" &
LOAD=$!
sleep 0.5
for i in $(seq 30); do
	if ((i % 2)); then
		DP_SPEC_EXTRA=' "tunnels": "block",' dp_policy pii closed 'app-load' 'none' $DP_SPORT
	else
		dp_policy pii closed 'app-load' 'none' $DP_SPORT
	fi
	sleep 0.2
done
wait $LOAD
load=$(cat "$DP_DIR/load.txt")
echo "# load run: $load"
swaps=$(($(gen) - g0))
check "policy swapped under load ($swaps times)" test "$swaps" -ge 10
check "under load and swaps: no raw secret in any response" grep -q " raw=0 " <<<"$load"
requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$load")
masked=$(sed -n 's/.*masked=\([0-9]*\).*/\1/p' <<<"$load")
check "under load: every answered response masked ($masked of $requests)" \
	test "${requests:-0}" -ge 500 -a "${masked:-0}" -eq "${requests:-1}"
active=0
for w in 0 1 2 3; do
	active=$((active + $(dp_metric "meshmask_worker_connections_active\\{worker=\"$w\"\\}")))
done
echo "# active connections after the load: $active"
check "no secret in the agent's log or audit log" \
	bash -c '! grep -q -e 123-45-6789 -e "4111 1111" -e ada@example.com "$1" "$2"' _ \
	"$DP_DIR/audit.log" "$DP_DIR/agent.log"
dp_done
