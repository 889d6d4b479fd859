#!/usr/bin/env bash
# meshmask in two minutes: builds the agent, creates two "pods" (a network namespace and a
# cgroup each) that call the same services (HTTP/1.1 JSON, HTTP/2 JSON over h2c, and gRPC),
# and shows what each receives. "frontend" is covered by the policy, "internal" is exempt; then
# a new agent whose BPF maps differ takes over under load (an upgrade). Needs root (netns,
# cgroups, BPF). Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (network namespaces, cgroups, BPF)" >&2; exit 1; }

scripts/setup.sh
[[ -f build-demo/build.ninja ]] || meson setup build-demo >/dev/null
ninja -C build-demo agent/meshmask-agent >/dev/null

id=$$
cgroot=$(awk '$0 ~ / - cgroup2 / { print $5; exit }' /proc/self/mountinfo)
cg=$cgroot/meshmask-demo-$id
tmp=$(mktemp -d /tmp/meshmask-demo.XXXXXX)
srv=mmdemo-srv-$id
port=15301
pids=()
agent=

cleanup() {
	set +e
	[[ -n $agent ]] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for f in "$cg"/*/cgroup.procs; do
		[[ -f $f ]] && for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null; done
	done
	sleep 0.2
	wait 2>/dev/null
	ip netns del "$srv" 2>/dev/null
	for pod in frontend internal; do ip netns del "mmdemo-$pod-$id" 2>/dev/null; done
	find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
	rm -rf "/sys/fs/bpf/meshmask/demo-$id" "$tmp"
}
trap cleanup EXIT

echo "== topology: service 10.213.x.1:8080 in its own netns, two pods calling it"
ip netns add "$srv"
ip -n "$srv" link set lo up
ip netns exec "$srv" python3 tests/integration/dp_server.py 8080 &
pids+=($!)
# HTTP/2 (h2c) and gRPC services; the gRPC one's descriptor set, made by protoc, is what the
# policy names protobuf fields from.
ip netns exec "$srv" /usr/bin/python3 tests/integration/h2_server.py 8082 &
pids+=($!)
mkdir -p "$tmp/gen"
protoc -I tests/integration/grpc --python_out="$tmp/gen" tests/integration/grpc/customers.proto
protoc -I tests/integration/grpc --descriptor_set_out="$tmp/customers.pb" --include_imports \
	tests/integration/grpc/customers.proto
ip netns exec "$srv" /usr/bin/python3 tests/integration/grpc/grpc_server.py "$tmp/gen" 50051 &
pids+=($!)
i=0
for pod in frontend internal; do
	i=$((i + 1))
	ns=mmdemo-$pod-$id
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip link add "mmd${i}a$id" type veth peer name "mmd${i}b$id"
	ip link set "mmd${i}a$id" netns "$ns"
	ip link set "mmd${i}b$id" netns "$srv"
	ip -n "$ns" addr add "10.213.$i.2/24" dev "mmd${i}a$id"
	ip -n "$srv" addr add "10.213.$i.1/24" dev "mmd${i}b$id"
	ip -n "$ns" link set "mmd${i}a$id" up
	ip -n "$srv" link set "mmd${i}b$id" up
	mkdir -p "$cg/$pod"
	# The pod's long-lived first process (what a pause container is in Kubernetes).
	sh -c "echo \$\$ > $cg/$pod/cgroup.procs; exec ip netns exec $ns sleep infinity" &
	pids+=($!)
done

mkdir -p "$tmp/policies" "$tmp/state"
cat >"$tmp/policies/customer-pii.json" <<JSON
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "customer-pii" },
  "spec": {
    "selector": { "destinations": [ { "port": 8080 }, { "port": 8082 }, { "port": 50051 } ],
                  "sources": [ { "cgroup": "/meshmask-demo-$id/*" } ] },
    "exempt": [ { "cgroup": "/meshmask-demo-$id/internal" } ],
    "directions": [ "response" ],
    "failureMode": "closed",
    "protobuf": { "descriptorSets": [ "$tmp/customers.pb" ] },
    "rules": [
      { "name": "ssn", "fields": [ "\$..ssn" ], "action": { "type": "mask", "keepLast": 4, "char": "X" } },
      { "name": "cards", "entities": [ "CREDIT_CARD" ], "action": { "type": "mask", "keepLast": 4 } },
      { "name": "email", "entities": [ "EMAIL_ADDRESS" ], "action": { "type": "replace", "value": "<EMAIL>" } }
    ] } }
JSON
echo "== policy customer-pii: callers /meshmask-demo-$id/* except internal, destination ports" \
	"8080 (HTTP/1.1), 8082 (HTTP/2), 50051 (gRPC)"

build-demo/agent/meshmask-agent --policies "$tmp/policies" --state-dir "$tmp/state" \
	--admin 127.0.0.1:19477 --audit-log "$tmp/audit.log" --attach-cgroup "$cg" \
	--instance "demo-$id" --proxy-port $port >"$tmp/agent.log" 2>&1 &
agent=$!
for _ in $(seq 100); do
	ip netns exec "mmdemo-frontend-$id" ss -Hltn "sport = :$port" | grep -q . && break
	sleep 0.1
done
echo "== agent running (pid $agent), listening inside the frontend pod's netns"

fetch() { # pod index
	sh -c "echo \$\$ > $cg/$1/cgroup.procs; exec ip netns exec mmdemo-$1-$id \
		curl -s --max-time 5 http://10.213.$2.1:8080/customers" | python3 -m json.tool --indent 2
}
fetch frontend 1 >"$tmp/frontend.txt"
fetch internal 2 >"$tmp/internal.txt"
echo
printf '%-60s %s\n' "frontend (covered) receives:" "internal (exempt) receives:"
python3 -c '
import itertools, sys
a, b = (open(f).read().splitlines() for f in sys.argv[1:3])
for l, r in itertools.zip_longest(a, b, fillvalue=""):
    print("%-60s %s" % (l, r))' "$tmp/frontend.txt" "$tmp/internal.txt"
in_pod() { # pod, command...
	local pod=$1
	shift
	sh -c "echo \$\$ > $cg/$pod/cgroup.procs; exec ip netns exec mmdemo-$pod-$id \"\$@\"" sh "$@"
}
echo
echo "== HTTP/2 (curl --http2-prior-knowledge, h2c): the same JSON over HTTP/2"
for pod in frontend internal; do
	n=$([[ $pod == frontend ]] && echo 1 || echo 2)
	printf '%-9s %s\n' "$pod:" "$(in_pod $pod curl -s --http2-prior-knowledge --max-time 5 \
		http://10.213.$n.1:8082/json | head -c 120)"
done
echo
echo "== gRPC (grpcio) /mm.it.Customers/Get: protobuf fields masked by name"
for pod in frontend internal; do
	n=$([[ $pod == frontend ]] && echo 1 || echo 2)
	printf '%-9s %s\n' "$pod:" "$(in_pod $pod /usr/bin/python3 -c '
import sys, grpc
sys.path.insert(0, sys.argv[1])
import customers_pb2 as pb
get = grpc.insecure_channel(sys.argv[2]).unary_unary("/mm.it.Customers/Get",
    pb.Query.SerializeToString, pb.Customer.FromString)
print(" ".join(str(get(pb.Query(id="1"), timeout=5)).split()))' "$tmp/gen" 10.213.$n.1:50051)"
done
echo
echo "== audit log (no sensitive values in it):"
head -n 3 "$tmp/audit.log" || true
echo "== metrics:"
curl -s http://127.0.0.1:19477/metrics | grep -E '^meshmask_(flows_steered|values_masked|messages)_total' | head -n 10 || true
echo
echo "== upgrade under load: a new agent whose BPF maps differ (--max-callers 8192) takes over"
echo "   while the frontend calls the service every 50 ms; then the old agent stops"
in_pod frontend sh -c 'while [ ! -e "$0/stop" ]; do
	curl -s --max-time 3 http://10.213.1.1:8080/customers >>"$0/loop.txt" || echo FAILED >>"$0/loop.txt"
	echo >>"$0/loop.txt"; sleep 0.05; done' "$tmp" &
loop=$!
pids+=($loop)
sleep 1
build-demo/agent/meshmask-agent --policies "$tmp/policies" --state-dir "$tmp/state" \
	--admin 127.0.0.1:19478 --audit-log "$tmp/audit2.log" --attach-cgroup "$cg" \
	--instance "demo-$id" --proxy-port $port --max-callers 8192 >"$tmp/agent2.log" 2>&1 &
agent2=$!
pids+=($agent2)
for _ in $(seq 100); do
	curl -s http://127.0.0.1:19478/readyz | grep -q '"ready": *true' && break
	sleep 0.1
done
sleep 1
kill "$agent" && wait "$agent" 2>/dev/null || true
agent=
sleep 1
touch "$tmp/stop"
wait "$loop" 2>/dev/null || true
echo "   pins now: $(cd "/sys/fs/bpf/meshmask/demo-$id" && ls -d abi-* maps | tr '\n' ' ')(maps -> $(readlink "/sys/fs/bpf/meshmask/demo-$id/maps"))"
echo "   answers: $(grep -c 'XXX-XX' "$tmp/loop.txt") masked, $(grep -c '123-45-6789' "$tmp/loop.txt") raw, $(grep -c FAILED "$tmp/loop.txt") failed"
grep -h "another agent's programs\|steering maps of another version" "$tmp/agent.log" "$tmp/agent2.log" | sed 's/^/   /' || true
