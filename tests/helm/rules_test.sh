#!/usr/bin/env bash
# The chart's alerts and dashboard against Prometheus' own tools (TAP):
#   - the PrometheusRule (rendered with monitoring.coreos.com/v1 served) passes `promtool check
#     rules` and `promtool test rules` with alerts_test.yaml's fixtures (each alert fires for
#     what it is about and stays quiet otherwise);
#   - every dashboard query parses (checked by promtool as a recording rule);
#   - every meshmask_* metric named by either is one the agent exposes (agent/ sources).
# The dashboard queries are also run against a real Prometheus scraping an agent with traffic
# (tests/integration/admin_prom_traffic.sh).
#   rules_test.sh SRCROOT
set -uo pipefail
root=$(cd "$1" && pwd)
helm=$root/tools/bin/helm
chart=$root/helm/meshmask
if [[ ! -x $helm ]]; then
	echo "1..0 # SKIP helm not installed in tools/ (run scripts/setup.sh)"
	exit 0
fi
for t in promtool python3; do
	command -v $t >/dev/null || { echo "1..0 # SKIP $t not installed (Debian package prometheus)"; exit 0; }
done
python3 -c 'import yaml' 2>/dev/null || { echo "1..0 # SKIP python3-yaml not installed"; exit 0; }
tmp=$(mktemp -d /tmp/crd2-rules.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
source "$root/tests/helm/tap.sh"

"$helm" template crd2 "$chart" --set metrics.prometheusRule.enabled=true \
	--api-versions monitoring.coreos.com/v1/PrometheusRule --set grafana.dashboard.enabled=true \
	>"$tmp/all.yaml" 2>"$tmp/helm.err"
ok $? "helm template with the PrometheusRule and the dashboard" "$tmp/helm.err"
"$helm" template crd2 "$chart" --set metrics.prometheusRule.enabled=true >"$tmp/noapi.yaml" 2>&1
! grep -q "kind: PrometheusRule" "$tmp/noapi.yaml"
ok $? "no PrometheusRule when the cluster does not serve monitoring.coreos.com/v1 PrometheusRule"
"$helm" template crd2 "$chart" --api-versions monitoring.coreos.com/v1/PrometheusRule >"$tmp/off.yaml" 2>&1
! grep -q -e "kind: PrometheusRule" -e "grafana_dashboard" "$tmp/off.yaml"
ok $? "neither is rendered by default (opt-in)"

python3 - "$tmp" <<'PY' >"$tmp/extract.err" 2>&1
import json, sys, yaml
tmp = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(f"{tmp}/all.yaml")) if d]
rule = [d for d in docs if d["kind"] == "PrometheusRule"][0]
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(f"{tmp}/rules.yaml", "w"), sort_keys=False)
cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"][0]
dash = json.loads(cm["data"]["meshmask-audit.json"])
exprs = []
for p in dash["panels"]:
    for t in p.get("targets", []):
        exprs.append((p["title"], t["expr"]))
# Grafana's variables as a query would have them ($__range, $__rate_interval: durations).
def subst(e):
    return (e.replace("$__rate_interval", "1m").replace("$__range", "1h")
            .replace("$job", "crd2-meshmask").replace("$node", ".*").replace("$policy", ".*"))
rules = [{"record": f"dashboard:panel_{i}", "expr": subst(e)} for i, (_, e) in enumerate(exprs)]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(f"{tmp}/dash_rules.yaml", "w"))
with open(f"{tmp}/names.txt", "w") as f:
    import re
    text = open(f"{tmp}/rules.yaml").read() + "\n".join(e for _, e in exprs)
    for m in sorted(set(re.findall(r"\bmeshmask_[a-z_]+", text))):
        f.write(re.sub(r"_(bucket|count|sum)$", "", m) + "\n")
print(len(exprs), "dashboard queries")
PY
ok $? "the rule groups and the dashboard's queries extracted ($(tail -1 "$tmp/extract.err"))" "$tmp/extract.err"

promtool check rules "$tmp/rules.yaml" >"$tmp/check.out" 2>&1
ok $? "promtool check rules: $(grep -o '[0-9]* rules found' "$tmp/check.out")" "$tmp/check.out"
sed "s|RULES|$tmp/rules.yaml|" "$root/tests/helm/alerts_test.yaml" >"$tmp/alerts_test.yaml"
promtool test rules "$tmp/alerts_test.yaml" >"$tmp/test.out" 2>&1
ok $? "promtool test rules: every alert fires on its fixture and stays quiet otherwise" "$tmp/test.out"
# Each alert has at least one fixture that makes it fire.
python3 - "$tmp" >"$tmp/cover.out" 2>&1 <<'PY'
import sys, yaml
tmp = sys.argv[1]
alerts = {r["alert"] for g in yaml.safe_load(open(f"{tmp}/rules.yaml"))["groups"] for r in g["rules"]}
fired = {a["alertname"] for t in yaml.safe_load(open(f"{tmp}/alerts_test.yaml"))["tests"]
         for a in t["alert_rule_test"] if a["exp_alerts"]}
missing = alerts - fired
print("not tested firing:", sorted(missing)) if missing else None
sys.exit(1 if missing else 0)
PY
ok $? "every alert is tested firing" "$tmp/cover.out"
promtool check rules "$tmp/dash_rules.yaml" >"$tmp/dcheck.out" 2>&1
ok $? "every dashboard query parses (promtool): $(grep -o '[0-9]* rules found' "$tmp/dcheck.out")" "$tmp/dcheck.out"

: >"$tmp/unknown"
while read -r m; do
	grep -rqF "\"$m" "$root/agent" --include=*.c || echo "$m is not a metric of the agent" >>"$tmp/unknown"
done <"$tmp/names.txt"
[[ -s $tmp/names.txt && ! -s $tmp/unknown ]]
ok $? "the $(wc -l <"$tmp/names.txt") meshmask_* metrics named are the agent's" "$tmp/unknown"

echo "1..$n"
((failed == 0))
