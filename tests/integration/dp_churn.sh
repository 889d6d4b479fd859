#!/usr/bin/env bash
# Policy churn and policy gaps: a policy is added, changed, deleted, re-added and renamed for
# ~16 s while three kinds of clients in a covered pod call the server: one keep-alive
# connection opened before the first policy existed, a connection per request, and a
# keep-alive "pool" opened during a gap. Once a policy covers the pod again (1 s to apply), no
# client may get the raw secret: connections that bypassed the agent are reset and reopen
# through it (meshmask_existing_connections_total{action="reset"}). A second pod whose policy
# says existingConnections: keep keeps its raw connection (counted as kept).
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
CLIENT=$(dirname "$0")/dp_churn_client.py
KEEP_PORT=$((DP_SPORT + 1))
dp_pod app-a 1
dp_pod app-k 2
dp_agent_start || { not_ok "agent starts"; dp_done; exit; }
P=$DP_DIR/policies

now() { date +%s.%N; }
T0=$(now)
END=$(echo "$T0 + 17" | bc)
WIN=$DP_DIR/windows.txt # "start end" of the times a policy covered app-a
: >"$WIN"
cover_from=
covered() { cover_from=$(now); }
uncovered() { echo "$cover_from $(now)" >>"$WIN"; cover_from=; }
at() { # at SECONDS: sleep until T0 + SECONDS
	local d
	d=$(echo "$T0 + $1 - $(now)" | bc)
	[[ $d == -* ]] || sleep "$d"
}

dp_in app-a python3 "$CLIENT" keepalive 10.211.1.1 $DP_SPORT "$END" >"$DP_DIR/keepalive.txt" &
CLIENTS=($!)
dp_in app-a python3 "$CLIENT" perrequest 10.211.1.1 $DP_SPORT "$END" --interval 0.05 >"$DP_DIR/perrequest.txt" &
CLIENTS+=($!)
dp_in app-k python3 "$CLIENT" keepalive 10.211.2.1 $KEEP_PORT "$END" --interval 0.05 >"$DP_DIR/kept.txt" &
CLIENTS+=($!)
dp_in app-a python3 "$CLIENT" pool 10.211.1.1 $DP_SPORT "$END" --start-at "$(echo "$T0 + 6" | bc)" >"$DP_DIR/pool.txt" &
CLIENTS+=($!)

at 2 # the first policy: a pool opened before the first push
dp_policy pii closed 'app-a' 'none' $DP_SPORT
covered
dp_policy keeper closed 'app-k' 'none' $KEEP_PORT
sed -i 's/"failureMode": "closed",/"failureMode": "closed", "existingConnections": "keep",/' "$P/keeper.json"
KEEPER_AT=$(now)
at 4 # a change that keeps the coverage
dp_policy pii open 'app-a' 'none' $DP_SPORT
at 5 # deleted: a gap
rm -f "$P/pii.json"
uncovered
at 7.5 # back; the pool opened at 6 went straight to the server
dp_policy pii closed 'app-a' 'none' $DP_SPORT
covered
at 9.5 # renamed: the new name first, then the old one goes
dp_policy pii2 closed 'app-a' 'none' $DP_SPORT
sleep 0.2
rm -f "$P/pii.json"
at 11.5 # deleted and re-added quickly
rm -f "$P/pii2.json"
uncovered
sleep 0.3
dp_policy pii closed 'app-a' 'none' $DP_SPORT
covered
at 17
uncovered
wait "${CLIENTS[@]}"

# raw_in FILE: raw answers completed inside a window, 1 s after its start to its end.
raw_in() {
	local n=0 s e
	while read -r s e; do
		n=$((n + $(awk -v s="$s" -v e="$e" '$1 > s + 1 && $1 < e && $2 == "raw"' "$1" | wc -l)))
	done <"$WIN"
	echo $n
}
# raw_out FILE: raw answers outside every window (where nothing covers the pod).
raw_out() {
	awk 'NR == FNR { s[NR] = $1; e[NR] = $2; n = NR; next }
	     $2 == "raw" { inside = 0; for (i = 1; i <= n; i++) if ($1 >= s[i] && $1 < e[i]) inside = 1; if (!inside) c++ }
	     END { print c + 0 }' "$WIN" "$1"
}
count() { awk -v v="$2" '$2 == v' "$1" | wc -l; }

for style in keepalive perrequest pool; do
	f=$DP_DIR/$style.txt
	total=$(wc -l <"$f")
	check "$style: $total answers, none raw while a policy covered the pod ($(raw_in "$f") raw)" \
		test "$total" -gt 20 -a "$(raw_in "$f")" -eq 0
	check "$style: raw answers while no policy covered it (the check can fail: $(raw_out "$f"))" \
		test "$(raw_out "$f")" -gt 0
	check "$style: masked answers ($(count "$f" masked))" test "$(count "$f" masked)" -gt 10
done
last=$(tail -n 1 "$DP_DIR/keepalive.txt" | awk '{ print $2 }')
check "keepalive: the last answer is masked ($last)" test "$last" = masked

reset=$(dp_metric 'meshmask_existing_connections_total\{policy="pii",action="reset"\}')
check "connections that bypassed the agent were reset and counted ($reset)" test "$reset" -ge 2
check "the reset is logged" grep -q "now covers cgroup .*app-a: reset" "$DP_DIR/agent.log"

# existingConnections: keep: the connection opened before the policy stays raw.
kept_after=$(awk -v t="$KEEPER_AT" '$1 > t + 1.5 && $2 == "raw"' "$DP_DIR/kept.txt" | wc -l)
check "keep: the connection opened before the policy stays as it was ($kept_after raw answers)" \
	test "$kept_after" -gt 10
kept=$(dp_metric 'meshmask_existing_connections_total\{policy="keeper",action="kept"\}')
check "keep: counted as kept ($kept)" test "$kept" -ge 1
check "keep: never reset" test "$(dp_metric 'meshmask_existing_connections_total\{policy="keeper",action="reset"\}')" -eq 0
dp_in app-k curl -s --max-time 5 http://10.211.2.1:$KEEP_PORT/customers >"$DP_DIR/k.json"
check "keep: a new connection is masked" grep -q '"XXX-XX-6789"' "$DP_DIR/k.json"

# Agent restart: the connections it steered (to its listener) and its own upstream sockets are
# never reset; with no raw connection left, nothing is counted.
before=$(dp_metric 'meshmask_existing_connections_total\{policy="pii",action="reset"\}')
dp_in app-a python3 "$CLIENT" keepalive 10.211.1.1 $DP_SPORT "$(echo "$(now) + 4" | bc)" >"$DP_DIR/after.txt" &
cpid=$!
sleep 1
kill -TERM $DP_AGENT_PID
wait $DP_AGENT_PID
dp_agent_start || not_ok "agent restarts"
wait $cpid
after=$(dp_metric 'meshmask_existing_connections_total\{policy="pii",action="reset"\}')
check "restart: no steered or agent connection reset ($before before, $after after the restart)" \
	test "$after" -eq 0
check "restart: never raw" test "$(count "$DP_DIR/after.txt" raw)" -eq 0
dp_done
