# shellcheck shell=bash
# Shared set-up of the TLS integration scripts (sourced): skips (exit 77) without root, a
# required tool or a cgroup v2 mount; then a unique id, a temporary directory, cleanup of
# background processes, cgroups and $extra_cleanup paths, and TAP helpers.
#   tls_setup TOOL...        call first; sets py, cgroot, id, tmp
tls_setup() {
	[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root"; exit 77; }
	py=$(command -v /usr/bin/python3 python3 | head -1)
	local tool
	for tool in "$@" "$py"; do
		command -v "$tool" >/dev/null || { echo "SKIP: $tool missing"; exit 77; }
	done
	cgroot=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
	[[ -n $cgroot ]] || { echo "SKIP: no cgroup v2 mount"; exit 77; }
	id="$$-$RANDOM"
	tmp=$(mktemp -d)
	pids=()
	cgroups=()
	extra_cleanup=()
	fail=0
	n=0
	trap tls_cleanup EXIT
}

tls_cleanup() {
	local p c
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for c in "${cgroups[@]}"; do rmdir "$cgroot/$c" 2>/dev/null; done
	rm -rf "$tmp" "${extra_cleanup[@]}"
}

ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; fail=1; }
check() { # description command...
	local d=$1
	shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
mkcg() { mkdir -p "$cgroot/$1" && cgroups+=("$1"); }
# Run a command inside cgroup $1.
in_cg() {
	local cg=$1
	shift
	bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cgroot/$cg" "$@"
}
# The same, the command exec'd once the agent has probed the process (probes follow it across
# exec), so the command is captured from its first instruction: with SETTLE_LOG (the agent's or
# harness's debug log) when the log says so (at most 10 s: a loaded machine), and 0.3 s after
# the move in any case. in_cg races the agent's window between a process becoming covered and
# its probes (docs/tls.md).
in_cg_settled() {
	local cg=$1
	shift
	SETTLE_LOG=${SETTLE_LOG:-} bash -c 'echo $$ > "$0/cgroup.procs" || exit 1
		if [[ -n $SETTLE_LOG ]]; then
			for _ in $(seq 200); do
				grep -aq "pid $$ probed through" "$SETTLE_LOG" && break
				sleep 0.05
			done
		fi
		sleep 0.3
		exec "$@"' "$cgroot/$cg" "$@"
}
# The same in the background; $spawned is the command's own pid (bash execs it).
spawn_in_cg() {
	local cg=$1
	shift
	bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cgroot/$cg" "$@" &
	spawned=$!
	pids+=("$spawned")
}

# tls_server_start CGROUP [BODY]: a self-signed certificate ($tmp/cert.pem, $tmp/key.pem) and
# tls_server.py in cgroup CGROUP (made by mkcg) serving BODY at /; sets port and url.
tls_server_start() {
	local cg=$1
	shift
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
		-days 1 -subj /CN=localhost >/dev/null 2>&1 || { not_ok "certificate"; return 1; }
	spawn_in_cg "$cg" "$py" "$(dirname "${BASH_SOURCE[0]}")/tls_server.py" "$tmp/cert.pem" \
		"$tmp/key.pem" "$@" >"$tmp/port" 2>"$tmp/server.err"
	for _ in $(seq 50); do [[ -s $tmp/port ]] && break; sleep 0.1; done
	port=$(cat "$tmp/port")
	[[ -n $port ]] || { not_ok "server did not start"; cat "$tmp/server.err"; return 1; }
	url="https://127.0.0.1:$port"
}
