#!/usr/bin/env bash
# Metrics and audit of real masked traffic: a Prometheus server on loopback scrapes the agent
# every second while a flagged pod's requests are steered and masked; its query API must show
# the masked-values counter rising by exactly what was masked. The exposition passes promtool,
# and the audit log holds none of the secrets the server sent. Every query of the chart's
# Grafana dashboard (helm template, grafana.dashboard.enabled) runs against that Prometheus:
# none may fail, and those the traffic feeds must return series; the chart's alerts are loaded
# into it and must evaluate without error, quiet for a healthy agent.
# Uses the data-path topology of dp_lib.sh (root, netns, cgroup v2, BPF).
source "$(dirname "$0")/dp_lib.sh"
for t in prometheus promtool; do
	command -v $t >/dev/null || dp_skip "needs $t (Debian package prometheus)"
done
dp_init "$1"

dp_policy pii closed 'app-*' 'none' $DP_SPORT
dp_pod app-a 1
dp_agent_start || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the flagged pod's netns" dp_wait_listener app-a

PPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$DP_DIR/prom"
# The chart's alerts (helm template, this scrape's job), evaluated by this Prometheus too.
SRC=$(cd "$(dirname "$0")/../.." && pwd)
RULES=
if [[ -x $SRC/tools/bin/helm ]] && python3 -c 'import yaml' 2>/dev/null; then
	"$SRC/tools/bin/helm" template crd2 "$SRC/helm/meshmask" --set metrics.prometheusRule.enabled=true \
		--set metrics.prometheusRule.job=meshmask --api-versions monitoring.coreos.com/v1/PrometheusRule \
		--show-only templates/prometheusrule.yaml |
		python3 -c 'import sys, yaml; yaml.safe_dump({"groups": yaml.safe_load(sys.stdin)["spec"]["groups"]}, sys.stdout)' \
			>"$DP_DIR/rules.yml" && RULES=$DP_DIR/rules.yml
fi
cat >"$DP_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [ ${RULES:+"$RULES"} ]
scrape_configs:
  - job_name: meshmask
    scrape_interval: 1s
    static_configs:
      - targets: ["127.0.0.1:$DP_APORT"]
        labels: { node: crd2-node-1 } # as the chart's ServiceMonitor relabels it
EOF
prometheus --config.file="$DP_DIR/prometheus.yml" --storage.tsdb.path="$DP_DIR/prom" \
	--web.listen-address=127.0.0.1:$PPORT >"$DP_DIR/prometheus.log" 2>&1 &
DP_PIDS+=($!)

query() {
	curl -s --max-time 5 --get --data-urlencode "query=$1" "http://127.0.0.1:$PPORT/api/v1/query" |
		python3 -c 'import json,sys
r=json.load(sys.stdin).get("data",{}).get("result",[])
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
check "Prometheus scrapes the agent" wait_for 'up{job="meshmask"}' 1 60

# One response of /customers holds 2 SSNs (field rule), 2 cards and 2 emails: 6 values.
out=$(dp_in app-a curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers)
check "flagged caller gets masked JSON" grep -q '"XXX-XX-6789"' <<<"$out"
check "one response: 6 values in Prometheus" \
	wait_for 'sum(meshmask_values_masked_total{policy="pii",direction="response"})' 6 30
check "by rule: ssn 2" wait_for 'sum(meshmask_values_masked_total{policy="pii",rule="ssn"})' 2 5
check "by entity: CREDIT_CARD 2" \
	wait_for 'sum(meshmask_values_masked_total{policy="pii",entity="CREDIT_CARD"})' 2 5

# Ten more on one keep-alive connection while Prometheus keeps scraping.
urls=()
for i in $(seq 10); do urls+=("http://10.211.1.1:$DP_SPORT/customers?$i"); done
dp_in app-a curl -s --max-time 20 "${urls[@]}" >"$DP_DIR/ten.json"
check "ten responses masked" test "$(grep -o 'XXX-XX-6789' "$DP_DIR/ten.json" | wc -l)" -eq 10
check "masked-values counter rose by exactly 60" \
	wait_for 'sum(meshmask_values_masked_total{policy="pii",direction="response"})' 66 30
check "responses processed: 11" \
	wait_for 'sum(meshmask_messages_total{policy="pii",direction="response"})' 11 10
check "masking-time histogram: 11 bodies" \
	wait_for 'sum(meshmask_mask_duration_seconds_count{policy="pii"})' 11 10
v=$(query 'sum(meshmask_bytes_scanned_total{policy="pii"})')
check "bytes scanned counted" test "${v:-0}" -gt 0
v=$(query 'sum(meshmask_flows_steered_total{policy="pii"})')
check "steered flows counted" test "${v:-0}" -ge 2

curl -s "http://127.0.0.1:$DP_APORT/metrics" >"$DP_DIR/metrics.txt"
check "promtool check metrics on the exposition with traffic" \
	bash -c 'promtool check metrics <"$1"' _ "$DP_DIR/metrics.txt"

secrets=(123-45-6789 234-56-7890 "4111 1111 1111 1111" "5500 0000 0000 0004" 4111111111111111
	ada@example.com alan@example.org)
leaked=0
for s in "${secrets[@]}"; do
	grep -qF -- "$s" "$DP_DIR/audit.log" "$DP_DIR/metrics.txt" && { echo "# leaked: $s"; leaked=1; }
done
check "no secret in the audit log or the metrics" test $leaked -eq 0

# A CONNECT on the covered connection: refused by the agent (tunnels: block, the default),
# counted in meshmask_blocked_total: the dashboard's "Bodies blocked" has data.
line=$(dp_in app-a python3 -c '
import socket
s = socket.create_connection(("10.211.1.1", '$DP_SPORT'), timeout=5)
s.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
print(s.recv(4096).split(b"\r\n")[0].decode())')
check "a CONNECT under tunnels: block is refused ($line)" grep -q " 403" <<<"$line"

# --- the chart's dashboard, every query -----------------------------------------------------
if [[ -x $SRC/tools/bin/helm ]]; then
	"$SRC/tools/bin/helm" template crd2 "$SRC/helm/meshmask" --set grafana.dashboard.enabled=true \
		--show-only templates/dashboard.yaml >"$DP_DIR/dashboard.yaml" 2>&1
	check "helm template renders the dashboard ConfigMap" test $? = 0
	DASH_SRC=$DP_DIR/dashboard.yaml
else
	echo "# helm not in tools/ (scripts/setup.sh): the dashboard file itself is used"
	DASH_SRC=$SRC/helm/meshmask/files/dashboard.json
fi
# Panels the traffic above feeds (the others must still answer without an error).
FED='Values masked per policy|Values masked per rule|Values masked per entity and action|Values masked in the time range|Masking time p99|Flows steered|Bodies blocked|Policies in force per node|Policies refused per node|Agents up|Agents ready|Agent versions|BPF map usage|Connections through the agent|Audit lines suppressed, callers unsteered'
python3 - "$DASH_SRC" "http://127.0.0.1:$PPORT" "$FED" >"$DP_DIR/dashboard.tap" 2>&1 <<'PY'
import json, sys, time, urllib.parse, urllib.request
src, prom, fed = sys.argv[1], sys.argv[2], set(sys.argv[3].split("|"))
text = open(src).read()
if src.endswith(".yaml"):
    import yaml
    text = yaml.safe_load(text)["data"]["meshmask-audit.json"]
dash = json.loads(text)
# Grafana's variables as the dashboard would send them: this scrape's job, every node and policy.
def subst(e):
    return (e.replace("$__rate_interval", "1m").replace("$__range", "10m")
            .replace("$job", "meshmask").replace("$node", ".*").replace("$policy", ".*"))
def query(e):
    u = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": e})
    try:
        with urllib.request.urlopen(u, timeout=5) as r:
            return json.load(r)
    except urllib.error.HTTPError as err:
        return json.load(err)
titles = set()
for p in dash["panels"]:
    for t in p.get("targets", []):
        e = subst(t["expr"])
        titles.add(p["title"])
        want = p["title"] in fed and t["refId"] == "A"
        for _ in range(20 if want else 1):
            r = query(e)
            res = r.get("data", {}).get("result", [])
            if r.get("status") != "success" or not want or res:
                break
            time.sleep(0.5)
        ok = r.get("status") == "success" and (res or not want)
        print(("ok - " if ok else "not ok - ") + f"dashboard: {p['title']} [{t['refId']}]: "
              + (f"{len(res)} series" if r.get("status") == "success" else r.get("error", "?")))
        if not ok:
            print("#   " + e)
missing = fed - titles
print(("not ok - " if missing else "ok - ") + "dashboard: the fed panels exist " + str(sorted(missing)))
PY
dp_tap "$(cat "$DP_DIR/dashboard.tap")"

# --- the chart's alerts, evaluated on this agent's series -------------------------------------
if [[ -n $RULES ]]; then
	sleep 2 # a few evaluations after the traffic
	curl -s --max-time 5 "http://127.0.0.1:$PPORT/api/v1/rules" >"$DP_DIR/rules.json"
	check "every alert of the chart loaded and evaluated without error" python3 -c '
import json, sys
rules = [r for g in json.load(open(sys.argv[1]))["data"]["groups"] for r in g["rules"]]
assert len(rules) >= 7, len(rules)
bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
assert not bad, bad
' "$DP_DIR/rules.json"
	check "with the agent up and ready, serving: no agent alert, no refused policy" python3 -c '
import json, sys
rules = {r["name"]: r for g in json.load(open(sys.argv[1]))["data"]["groups"] for r in g["rules"]}
for n in ("MeshmaskAgentDown", "MeshmaskAgentNotReady", "MeshmaskPolicyRefused", "MeshmaskPassedUnmasked"):
    assert rules[n]["state"] == "inactive", (n, rules[n]["state"])
' "$DP_DIR/rules.json"
else
	echo "# helm or python3-yaml missing: the chart's alerts not evaluated"
fi
check "audit: one line per rule/entity batch with caller and destination" \
	grep -q '"policy":"pii".*"rule":"ssn".*"count":2' "$DP_DIR/audit.log"
check "audit: destination recorded" grep -q "\"destination\":\"10.211.1.1:$DP_SPORT\"" "$DP_DIR/audit.log"
dp_done
