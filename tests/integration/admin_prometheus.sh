#!/usr/bin/env bash
# /metrics against the real tools: `promtool check metrics` on the agent's exposition, and a
# Prometheus server on loopback that scrapes the agent every second while masking happens,
# then is queried for the rise of the masked-values counter.
#
# The agent runs with --no-bpf, so the masking comes from POST /v1/mask dry-runs, which count
# in meshmask_dryrun_values_total (kept apart from the traffic counters on purpose). TAP output.
# usage: admin_prometheus.sh MESHMASK_AGENT
set -uo pipefail
AGENT=${1:?meshmask-agent}
for t in prometheus promtool curl python3; do
	command -v $t >/dev/null || {
		echo "1..0 # SKIP $t not installed (Debian package prometheus)"
		exit 77
	}
done

T=$(mktemp -d /tmp/meshmask-admin-prom.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.2
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

n=0
fails=0
ok() {
	n=$((n + 1))
	if [[ $1 == 0 ]]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

TOKEN=prom-$RANDOM-token
echo "$TOKEN" >"$T/token"
mkdir -p "$T/pol" "$T/state" "$T/prom"
cat >"$T/pol/prom.json" <<'EOF'
{"apiVersion":"meshmask.io/v1alpha1","kind":"MaskingPolicy","metadata":{"name":"prom"},
 "spec":{"rules":[{"name":"ssn","fields":["$..ssn"],"action":{"type":"mask","keepLast":4}},
  {"name":"cards","entities":["CREDIT_CARD"],"action":{"type":"mask","keepLast":4}}]}}
EOF
APORT=$(free_port)
"$AGENT" --no-bpf --policies "$T/pol" --state-dir "$T/state" --admin 127.0.0.1:$APORT \
	--token-file "$T/token" --audit-log "$T/audit.log" 2>"$T/agent.err" &
PIDS+=($!)
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$APORT/healthz && break; sleep 0.05; done

dryrun() { # 3 values each: two SSN fields and one card
	curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
		-H 'Content-Type: application/json' \
		--data '{"a":{"ssn":"123-45-6789"},"b":[{"ssn":"078-05-1120"}],"c":"card 4111-1111-1111-1111"}' \
		"http://127.0.0.1:$APORT/v1/mask?policy=prom"
}
[[ $(dryrun) == 200 ]]
ok $? "dry-run through the admin API"

# promtool on an exposition with every kind of family present.
curl -s -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: text/plain' --data x \
	"http://127.0.0.1:$APORT/v1/policies/x" >/dev/null
curl -s "http://127.0.0.1:$APORT/metrics" >"$T/metrics.txt"
promtool check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1
ok $? "promtool check metrics passes"
sed 's/^/# /' "$T/promtool.out"

PPORT=$(free_port)
cat >"$T/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: meshmask
    scrape_interval: 1s
    static_configs:
      - targets: ["127.0.0.1:$APORT"]
EOF
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prom" \
	--web.listen-address=127.0.0.1:$PPORT >"$T/prometheus.log" 2>&1 &
PIDS+=($!)

query() { # query PROMQL -> the single value, or empty
	curl -s --get --data-urlencode "query=$1" "http://127.0.0.1:$PPORT/api/v1/query" |
		python3 -c 'import json,sys
d=json.load(sys.stdin); r=d.get("data",{}).get("result",[])
print(r[0]["value"][1] if r else "")' 2>/dev/null
}
wait_for() { # wait_for PROMQL VALUE SECONDS
	local end=$((SECONDS + $3)) v
	while ((SECONDS < end)); do
		v=$(query "$1")
		[[ $v == "$2" ]] && return 0
		sleep 0.5
	done
	echo "# $1 = '$v', want '$2'"
	return 1
}
wait_for 'up{job="meshmask"}' 1 60
ok $? "Prometheus scrapes the agent"
base=""
for _ in $(seq 60); do
	base=$(query 'sum(meshmask_dryrun_values_total{policy="prom"})')
	[[ -n $base ]] && break
	sleep 0.5
done
[[ -n $base ]]
ok $? "masked-values counter visible in Prometheus ($base)"

codes=""
for _ in $(seq 20); do codes+=$(dryrun); done
[[ $codes == "$(printf '200%.0s' $(seq 20))" ]]
ok $? "20 dry-runs while Prometheus scrapes"
want=$((${base:-0} + 60))
wait_for 'sum(meshmask_dryrun_values_total{policy="prom"})' "$want" 30
ok $? "the masked-values counter rose by exactly 60 in Prometheus"
wait_for 'sum(meshmask_dryrun_total{policy="prom"})' "21" 10
ok $? "dry-run count is 21"
v=$(query 'sum(meshmask_admin_requests_total{method="PUT",code="415"})')
[[ $v == 1 ]]
ok $? "admin requests by code reach Prometheus"
v=$(query 'meshmask_build_info')
[[ $v == 1 ]]
ok $? "build info"
! grep -qF -e 123-45-6789 -e 4111-1111-1111-1111 "$T/metrics.txt" "$T/audit.log" "$T/agent.err"
ok $? "no traffic value in the metrics, audit log or agent log"

echo "1..$n"
[[ $fails == 0 ]]
