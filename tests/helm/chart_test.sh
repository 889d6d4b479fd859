#!/usr/bin/env bash
# Helm chart suite (TAP): lint, render every variant and validate it offline against the
# Kubernetes schemas (validate.mjs), schema rejections, NOTES, and, when a built agent is given,
# the rendered --no-bpf command line run for real with its probe endpoints queried.
#   chart_test.sh SRCROOT [AGENT_BIN] [CLI_BIN]
# helm and the validators come from scripts/setup.sh (tools/, git-ignored).
set -uo pipefail
root=$(cd "$1" && pwd)
agent_bin=${2:+$(realpath -m "$2")}
cli_bin=${3:+$(realpath -m "$3")}
helm=$root/tools/bin/helm
npm=$root/tools/npm
chart=$root/helm/meshmask
here=$root/tests/helm

if [[ ! -x $helm || ! -d $npm/node_modules/kubernetes-models ]]; then
	echo "1..0 # SKIP helm/validators not installed in tools/ (run scripts/setup.sh)"
	exit 0
fi
if ! command -v node >/dev/null; then
	echo "1..0 # SKIP node not installed (run scripts/setup.sh)"
	exit 0
fi

tmp=$(mktemp -d)
agent_pid=
cleanup() {
	[[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
source "$root/tests/helm/tap.sh"
skip() { n=$((n + 1)) && echo "ok $n - $1 # SKIP $2"; }

H() { "$helm" "$@" 2>&1; }
ns=meshmask
# Variants: name -> extra arguments. validate.mjs holds what each must render.
declare -A variants=(
	[default]=""
	[privileged]="--set securityContext.privileged=true"
	[servicemonitor]="--set metrics.serviceMonitor.enabled=true --api-versions monitoring.coreos.com/v1/ServiceMonitor"
	[smnoapi]="--set metrics.serviceMonitor.enabled=true"
	[existingsecret]="--set admin.existingSecret=my-admin-token --set admin.existingSecretKey=admin-token"
	[policies]="-f $here/values-policies.yaml"
	[tls]="--set admin.tls.secretName=meshmask-admin-tls --set service.headless=true --set metrics.serviceMonitor.enabled=true --set metrics.serviceMonitor.tlsConfig.insecureSkipVerify=true --api-versions monitoring.coreos.com/v1/ServiceMonitor"
	[loopback]="--set admin.bind=127.0.0.1 --set service.enabled=false"
	[nobpf]="--set agent.bpf=false"
	[latency]="--set agent.workers=4 --set agent.splice=true --set agent.busyPollMicroseconds=100 --set agent.zeroCopy=false --set agent.tlsRingBufferKiB=1024 --set agent.tlsFallbacks.nodeWide=true --set agent.tlsFallbacks.publicEntry=true --set agent.tlsFallbacks.syscallAttribution=true"
	[noidentity]="--set identity.kubernetes=false"
	[nocluster]="--set cluster.policies=false --set cluster.exampleRoles=false --set crds.install=false"
	[notls]="--set agent.tlsUprobes=false"
	[plainhttp]="--set admin.tls.mode=off"
	[automount]="--set bpf.autoMount=true"
	[external]="--set existingPoliciesConfigMap=my-policies --set hashKeys.existingSecret=my-hash-keys"
	[detokenize]="--set admin.detokenize.enabled=true"
	[nosummary]="--set cluster.summary=false"
	[monitoring]="--set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true --set grafana.dashboard.enabled=true --api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PrometheusRule"
	[detokexisting]="--set admin.detokenize.enabled=true --set admin.detokenize.existingSecret=my-detok --set admin.detokenize.existingSecretKey=t"
)

# --- lint ------------------------------------------------------------------------------
H lint --strict "$chart" >"$tmp/lint.out"
ok $? "helm lint --strict (default values)" "$tmp/lint.out"
for v in privileged servicemonitor existingsecret policies tls; do
	# shellcheck disable=SC2086
	H lint --strict "$chart" ${variants[$v]//--api-versions*/} >"$tmp/lint.out"
	ok $? "helm lint --strict ($v)" "$tmp/lint.out"
done

# --- render + validate -------------------------------------------------------------------
help_arg=()
if [[ -n $agent_bin && -x $agent_bin ]] && "$agent_bin" --help >"$tmp/agent-help" 2>&1 &&
	grep -q -- '--policies' "$tmp/agent-help"; then
	help_arg=(--agent-help "$tmp/agent-help")
fi
for v in default privileged servicemonitor smnoapi existingsecret policies tls plainhttp loopback nobpf notls automount external noidentity nocluster latency monitoring nosummary; do
	# shellcheck disable=SC2086
	if H template mm "$chart" --namespace "$ns" ${variants[$v]} >"$tmp/$v.yaml"; then
		node "$here/validate.mjs" --npm "$npm" --variant "$v" "${help_arg[@]}" "$tmp/$v.yaml" \
			>"$tmp/$v.tap" 2>&1
		rc=$?
		grep -v '^ok\|^1\.\.' "$tmp/$v.tap" >"$tmp/$v.diag"
		ok $rc "render + validate: $v ($(grep -c '^ok' "$tmp/$v.tap") checks)" "$tmp/$v.diag"
	else
		ok 1 "render: $v" "$tmp/$v.yaml"
	fi
done
[[ ${#help_arg[@]} -gt 0 ]] && echo "# agent flags checked against $agent_bin --help"
grep -q -- "- --workers=4" "$tmp/latency.yaml" && ! grep -q -- "--workers" "$tmp/default.yaml"
ok $? "agent.workers=4 passes --workers=4; the default (0) leaves it to the CPU count" "$tmp/latency.yaml"

# A fixed token is used as given; a generated one differs between two renders (lookup keeps it
# on a real upgrade, which needs a cluster).
tok=$(H template mm "$chart" --set admin.token=0123456789abcdef-given --show-only templates/secret-admin-token.yaml |
	sed -n 's/^  token: //p')
[[ $(printf %s "$tok" | base64 -d) == 0123456789abcdef-given ]]
ok $? "admin.token is used as given"
t1=$(H template mm "$chart" --show-only templates/secret-admin-token.yaml | sed -n 's/^  token: //p')
t2=$(H template mm "$chart" --show-only templates/secret-admin-token.yaml | sed -n 's/^  token: //p')
[[ -n $t1 && $t1 != "$t2" ]]
ok $? "admin token generated at random when not given"

# The detokenize token: off by default; when enabled, its own Secret, mount and flag.
H template mm "$chart" >"$tmp/detok-off.yaml"
! grep -q -e "--detokenize-token-file" -e "name: mm-meshmask-detokenize-token" "$tmp/detok-off.yaml"
ok $? "detokenize is off by default: no flag, no Secret"
H template mm "$chart" --set admin.detokenize.enabled=true --set admin.detokenize.token=0123456789abcdef-detok >"$tmp/detok.yaml"
grep -q -- "--detokenize-token-file=/etc/meshmask/detokenize/token" "$tmp/detok.yaml" &&
	grep -q "mountPath: /etc/meshmask/detokenize" "$tmp/detok.yaml" &&
	grep -q "name: mm-meshmask-detokenize-token" "$tmp/detok.yaml" &&
	grep -q "token: $(printf %s 0123456789abcdef-detok | base64)" "$tmp/detok.yaml"
ok $? "admin.detokenize.enabled: the flag, the mount and a Secret with the given token"

# --- schema rejections -------------------------------------------------------------------
# Each: expected text in helm's error, then the arguments.
reject() {
	local want=$1
	shift
	if H template mm "$chart" "$@" >"$tmp/rej.out"; then
		ok 1 "schema rejects $*: rendered" "$tmp/rej.out"
	else
		grep -qF -- "$want" "$tmp/rej.out"
		ok $? "schema rejects $*" "$tmp/rej.out"
	fi
}
reject "admin.port: Must be greater than or equal to 1" --set admin.port=0
reject "admin.port: Must be less than or equal to 65535" --set admin.port=65536
reject "admin.port: Invalid type" --set-string admin.port=9477
reject "agent.proxyPort: Must be less than or equal to 65535" --set agent.proxyPort=100000
reject "agent.logLevel" --set agent.logLevel=verbose
reject "agent.busyPollMicroseconds: Must be less than or equal to 1000" --set agent.busyPollMicroseconds=5000
reject "agent.workers: Must be less than or equal to 16" --set agent.workers=17
reject "agent.tlsRingBufferKiB" --set agent.tlsRingBufferKiB=1000
reject "admin.maxBodyBytes: Must be greater than or equal to 1024" --set admin.maxBodyBytes=10
reject "admin.requestTimeoutSeconds: Must be less than or equal to 3600" --set admin.requestTimeoutSeconds=7200
reject "Additional property prot is not allowed" --set admin.prot=1
reject "Additional property privilegd is not allowed" --set securityContext.privilegd=true
reject "securityContext.extraCapabilities.0" --set "securityContext.extraCapabilities={CAP_SYS_ADMIN}"
reject "securityContext.extraCapabilities.0" --set "securityContext.extraCapabilities={ALL}"
reject "admin.token" --set admin.token=short
reject "admin.detokenize.token" --set admin.detokenize.enabled=true --set admin.detokenize.token=short
reject "Additional property enable is not allowed" --set admin.detokenize.enable=true
reject "agent.auditLog" --set agent.auditLog=/tmp/audit.log
reject "image.digest" --set image.digest=sha256:abc
reject "host.stateDir" --set host.stateDir=var/lib/meshmask
reject "updateStrategy.maxUnavailable" --set updateStrategy.maxUnavailable=0
reject "hashKeys.keys.email" --set hashKeys.keys.email=short
reject "policies.bad.kind" --set-json 'policies.bad={"apiVersion":"meshmask.io/v1alpha1","kind":"Other","metadata":{"name":"bad"},"spec":{}}'
reject "policies.bad" --set-json 'policies.bad={"kind":"MaskingPolicy"}'
# YAML 1.1 reads an unquoted `off` as false: the policy would reach the agent as "enforce": false.
printf '%s\n' 'policies:' '  p:' '    apiVersion: meshmask.io/v1alpha1' '    kind: MaskingPolicy' \
	'    metadata: {name: p}' '    spec: {tls: {enforce: off}}' >"$tmp/off.yaml"
reject "policies.p.spec.tls.enforce" -f "$tmp/off.yaml"
reject "service.enabled" --set metrics.serviceMonitor.enabled=true --set service.enabled=false
reject "service.enabled" --set admin.bind=127.0.0.1
reject "admin.bind" --set "admin.bind=0.0.0.0:80"

# --- NOTES (helm template does not render NOTES.txt: render it as a manifest of a copy) ----
cp -r "$chart" "$tmp/chart"
mv "$tmp/chart/templates/NOTES.txt" "$tmp/chart/notes.tpl"
printf '%s\n' 'notes: |' '{{ tpl (.Files.Get "notes.tpl") . | indent 2 }}' >"$tmp/chart/templates/zz-notes.yaml"
H template mm "$tmp/chart" --namespace "$ns" --show-only templates/zz-notes.yaml >"$tmp/notes.out"
rc=$?
for want in "/v1/policies/<name>" "Authorization: Bearer \$TOKEN" "get secret mm-meshmask-admin-token" \
	"GET /metrics" "prometheus.io/scrape" "https://mm-meshmask.meshmask.svc:9477" \
	"get secret mm-meshmask-admin-tls" "--cacert ca.crt" "kubectl apply -f policy.yaml" \
	"IN FORCE n/m nodes, READY" "meshmask policy push --cluster"; do
	grep -qF -- "$want" "$tmp/notes.out" || { rc=1 && echo "missing: $want" >>"$tmp/notes.out"; }
done
ok $rc "NOTES: how to push a policy, the token, where metrics are" "$tmp/notes.out"
H template mm "$tmp/chart" --namespace "$ns" --show-only templates/zz-notes.yaml \
	--set metrics.serviceMonitor.enabled=true >"$tmp/notes.out"
grep -q "WARNING: metrics.serviceMonitor.enabled is set but no ServiceMonitor" "$tmp/notes.out"
ok $? "NOTES warns when the ServiceMonitor CRD is absent" "$tmp/notes.out"
H template mm "$tmp/chart" --namespace "$ns" --show-only templates/zz-notes.yaml \
	--set metrics.prometheusRule.enabled=true --set grafana.dashboard.enabled=true >"$tmp/notes.out"
grep -q "WARNING: metrics.prometheusRule.enabled is set but no PrometheusRule" "$tmp/notes.out" &&
	grep -q "ConfigMap meshmask/mm-meshmask-dashboard" "$tmp/notes.out"
ok $? "NOTES: the PrometheusRule CRD absent (warned), the dashboard's ConfigMap named" "$tmp/notes.out"
H template mm "$tmp/chart" --namespace "$ns" --show-only templates/zz-notes.yaml \
	--set metrics.prometheusRule.enabled=true --api-versions monitoring.coreos.com/v1/PrometheusRule >"$tmp/notes.out"
grep -q "Alerts: PrometheusRule meshmask/mm-meshmask" "$tmp/notes.out"
ok $? "NOTES: the PrometheusRule named when rendered" "$tmp/notes.out"

# --- policies rendered by the chart pass the real validator --------------------------------
# The ConfigMap's files as the agent sees them, and the hash-key Secret as its mount (key paths
# moved from /etc/meshmask/keys to this test's directory).
mkdir -p "$tmp/pol" "$tmp/keys"
node -e '
const [npm, rendered, pol, keys] = process.argv.slice(1);
const y = require(npm + "/node_modules/js-yaml");
const fs = require("fs");
for (const d of y.loadAll(fs.readFileSync(rendered, "utf8"))) {
	if (d && d.kind === "ConfigMap")
		for (const [k, v] of Object.entries(d.data || {}))
			fs.writeFileSync(pol + "/" + k, v.split("/etc/meshmask/keys/").join(keys + "/"));
	if (d && d.kind === "Secret" && /hash-keys/.test(d.metadata.name))
		for (const [k, v] of Object.entries(d.data || {}))
			fs.writeFileSync(keys + "/" + k, Buffer.from(v, "base64"));
}
' "$npm" "$tmp/policies.yaml" "$tmp/pol" "$tmp/keys"
echo '{"apiVersion":"meshmask.io/v1alpha1","kind":"MaskingPolicy","metadata":{"name":"x"},"spec":{"mode":"sideways"}}' \
	>"$tmp/invalid.json"
# The CLI is built in every configuration (it needs no BPF): its absence is a failure.
if [[ -z $cli_bin || ! -x $cli_bin ]]; then
	ok 1 "the CLI is built (meshmask policy validate)"
else
	# The validator must be real: an invalid policy is refused, at the place of the error.
	"$cli_bin" policy validate "$tmp/invalid.json" >"$tmp/cli-invalid.out" 2>&1
	rc=$?
	((rc != 0)) && grep -qF "/spec/mode" "$tmp/cli-invalid.out"
	ok $? "'meshmask policy validate' refuses an invalid policy (rc $rc, at /spec/mode)" \
		"$tmp/cli-invalid.out"
	"$cli_bin" policy validate "$tmp"/pol/*.json >"$tmp/cli.out" 2>&1
	ok $? "rendered policy passes 'meshmask policy validate'" "$tmp/cli.out"
fi

# --- CRD schema vs the agent's validator (policy/examples, policy/invalid) -----------------
if [[ -n $cli_bin && -x $cli_bin ]]; then
	node "$here/crd_schema.mjs" --npm "$npm" --cli "$cli_bin" --crds "$chart/files/crds.yaml" \
		--examples "$root/policy/examples" --invalid "$root/policy/invalid" >"$tmp/crd.tap" 2>&1
	rc=$?
	grep -v '^ok\|^1\.\.' "$tmp/crd.tap" >"$tmp/crd.diag"
	ok $rc "CRD schema and 'meshmask policy validate' agree: $(grep -c '^ok' "$tmp/crd.tap") checks, $(grep -o '[0-9]* caught by the schema, [0-9]* by the agent only' "$tmp/crd.tap")" "$tmp/crd.diag"
fi
H template mm "$chart" --namespace "$ns" --set crds.install=false >"$tmp/nocrds.yaml"
! grep -q CustomResourceDefinition "$tmp/nocrds.yaml"
ok $? "crds.install=false renders no CRD"

# --- the rendered command line, run: probes and metrics answer on the admin port ----------
if [[ -z $agent_bin || ! -x $agent_bin ]]; then
	skip "agent runs the rendered --no-bpf command line; probe paths answer 200" "agent not built"
else
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	mkdir -p "$tmp/run/policies" "$tmp/run/state" "$tmp/run/admin" "$tmp/run/tls"
	cp "$tmp"/pol/*.json "$tmp/run/policies/" 2>/dev/null
	printf 'test-token-0123456789abcdef' >"$tmp/run/admin/token"
	# The default admin TLS: the chart's generated certificate, written where the Secret mounts.
	H template mm "$chart" --set agent.bpf=false -f "$here/values-policies.yaml" \
		--show-only templates/daemonset.yaml --show-only templates/secret-admin-tls.yaml \
		>"$tmp/run/ds.yaml"
	mapfile -t args < <(node -e '
const y = require(process.argv[1] + "/node_modules/js-yaml");
const fs = require("fs");
const docs = y.loadAll(fs.readFileSync(process.argv[2], "utf8")).filter(Boolean);
const ds = docs.find((d) => d.kind === "DaemonSet");
const sec = docs.find((d) => d.kind === "Secret");
for (const k of ["tls.crt", "tls.key", "ca.crt"])
	fs.writeFileSync(process.argv[3] + "/" + k, Buffer.from(sec.data[k], "base64"));
const c = ds.spec.template.spec.containers.find((c) => c.name === "agent");
for (const a of c.args) console.log(a);
' "$npm" "$tmp/run/ds.yaml" "$tmp/run/tls")
	host=mm-meshmask.default.svc # the Service name the certificate is for
	cu() { curl --cacert "$tmp/run/tls/ca.crt" --resolve "$host:$port:127.0.0.1" "$@"; }
	# Container paths -> this test's directories; the node IP -> loopback.
	run_args=()
	for a in "${args[@]}"; do
		a=${a//\/etc\/meshmask\/policies/$tmp/run/policies}
		a=${a//\/var\/lib\/meshmask/$tmp/run/state}
		a=${a//\/etc\/meshmask\/admin/$tmp/run/admin}
		a=${a//\/etc\/meshmask\/tls/$tmp/run/tls}
		a=${a//\$(MESHMASK_HOST_IP):9477/127.0.0.1:$port}
		run_args+=("$a")
	done
	echo "# running: meshmask-agent ${run_args[*]}"
	"$agent_bin" "${run_args[@]}" >"$tmp/agent.log" 2>&1 &
	agent_pid=$!
	rc=1
	for _ in $(seq 50); do
		cu -fsS -o /dev/null "https://$host:$port/healthz" 2>/dev/null && rc=0 && break
		kill -0 "$agent_pid" 2>/dev/null || break
		sleep 0.1
	done
	if ((rc == 0)); then
		for p in /healthz /readyz /metrics; do
			code=$(cu -s -o "$tmp/body" -w '%{http_code}' "https://$host:$port$p")
			[[ $code == 200 ]] || { rc=1 && echo "GET $p -> $code" >>"$tmp/agent.log"; }
		done
		grep -q '^meshmask_' "$tmp/body" || { rc=1 && echo "/metrics has no meshmask_ series" >>"$tmp/agent.log"; }
		# The ConfigMap directory and the token file are wired as the agent reads them.
		code=$(cu -s -o "$tmp/body" -w '%{http_code}' -H "Authorization: Bearer test-token-0123456789abcdef" \
			"https://$host:$port/v1/policies")
		if [[ $code != 200 ]] || ! grep -q customer-pii "$tmp/body"; then
			rc=1 && echo "GET /v1/policies -> $code, customer-pii not listed" >>"$tmp/agent.log"
		fi
		code=$(cu -s -o /dev/null -w '%{http_code}' -X DELETE "https://$host:$port/v1/policies/customer-pii")
		[[ $code == 401 || $code == 403 ]] ||
			{ rc=1 && echo "DELETE without the token -> $code (want 401/403)" >>"$tmp/agent.log"; }
		# Plain HTTP is not served, and the certificate is for the Service's name only.
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")
		[[ $code != 200 ]] || { rc=1 && echo "plain HTTP answered 200" >>"$tmp/agent.log"; }
		cu -s -o /dev/null "https://127.0.0.2.nip.invalid:$port/healthz" 2>/dev/null &&
			{ rc=1 && echo "a name the certificate is not for was accepted" >>"$tmp/agent.log"; }
	else
		echo "agent did not answer /healthz on 127.0.0.1:$port" >>"$tmp/agent.log"
	fi
	ok $rc "agent runs the rendered --no-bpf command line over the chart's generated HTTPS certificate (verified against its ca.crt and the Service name): probes and /metrics answer 200, policies loaded, token enforced, no plain HTTP" "$tmp/agent.log"
fi

echo "1..$n"
((failed == 0))
