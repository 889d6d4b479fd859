#!/usr/bin/env bash
# Chaos (d): many concurrent flagged connections, each with a 1 MB masked response (JSON
# records with an SSN, a card and an e-mail; the e-mail's replacement changes the length, so
# each body streams chunked). The client opens every connection first, then sends one request
# on each and reads them all at once (asyncio). Every response is checked for raw secrets; the
# agent's peak RSS (VmHWM) is bounded by its start size + --memory-budget-mb (held bodies and
# send queues together) + 64 KiB a connection (its state: masking stream, HTTP session, the
# buffers of one wake-up; measured ~40 KiB).
#   CI: 1,000 connections, --memory-budget-mb 64; CHAOS_FULL=1: 5,000 connections,
#   --memory-budget-mb 256 (the default under the chart's 512 MiB limit); a sanitizer build:
#   200 connections, no memory bound. CHAOS_CONNS and CHAOS_BUDGET override.
# The caps are raised for the test (--max-connections-per-pod would otherwise refuse a pod's
# 1,582nd connection with this machine's open-file limit of 20,000). The pod and server netns
# use cubic: this VM's default, BBR, collapsed its pacing rate to 2 KB/s after the drops a
# 5,000-connection burst causes on the veth (netdev_max_backlog), stalling the run for minutes.
# CHAOS_STAGGER=S spreads the requests over S seconds.
source "$(dirname "$0")/chaos_lib.sh"
# Fixed socket buffers at the server and the client (no autotuning): thousands of slow readers
# otherwise put the machine's TCP memory (tcp_mem) under pressure, which stalls every socket.
CHX_SNDBUF=${CHX_SNDBUF:-65536}
CHAOS_RCVBUF=${CHAOS_RCVBUF:-65536}
chaos_init "$1"
n=1000 budget=64
[[ -n ${CHAOS_FULL:-} ]] && n=5000 budget=256
dp_sanitized && n=200
n=${CHAOS_CONNS:-$n} budget=${CHAOS_BUDGET:-$budget}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= n + 100)) || dp_skip "open-file limit $(ulimit -n) below $n connections"
chaos_policy pii closed 'app-*'
dp_pod app-a 1
for ns in "$DP_NS_SRV" "${DP_PFX}app-a$DP_ID"; do
	ip netns exec "$ns" sysctl -qw net.ipv4.tcp_congestion_control=cubic 2>/dev/null
done
dp_agent_start --max-connections 12000 --max-connections-per-pod 12000 --memory-budget-mb $budget ||
	{ not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pod" dp_wait_listener app-a
chaos_run warm app-a 10.211.1.1 --threads 1 --duration 0.5 --path /pii/1024
hwm0=$(chaos_hwm)
rss0=$(awk '/VmRSS/ { print $2 }' /proc/$DP_AGENT_PID/status)
# The most connections the agent held at once, sampled while the burst runs.
( peak=0; while kill -0 $DP_AGENT_PID 2>/dev/null && [[ ! -e $DP_DIR/burst.done ]]; do
	c=$(ls /proc/$DP_AGENT_PID/fd 2>/dev/null | wc -l); ((c > peak)) && peak=$c && echo $peak >"$DP_DIR/fds"
	sleep 0.2
done ) &
DP_PIDS+=($!)
t0=$(chaos_now)
chaos_run burst app-a 10.211.1.1 --burst $n --path /pii/1024 --timeout 120 --stagger "${CHAOS_STAGGER:-0}" \
	--rcvbuf "${CHAOS_RCVBUF:-0}"
touch "$DP_DIR/burst.done"
secs=$(awk -v a="$(chaos_now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
hwm=$(chaos_hwm)
fds=$(cat "$DP_DIR/fds" 2>/dev/null || echo 0)
req=$(chaos_get burst requests) raw=$(chaos_get burst raw) masked=$(chaos_get burst masked)
held=$(chaos_get burst held)
check "$n connections open at once ($held; the agent had up to $fds descriptors open)" test "$held" -eq "$n"
check "no raw secret in $req responses ($raw)" test "$raw" -eq 0 -a "$req" -eq "$n"
check "every response complete and masked ($masked of $n, $(chaos_get burst errors) errors)" test "$masked" -eq "$n"
lim=$((hwm0 / 1024 + budget + n * 64 / 1024))
chaos_mem_bound "agent peak RSS for $n concurrent 1 MB masked responses within start + budget $budget MiB + 64 KiB each = $lim MiB ($hwm0 -> $hwm)" "$hwm" "$lim"
chaos_report conns "connections=$n budget_mib=$budget held=$held requests=$req raw=$raw masked=$masked errors=$(chaos_get burst errors)" \
	"seconds=$secs p50_ms=$(chaos_get burst p50_ms) max_ms=$(chaos_get burst max_ms) agent_fds_peak=$fds" \
	"agent_rss_before_kib=$rss0 agent_hwm_kib=$hwm per_conn_kib=$(((hwm - rss0) / n))"
chaos_done
