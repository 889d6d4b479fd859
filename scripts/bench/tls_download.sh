#!/usr/bin/env bash
# TLS data path, end to end: a 100 MB download with curl from a local TLS server (openssl
# s_server, self-signed certificate made here) with no agent, with the agent observing (capture
# + detection), and with spec.tls.enforce: stop-rewrite (every SSL_read held and masked).
# Throughput ratios come from one run; the added latency per held read is
# (stop-rewrite time - no-agent time) / reads held. Root (uprobes, ptrace, cgroups).
#   tls_download.sh HARNESS [--mb N] [--runs N]
set -euo pipefail

harness=${1:?usage: tls_download.sh tls_harness [--mb N] [--runs N]}
shift
mb=100
runs=3
while (($#)); do
	case $1 in
	--mb) mb=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	*) echo "tls_download.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
[[ $(id -u) -eq 0 ]] || { echo "tls_download.sh: needs root" >&2; exit 1; }
cgroot=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
id="$$"
tmp=$(mktemp -d)
srv=""
hpid=""
cg="mm-bench-tls-$id"
cleanup() {
	[[ -n $hpid ]] && kill "$hpid" 2>/dev/null
	[[ -n $srv ]] && kill "$srv" 2>/dev/null
	wait 2>/dev/null
	rmdir "$cgroot/$cg" "$cgroot/$cg-srv" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$cgroot/$cg" "$cgroot/$cg-srv"

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
	-days 1 -subj /CN=localhost >/dev/null 2>&1
# JSON lines, each with an SSN and a card (stop-rewrite masks both in every line).
python3 - "$tmp/data.json" "$mb" <<'EOF'
import sys
line = b'{"ssn": "536-22-8841", "card": "4111 1111 1111 1111", "pad": "' + b"x" * 40 + b'"}\n'
block = line * ((1 << 20) // len(line))
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        f.write(block)
EOF
size=$(stat -c %s "$tmp/data.json")
port=$((20000 + RANDOM % 20000))
(cd "$tmp" && exec bash -c 'echo $$ > "$0/cgroup.procs" && exec openssl s_server -quiet -WWW \
	-accept "$1" -cert cert.pem -key key.pem' "$cgroot/$cg-srv" "$port") >/dev/null 2>&1 &
srv=$!
sleep 1

policy() { # mode enforce
	cat >"$tmp/policy.json" <<EOF
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "bench-tls" },
  "spec": { "mode": "$1", "failureMode": "open",
    "selector": { "sources": [ { "cgroup": "/$cg" } ] },
    "tls": { "enforce": "$2" },
    "rules": [ { "name": "pii", "entities": [ "US_SSN", "CREDIT_CARD" ],
                 "action": { "type": "mask", "keepLast": 4 } } ] } }
EOF
}
start() {
	"$harness" --policy "$tmp/policy.json" >"$tmp/h.out" 2>"$tmp/h.err" &
	hpid=$!
	for _ in $(seq 100); do grep -qs "^ready" "$tmp/h.out" && return; sleep 0.1; done
	echo "tls_download.sh: harness did not start" >&2
	cat "$tmp/h.err" >&2
	exit 1
}
stop() {
	kill -TERM "$hpid"
	wait "$hpid" || true
	hpid=""
}
# One download in the client cgroup: seconds; the body goes to $tmp/body.
fetch() {
	bash -c 'echo $$ > "$0/cgroup.procs" && exec curl -sk -o "$1" -w "%{time_total}" "$2"' \
		"$cgroot/$cg" "$tmp/body" "https://127.0.0.1:$port/data.json"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
measure() { # label
	local t
	for _ in $(seq "$runs"); do
		t=$(fetch)
		echo "$t"
	done | median
}

echo "download: $mb MiB ($size bytes) of JSON lines, curl <- openssl s_server on loopback, median of $runs"
t_none=$(measure)
raw_none=$(grep -c '"536-22-8841"' "$tmp/body" || true)

policy observe off
start
t_obs=$(measure)
stop
obs_records=$(awk '/^records policy=bench-tls/ { sub("n=", "", $3); print $3 }' "$tmp/h.out")

policy enforce stop-rewrite
start
t_sr=$(measure)
kill -USR1 "$hpid"
sleep 0.3
stop
stopline=$(grep -a '^stop ' "$tmp/h.out" | tail -1)
val() { tr ' ' '\n' <<<"$stopline" | awk -F= -v k="$1" '$1 == k { print $2 }'; }
stops=$(val stops)
raw_sr=$(grep -c '"536-22-8841"' "$tmp/body" || true)
masked_sr=$(grep -c '"\*\*\*-\*\*-8841"' "$tmp/body" || true)

awk -v s="$size" -v n="$t_none" -v o="$t_obs" -v r="$t_sr" -v st="$stops" -v runs="$runs" \
	-v rec="$obs_records" 'BEGIN {
	printf "%-28s %10s %10s %8s\n", "mode", "seconds", "MB/s", "ratio"
	printf "%-28s %10.3f %10.1f %8.3f\n", "no agent", n, s / n / 1e6, 1
	printf "%-28s %10.3f %10.1f %8.3f\n", "observe (capture+detect)", o, s / o / 1e6, n / o
	printf "%-28s %10.3f %10.1f %8.3f\n", "stop-rewrite (masking)", r, s / r / 1e6, n / r
	per = st / runs
	if (per > 0)
		printf "stop-rewrite: %d reads held per download, %.1f us added per held read\n", per, (r - n) / per * 1e6
	if (rec > 0)
		printf "observe: %d records captured per download, %.2f us added per record\n", rec / runs, (o - n) / (rec / runs) * 1e6
}'
echo "lines with the raw SSN: no agent $raw_none, stop-rewrite $raw_sr (masked lines: $masked_sr)"
echo "stop-rewrite counters: ${stopline#stop }"
