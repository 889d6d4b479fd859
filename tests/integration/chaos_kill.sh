#!/usr/bin/env bash
# Chaos (a): kill -9 of the agent under load, then a restart. A loop client (8 keep-alive
# threads, small and 256 KiB masked JSON) runs throughout: it never gets a raw secret, its
# errors are counted (closed mode: refused while the agent is down, cut mid-response at the
# kill), and masked answers come back within a bound after the restart (0.5 s after the old
# process was reaped); once the new agent is ready every answer is masked.
source "$(dirname "$0")/chaos_lib.sh"
chaos_init "$1"
chaos_policy pii closed 'app-*'
dp_pod app-a 1
dp_agent_start || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pod" dp_wait_listener app-a

chaos_loop load app-a 10.211.1.1 --threads 8 --path /customers --path /pii/256 --error-pause 0.05
sleep 2
t_kill=$(chaos_now)
dp_agent_kill
t_dead=$(chaos_now)
sleep 0.5
t_start=$(chaos_now)
dp_agent_start || not_ok "agent restarts"
t_ready=$(chaos_now)
sleep 3
chaos_stop load

raw=$(chaos_get load raw) req=$(chaos_get load requests) err=$(chaos_get load errors)
first=$(chaos_first load masked "$t_kill")
recovery=$(awk -v a="$first" -v b="$t_start" 'BEGIN { if (a == "") print "none"; else printf "%.2f", a - b }')
outage=$(awk -v a="$first" -v b="$t_kill" 'BEGIN { if (a == "") print "none"; else printf "%.2f", a - b }')
start_s=$(awk -v a="$t_ready" -v b="$t_start" 'BEGIN { printf "%.2f", a - b }')
reaped_s=$(awk -v a="$t_dead" -v b="$t_kill" 'BEGIN { printf "%.2f", a - b }')
before=$(chaos_count load masked 0 "$t_kill")
after_ready=$(($(chaos_count load masked "$t_ready") + $(chaos_count load other "$t_ready") + $(chaos_count load error "$t_ready")))
masked_after=$(chaos_count load masked "$t_ready")
# A connection reset by the kill may fail once more after the ready line (it was refused or cut
# before); anything else after it would be the new agent's fault.
errors_after=$(chaos_count load error "$(awk -v t="$t_ready" 'BEGIN { printf "%.6f", t + 0.5 }')")
check "no raw secret in $req responses ($raw)" test "$raw" -eq 0
check "masked answers before the kill ($before)" test "$before" -gt 20
check "errors counted while the agent was down ($err)" test "$err" -gt 0
check "masked again after the restart (first $recovery s after the new agent's exec)" test -n "$first"
chaos_bound "recovery: first masked answer after the restart, seconds" "$recovery" 5
check "after the new agent is ready: every answer masked ($masked_after of $after_ready, errors after +0.5 s: $errors_after)" \
	test "$masked_after" -gt 20 -a "$errors_after" -eq 0 -a "$(chaos_count load other "$t_ready")" -eq 0
hwm=$(chaos_hwm)
chaos_report kill "requests=$req raw=$raw errors=$err outage_s=$outage recovery_s=$recovery" \
	"reaped_s=$reaped_s agent_start_s=$start_s p50_ms=$(chaos_get load p50_ms) p99_ms=$(chaos_get load p99_ms) agent_hwm_kib=$hwm"
chaos_done
