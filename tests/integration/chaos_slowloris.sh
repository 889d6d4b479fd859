#!/usr/bin/env bash
# Chaos (c): slowloris on the data path and on the admin API at once. In a pod, 100
# connections trickle a request head one byte a second and 100 stay silent; on the admin API
# (from other loopback source addresses, as other hosts would), 40 trickle from one address and
# 20 stay silent from another.
# Meanwhile a normal client of each keeps being served: the pod's masked requests (a new
# connection each) and /healthz. The data path answers the slow ones 408 and closes them
# within --head-timeout (3 s here); the admin API cuts a trickled request at
# --admin-request-timeout (3 s here), bounds what one address may hold (32 connections, 64 in
# all) and cuts a silent connection at the same deadline, counted from the accept (it held a
# slot for the whole 15 s idle timeout before chaos_slowloris).
source "$(dirname "$0")/chaos_lib.sh"
chaos_init "$1"
chaos_policy pii closed 'app-*'
dp_pod app-a 1
dp_agent_start --head-timeout 3 --admin-request-timeout 3 || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pod" dp_wait_listener app-a
SLOW=$CHX_HERE/chaos_slow.py

chaos_loop dp app-a 10.211.1.1 --threads 2 --pause 0.02 --new-connections --path /customers
$CHX_PY "$CHX_HERE/chaos_client.py" 127.0.0.1 $DP_APORT --path /healthz --threads 1 --pause 0.05 \
	--stop-file "$DP_DIR/admin.stop" --log "$DP_DIR/admin.log" >"$DP_DIR/admin.json" &
ADMIN_LOOP=$!
DP_PIDS+=($ADMIN_LOOP)
sleep 0.5
dp_in app-a $CHX_PY "$SLOW" 10.211.1.1 $CHX_SPORT --trickle 100 --silent 100 --interval 1 \
	--duration 12 >"$DP_DIR/slow-dp.json" &
SLOW_DP=$!
$CHX_PY "$SLOW" 127.0.0.1 $DP_APORT --source 127.0.0.2 --trickle 40 --interval 1 \
	--duration 10 >"$DP_DIR/slow-admin.json" &
SLOW_ADMIN=$!
$CHX_PY "$SLOW" 127.0.0.1 $DP_APORT --source 127.0.0.3 --silent 20 --duration 10 \
	>"$DP_DIR/silent-admin.json" &
SILENT_ADMIN=$!
DP_PIDS+=($SLOW_DP $SLOW_ADMIN $SILENT_ADMIN)
wait $SLOW_DP $SLOW_ADMIN $SILENT_ADMIN
chaos_stop dp
touch "$DP_DIR/admin.stop"
wait $ADMIN_LOOP

s() { CHX_J=$1 $CHX_PY -c 'import json, os, sys
d = json.load(open(os.environ["CHX_J"]))
for k in sys.argv[1:]:
    d = d.get(k) if isinstance(d, dict) else None
print(d if d is not None else 0)' "${@:2}"; }
sd=$DP_DIR/slow-dp.json sa=$DP_DIR/slow-admin.json si=$DP_DIR/silent-admin.json
req=$(chaos_get dp requests)
check "data path, the normal client: $req answers, all masked, no raw, no error" \
	test "$req" -gt 50 -a "$(chaos_get dp masked)" -eq "$req" -a "$(chaos_get dp raw)" -eq 0
chaos_bound "data path, the normal client's median (ms)" "$(chaos_get dp p50_ms)" 50
check "data path, trickling: all 100 answered 408 and closed ($(s $sd trickle status 408) answered, $(s $sd trickle closed) closed)" \
	test "$(s $sd trickle status 408)" -eq 100 -a "$(s $sd trickle closed)" -eq 100
chaos_bound "data path, trickling: closed within the head timeout + 2.5 s (s)" "$(s $sd trickle close_max_s)" 5.5
check "data path, trickling and silent: none closed before the head timeout (first $(s $sd trickle close_min_s) s, $(s $sd silent close_min_s) s)" \
	awk -v a="$(s $sd trickle close_min_s)" -v b="$(s $sd silent close_min_s)" 'BEGIN { exit !(a >= 3 && b >= 3) }'
check "data path, silent: all 100 answered 408 and closed ($(s $sd silent status 408), $(s $sd silent closed))" \
	test "$(s $sd silent status 408)" -eq 100 -a "$(s $sd silent closed)" -eq 100
chaos_bound "data path, silent: closed within the head timeout + 2.5 s (s)" "$(s $sd silent close_max_s)" 5.5
check "data path, nothing raw to the slow connections" test "$(s $sd trickle raw)" -eq 0 -a "$(s $sd silent raw)" -eq 0
areq=$(chaos_get admin requests)
check "admin API, the normal client: $areq answers, all 200, no error" \
	test "$areq" -gt 50 -a "$(chaos_get admin status 200)" -eq "$areq" -a "$(chaos_get admin errors)" -eq 0
chaos_bound "admin API, the normal client's median (ms)" "$(chaos_get admin p50_ms)" 50
held=$(($(s $sa trickle opened) - $(s $sa trickle at_once)))
check "admin API, trickling from one address: at most 32 held at once ($held of 40), all closed ($(s $sa trickle closed))" \
	test "$held" -le 32 -a "$held" -gt 0 -a "$(s $sa trickle closed)" -eq 40
chaos_bound "admin API, trickling: closed within the request timeout + 2 s (s)" "$(s $sa trickle close_max_s)" 5
check "admin API, silent from another address: all held, then closed ($(s $si silent at_once) at once, $(s $si silent closed) closed)" \
	test "$(s $si silent at_once)" -eq 0 -a "$(s $si silent closed)" -eq 20
chaos_bound "admin API, silent: closed within the request timeout + 2 s (s)" "$(s $si silent close_max_s)" 5
timeouts=$(dp_metric 'meshmask_flows_refused_total\{[^}]*reason="timeout"')
check "data path timeouts counted ($timeouts)" test "$timeouts" -ge 200
admin_to=$(dp_metric meshmask_admin_request_timeouts_total)
check "admin request timeouts counted ($admin_to: 32 trickling, 20 silent)" test "$admin_to" -ge 52
hwm=$(chaos_hwm)
chaos_report slowloris "dp_requests=$req dp_raw=$(chaos_get dp raw) dp_errors=$(chaos_get dp errors)" \
	"dp_p50_ms=$(chaos_get dp p50_ms) dp_p99_ms=$(chaos_get dp p99_ms)" \
	"trickle_close_max_s=$(s $sd trickle close_max_s) silent_close_max_s=$(s $sd silent close_max_s)" \
	"admin_requests=$areq admin_errors=$(chaos_get admin errors) admin_p50_ms=$(chaos_get admin p50_ms)" \
	"admin_p99_ms=$(chaos_get admin p99_ms) admin_trickle_held=$held/40" \
	"admin_trickle_close_max_s=$(s $sa trickle close_max_s) admin_silent_close_max_s=$(s $si silent close_max_s)" \
	"agent_hwm_kib=$hwm"
chaos_done
