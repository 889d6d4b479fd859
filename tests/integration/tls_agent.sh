#!/usr/bin/env bash
# TLS data path inside the real daemon: meshmask-agent starts with no policy; a policy file
# dropped into --policies later covers a cgroup; a curl in that cgroup then shows up in
# /metrics (meshmask_tls_*) and in the audit log (tls_finding events, never the value); once
# the file is removed, that cgroup is no longer captured. Then a stop-rewrite policy: the same
# curl prints the masked value, /readyz and meshmask_tls_stop_events_total say so.
# Needs root. Usage: tls_agent.sh PATH/TO/meshmask-agent
set -uo pipefail

agent=${1:?usage: tls_agent.sh meshmask-agent}
source "$(dirname "$0")/tls_lib.sh"
tls_setup curl openssl
extra_cleanup+=("/sys/fs/bpf/meshmask/tlsagent-$id")
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cg="mm-tls-agent-$id"
mkdir -p "$cgroot/$cg" && cgroups+=("$cg")
mkcg "mm-tls-agent-srv-$id"
tls_server_start "mm-tls-agent-srv-$id" '{"ssn": "536-22-8841", "email": "ann@example.com"}' || exit 1

admin_port=$(free_port)
mkdir -p "$tmp/policies" "$tmp/state"
# The capture ring buffer's size: a power of two in KiB, refused otherwise; 1 MiB here (the
# default is 8 MiB), so the whole test runs on a small ring. The agent also runs on the
# sys_enter fallback for connection attribution (kernels before the socket-layer tracepoints;
# tls_capture covers those): the audit check below needs the destination it names.
timeout 10 "$agent" --tls-ring-kb 1000 --no-bpf 2>"$tmp/bad.err"
[[ $? -eq 2 ]] && grep -q -- "--tls-ring-kb: a power of two" "$tmp/bad.err" &&
	ok "--tls-ring-kb 1000 refused" || not_ok "--tls-ring-kb 1000 refused"
"$agent" --tls-syscall-attribution --tls-ring-kb 1024 --policies "$tmp/policies" --state-dir "$tmp/state" --admin "127.0.0.1:$admin_port" \
	--audit-log "$tmp/audit.log" --bpffs /sys/fs/bpf --proxy-port "$(free_port)" \
	--instance "tlsagent-$id" --attach-cgroup "$cgroot/$cg" --detach-on-exit --log-level debug \
	2>"$tmp/agent.err" &
SETTLE_LOG=$tmp/agent.err
apid=$!
pids+=($apid)
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null && break
	sleep 0.1
done
curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null || {
	not_ok "agent did not start"
	sed 's/^/# /' "$tmp/agent.err"
	exit 1
}

if command -v bpftool >/dev/null; then
	bpftool -j map list | "$py" -c '
import json, sys
sys.exit(0 if any(m.get("type") == "ringbuf" and m.get("name") == "events" and
                  m.get("max_entries") == 1 << 20 for m in json.load(sys.stdin)) else 1)' &&
		ok "capture ring buffer of 1 MiB in the kernel" ||
		not_ok "capture ring buffer of 1 MiB in the kernel"
else
	echo "ok - capture ring buffer size # SKIP bpftool not installed"
fi

in_cg_settled "$cg" curl -sk "https://127.0.0.1:$port/" >/dev/null
sleep 1.5
if grep -q tls_finding "$tmp/audit.log" 2>/dev/null; then not_ok "no policy: nothing audited"; else
	ok "no policy: nothing audited"; fi
# No covered cgroup: no uprobe anywhere (a probe costs every caller a trap).
if grep -q "tls: probes attached" "$tmp/agent.err"; then not_ok "no policy: nothing probed"; else
	ok "no policy: nothing probed"; fi

pol="tls-agent-$id"
cat >"$tmp/policies/$pol.json.tmp" <<EOF
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "$pol" },
  "spec": { "mode": "observe",
    "selector": { "destinations": [ { "port": 443 } ], "sources": [ { "cgroup": "/$cg" } ] },
    "rules": [ { "name": "pii", "entities": [ "US_SSN", "EMAIL_ADDRESS" ], "action": { "type": "mask" } } ] } }
EOF
mv "$tmp/policies/$pol.json.tmp" "$tmp/policies/$pol.json"
sleep 2.5 # store reload, then the capture thread's next refresh
in_cg_settled "$cg" curl -sk "https://127.0.0.1:$port/" >/dev/null
sleep 1.5

metrics=$(curl -s "http://127.0.0.1:$admin_port/metrics")
for e in US_SSN EMAIL_ADDRESS; do
	grep -q "^meshmask_tls_findings_total{policy=\"$pol\",entity=\"$e\"} 1$" <<<"$metrics" &&
		ok "metric: $e found once" || not_ok "metric: $e found once"
done
grep -Eq "^meshmask_tls_records_total\{policy=\"$pol\"\} [1-9]" <<<"$metrics" &&
	ok "metric: records" || not_ok "metric: records"
grep -Eq "^meshmask_tls_bytes_scanned_total\{policy=\"$pol\"\} [1-9]" <<<"$metrics" &&
	ok "metric: bytes" || not_ok "metric: bytes"
grep "\"event\":\"tls_finding\"" "$tmp/audit.log" | grep "\"policy\":\"$pol\"" |
	grep "\"caller\":\"/$cg\"" | grep "\"destination\":\"127.0.0.1:$port\"" |
	grep -q "\"entity\":\"US_SSN\",\"count\":1" && ok "audit: tls_finding with caller and destination" ||
	not_ok "audit: tls_finding with caller and destination"
if grep -q -e "536-22-8841" -e "ann@example.com" - "$tmp/audit.log" "$tmp/agent.err" <<<"$metrics"; then
	not_ok "no value in audit, log or metrics"
else
	ok "no value in audit, log or metrics"
fi
grep -q "connections attributed at syscall entry" "$tmp/agent.err" &&
	ok "--tls-syscall-attribution: attribution through sys_enter" ||
	not_ok "--tls-syscall-attribution: attribution through sys_enter"
grep -q "tls: probes attached to .*libssl" "$tmp/agent.err" && ok "libssl probed once a cgroup is covered" ||
	not_ok "libssl probed once a cgroup is covered"
grep -q "in-place rewriting of TLS plaintext is" "$tmp/agent.err" && ok "in-place capability logged" ||
	not_ok "in-place capability logged"

# The policy goes away: its cgroup is no longer covered, nothing more is counted. Waited for
# on the capture's own gauge (the store reloads, then the capture thread refreshes the filter).
rm "$tmp/policies/$pol.json"
for _ in $(seq 100); do
	curl -s "http://127.0.0.1:$admin_port/metrics" |
		grep -q '^meshmask_bpf_map_entries{map="ssl_covered_cgroups"} 0$' && break
	sleep 0.1
done
in_cg_settled "$cg" curl -sk "https://127.0.0.1:$port/" >/dev/null
sleep 1.5
curl -s "http://127.0.0.1:$admin_port/metrics" |
	grep -q "^meshmask_tls_findings_total{policy=\"$pol\",entity=\"US_SSN\"} 1$" &&
	ok "policy removed: cgroup no longer captured" ||
	not_ok "policy removed: cgroup no longer captured"

# Enforcement: stop-rewrite holds the curl thread at SSL_read's return while the agent masks.
cat >"$tmp/policies/$pol-sr.json.tmp" <<EOF
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "$pol-sr" },
  "spec": { "mode": "enforce", "failureMode": "closed",
    "selector": { "sources": [ { "cgroup": "/$cg" } ] },
    "tls": { "enforce": "stop-rewrite" },
    "rules": [ { "name": "pii", "entities": [ "US_SSN" ], "action": { "type": "mask", "keepLast": 4 } } ] } }
EOF
mv "$tmp/policies/$pol-sr.json.tmp" "$tmp/policies/$pol-sr.json"
sleep 2.5
got=$(in_cg_settled "$cg" curl -sk "https://127.0.0.1:$port/")
grep -q '"ssn": "\*\*\*-\*\*-8841"' <<<"$got" && ok "stop-rewrite: curl prints the masked SSN" ||
	not_ok "stop-rewrite: curl prints the masked SSN (got: ${got//[0-9]/9})"
grep -q "ann@example.com" <<<"$got" && ok "stop-rewrite: values no rule names stay" ||
	not_ok "stop-rewrite: values no rule names stay"
ready=$(curl -s "http://127.0.0.1:$admin_port/readyz")
"$py" -c 'import json,sys; d=json.loads(sys.argv[1]); m={e["mode"]: e["available"] for e in d["tls"]["enforceModes"]}; sys.exit(0 if m["stop-rewrite"] and m["off"] else 1)' "$ready" &&
	ok "readyz: stop-rewrite available" || not_ok "readyz: stop-rewrite available"
sleep 1.5 # the capture thread publishes counters each pass
metrics=$(curl -s "http://127.0.0.1:$admin_port/metrics")
grep -Eq '^meshmask_tls_stop_events_total\{event="masked"\} [1-9]' <<<"$metrics" &&
	ok "metric: stop-rewrite masked values" || not_ok "metric: stop-rewrite masked values"
grep -Eq '^meshmask_tls_stop_events_total\{event="stopped"\} [1-9]' <<<"$metrics" &&
	ok "metric: stop-rewrite held threads" || not_ok "metric: stop-rewrite held threads"

kill -TERM "$apid"
wait "$apid" && ok "agent stops cleanly" || not_ok "agent stops cleanly"
[[ ! -e /sys/fs/bpf/meshmask/tlsagent-$id ]] && ok "pins removed (--detach-on-exit)" ||
	not_ok "pins removed (--detach-on-exit)"
if ((fail)); then
	sed 's/^/# /' "$tmp/agent.err" "$tmp/audit.log"
fi
exit $fail
