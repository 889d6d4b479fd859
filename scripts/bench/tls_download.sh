#!/usr/bin/env bash
# TLS data path, end to end: a 100 MB download with curl from a local TLS server (openssl
# s_server, self-signed certificate made here) with no agent, with the agent observing (capture
# + detection), and with spec.tls.enforce: stop-rewrite (every SSL_read held and masked).
# Observe runs in three variants, to show each step of issue 15 §3:
#   observe, node-wide, entry   every process probed, probes on SSL_read/SSL_write (before)
#   observe, per-process, entry only covered processes probed (--tls-public-entry)
#   observe                     per process, probes at OpenSSL's shared bodies (now)
# and "capture only": the same with a policy that names no entity (records captured and
# streamed, nothing scanned), which separates the capture's cost from the detection's.
# Rounds are interleaved (no agent, then each mode, runs times); per mode the median.
# curl and s_server load a private copy of libssl (LD_LIBRARY_PATH, named so that other agents
# on a shared machine, which probe every libssl*.so* node-wide, leave it alone; this agent
# finds it by its symbols); --system-libssl uses the system's. The added latency per held read
# is (stop-rewrite time - no-agent time) / reads held. Root (uprobes, ptrace, cgroups).
#   tls_download.sh HARNESS [--mb N] [--runs N] [--system-libssl]
set -euo pipefail

harness=${1:?usage: tls_download.sh tls_harness [--mb N] [--runs N]}
shift
mb=100
runs=3
system_libssl=0
while (($#)); do
	case $1 in
	--mb) mb=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--system-libssl) system_libssl=1; shift ;;
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
libenv=()
if [[ $system_libssl == 0 ]]; then
	sys=$(ldd "$(command -v curl)" | awk '$1 ~ /^libssl\.so/ { print $3; exit }')
	mkdir -p "$tmp/lib"
	cp "$sys" "$tmp/lib/mmbench-ssl.so"
	ln -s mmbench-ssl.so "$tmp/lib/$(basename "$sys")"
	libenv=(env "LD_LIBRARY_PATH=$tmp/lib")
fi

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
(cd "$tmp" && exec bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cgroot/$cg-srv" \
	"${libenv[@]}" openssl s_server -quiet -WWW -accept "$port" -cert cert.pem -key key.pem) \
	>/dev/null 2>&1 &
srv=$!
sleep 1

# mode enforce; enforce "capture-only": observe with a field rule only, so the TLS path
# captures and streams every record but scans for no entity (what capture costs without
# detection).
policy() {
	local rule='{ "name": "pii", "entities": [ "US_SSN", "CREDIT_CARD" ],
                 "action": { "type": "mask", "keepLast": 4 } }' enforce=$2
	if [[ $2 == capture-only ]]; then
		rule='{ "name": "f", "fields": [ "$..ssn" ], "action": { "type": "redact" } }'
		enforce=off
	fi
	cat >"$tmp/policy.json" <<EOF
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "bench-tls" },
  "spec": { "mode": "$1", "failureMode": "open",
    "selector": { "sources": [ { "cgroup": "/$cg" } ] },
    "tls": { "enforce": "$enforce" },
    "rules": [ $rule ] } }
EOF
}
start() { # [harness options...]
	"$harness" --policy "$tmp/policy.json" "$@" >"$tmp/h.out" 2>"$tmp/h.err" &
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
	bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cgroot/$cg" "${libenv[@]}" \
		curl -sk -o "$tmp/body" -w "%{time_total}" "https://127.0.0.1:$port/data.json"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# One download under a mode: none, or "policy-mode enforce options..." with the harness running.
# Appends the time to $tmp/t.<label>; the harness's records and stop counters to files too.
one() { # label [mode enforce env...]
	local label=$1
	shift
	if (($#)); then
		policy "$1" "$2"
		shift 2
		start "$@"
	fi
	fetch >>"$tmp/t.$label"
	echo >>"$tmp/t.$label"
	if [[ -n $hpid ]]; then
		kill -USR1 "$hpid"
		sleep 0.3
		# The agent's CPU seconds (user + system) for this download, start-up included.
		awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' \
			"/proc/$hpid/stat" >>"$tmp/c.$label"
		stop
		awk '/^records policy=bench-tls/ { sub("n=", "", $3); print $3 }' "$tmp/h.out" \
			>>"$tmp/r.$label"
		grep -a '^stop ' "$tmp/h.out" | tail -1 >"$tmp/s.$label"
		grep -a '^stats ' "$tmp/h.out" | tail -1 >"$tmp/st.$label"
	fi
}

echo "download: $mb MiB ($size bytes) of JSON lines, curl <- openssl s_server on loopback, median of $runs interleaved rounds"
[[ $system_libssl == 0 ]] && echo "libssl: a private copy for curl and s_server ($tmp/lib)"
for _ in $(seq "$runs"); do
	one none
	raw_none=$(grep -c '"536-22-8841"' "$tmp/body" || true)
	one obs_node observe off --node-wide --public-entry
	one obs_entry observe off --public-entry
	one obs observe off
	one cap observe capture-only
	one sr enforce stop-rewrite
	raw_sr=$(grep -c '"536-22-8841"' "$tmp/body" || true)
	masked_sr=$(grep -c '"\*\*\*-\*\*-8841"' "$tmp/body" || true)
done
med() { grep . "$tmp/$1" | median; }
t_none=$(med t.none)
t_on=$(med t.obs_node)
t_oe=$(med t.obs_entry)
t_obs=$(med t.obs)
t_cap=$(med t.cap)
t_sr=$(med t.sr)
obs_records=$(med r.obs)
cpu_line="agent CPU seconds per download (median): observe node-wide entry $(med c.obs_node), per-process entry $(med c.obs_entry), now $(med c.obs), capture only $(med c.cap), stop-rewrite $(med c.sr)"
stopline=$(cat "$tmp/s.sr")
val() { tr ' ' '\n' <<<"$stopline" | awk -F= -v k="$1" '$1 == k { print $2 }'; }
stops=$(val stops)

awk -v s="$size" -v n="$t_none" -v on="$t_on" -v oe="$t_oe" -v o="$t_obs" -v r="$t_sr" -v c="$t_cap" \
	-v st="$stops" -v rec="$obs_records" 'BEGIN {
	printf "%-36s %10s %10s %8s\n", "mode", "seconds", "MB/s", "ratio"
	printf "%-36s %10.3f %10.1f %8.3f\n", "no agent", n, s / n / 1e6, 1
	printf "%-36s %10.3f %10.1f %8.3f\n", "observe, node-wide, entry probes", on, s / on / 1e6, n / on
	printf "%-36s %10.3f %10.1f %8.3f\n", "observe, per-process, entry probes", oe, s / oe / 1e6, n / oe
	printf "%-36s %10.3f %10.1f %8.3f\n", "observe (per-process, body probes)", o, s / o / 1e6, n / o
	printf "%-36s %10.3f %10.1f %8.3f\n", "capture only (no entity to scan)", c, s / c / 1e6, n / c
	printf "%-36s %10.3f %10.1f %8.3f\n", "stop-rewrite (masking)", r, s / r / 1e6, n / r
	if (st > 0)
		printf "stop-rewrite: %d reads held in the last download, %.1f us added per held read\n", st, (r - n) / st * 1e6
	if (rec > 0)
		printf "observe: %d records captured per download, added per record: %.2f us (node-wide, entry), %.2f us (per-process, entry), %.2f us (now)\n", rec, (on - n) / rec * 1e6, (oe - n) / rec * 1e6, (o - n) / rec * 1e6
}'
echo "lines with the raw SSN: no agent $raw_none, stop-rewrite $raw_sr (masked lines: $masked_sr)"
echo "stop-rewrite counters: ${stopline#stop }"
echo "$cpu_line"
echo "observe (now), harness: $(sed 's/^stats //' "$tmp/st.obs")"
