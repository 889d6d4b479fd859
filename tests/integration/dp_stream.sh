#!/usr/bin/env bash
# A 200 MiB response streamed through the agent to a flagged caller: every byte arrives and
# the agent's peak RSS stays bounded (backpressure, no buffering of the body). The same for a
# response no rule covers, which goes socket to socket by splice(2) (zero copy), and for a
# 101 Upgrade tunnel echoing 32 MiB both ways.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
dp_policy pii closed 'app-*' 'none' $DP_SPORT
# The tunnel below is an explicit choice of the policy (tunnels: pass), counted.
DP_SPEC_EXTRA=' "tunnels": "pass",' DP_DIRECTIONS='"request"' \
	dp_policy upload closed 'app-*' 'none' $((DP_SPORT + 1))
dp_pod app-a 1
dp_agent_start --idle-timeout 2 || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pod's netns" dp_wait_listener app-a
hwm() { awk '/VmHWM/ { print $2 }' /proc/$DP_AGENT_PID/status; }
# mem_check NAME KIB LIMIT_MIB: a memory bound, skipped for a sanitizer build of the agent (ASan
# keeps freed memory in its quarantine, so its resident size says nothing about the agent's).
mem_check() {
	if dp_sanitized; then
		echo "ok - $1 # SKIP sanitizer build"
	else
		check "$1" test "$2" -lt $(($3 * 1024))
	fi
}
before=$(hwm)
steered0=$(grep -c "steered connection to" "$DP_DIR/agent.log")
bytes=$(dp_in app-a sh -c "curl -s --max-time 150 http://10.211.1.1:$DP_SPORT/big/200 | wc -c")
after=$(hwm)
check "200 MiB streamed through the agent intact ($bytes bytes)" test "$bytes" -eq $((200 * 1024 * 1024))
check "the stream went through the agent" test "$(grep -c "steered connection to" "$DP_DIR/agent.log")" -gt "$steered0"
mem_check "agent peak RSS grew by less than 48 MiB ($before -> $after KiB)" $((after - before)) 48
# A slow reader: the agent must stop reading the server rather than queue the body.
before=$(hwm)
bytes=$(dp_in app-a sh -c "curl -s --max-time 60 --limit-rate 25M http://10.211.1.1:$DP_SPORT/big/50 | wc -c")
after=$(hwm)
check "slow reader: 50 MiB intact ($bytes bytes)" test "$bytes" -eq $((50 * 1024 * 1024))
mem_check "slow reader: agent peak RSS grew by less than 16 MiB ($before -> $after KiB)" $((after - before)) 16
# Large masked bodies are not held: 16 keep-alive connections each get a 1 MiB masked body,
# streamed chunked (only bodies up to 64 KiB are held for an exact Content-Length), then stay
# open and quiet. The agent's resident size must come back down while they are still
# connected (no send queue keeps a body's size).
rss() { awk '/VmRSS/ { print $2 }' /proc/$DP_AGENT_PID/status; }
before=$(rss)
rm -f "$DP_DIR/held.done"
dp_in app-a python3 -c '
import http.client, sys, threading, time
ok = []
def one():
    c = http.client.HTTPConnection("10.211.1.1", '$DP_SPORT', timeout=30)
    c.request("GET", "/big/1")
    r = c.getresponse()
    n = len(r.read())
    ok.append(n == 1 << 20 and r.getheader("Transfer-Encoding") == "chunked")
    time.sleep(6)
ts = [threading.Thread(target=one) for _ in range(16)]
for t in ts:
    t.start()
while len(ok) < 16:
    time.sleep(0.05)
open(sys.argv[1], "w").write("%d\n" % sum(ok))
for t in ts:
    t.join()' "$DP_DIR/held.done" &
held=$!
for _ in $(seq 200); do [[ -s $DP_DIR/held.done ]] && break; sleep 0.1; done
sleep 0.5
after=$(rss)
check "large bodies: 16 x 1 MiB streamed chunked ($(cat "$DP_DIR/held.done" 2>/dev/null | tr -d '\n') ok)" \
	test "$(cat "$DP_DIR/held.done" 2>/dev/null)" = 16
mem_check "large bodies: resident size back within 8 MiB while the connections stay open ($before -> $after KiB)" \
	$((after - before)) 8
wait $held

# Zero copy: the upload policy covers requests only, so a response body from that port goes
# from the server's socket to the app's through a pipe, never through the agent's memory
# (except under --splice, whose app sends are budgeted and copied).
big_md5() { python3 -c '
import hashlib, sys
h = hashlib.md5()
piece = (b"x" * 63 + b"\n") * 1024
for _ in range(int(sys.argv[1]) * 16):
    h.update(piece)
print(h.hexdigest())' "$1"; }
zc0=$(dp_metric 'meshmask_passthrough_spliced_bytes_total\{policy="upload",direction="response"\}')
before=$(hwm)
sum=$(dp_in app-a sh -c "curl -s --max-time 150 http://10.211.1.1:$((DP_SPORT + 1))/big/200 | md5sum")
after=$(hwm)
check "zero copy: 200 MiB uncovered response intact (md5)" test "${sum%% *}" = "$(big_md5 200)"
zc1=$(dp_metric 'meshmask_passthrough_spliced_bytes_total\{policy="upload",direction="response"\}')
if [[ ${DP_AGENT_EXTRA:-} == *--splice* ]]; then
	check "zero copy: off for app sides under --splice ($((zc1 - zc0)) bytes)" test $((zc1 - zc0)) -eq 0
else
	check "zero copy: the body went by splice(2) ($((zc1 - zc0)) bytes)" test $((zc1 - zc0)) -ge $((200 * 1024 * 1024 - 65536))
fi
mem_check "zero copy: agent peak RSS grew by less than 16 MiB ($before -> $after KiB)" $((after - before)) 16
# A slow reader on the splice path: the pipe fills, the agent stops reading that server and
# goes on serving other connections meanwhile.
dp_in app-a sh -c "curl -s --max-time 60 --limit-rate 25M http://10.211.1.1:$((DP_SPORT + 1))/big/50 | md5sum" >"$DP_DIR/slow.md5" &
slow=$!
sleep 0.5
code=$(dp_in app-a curl -s --max-time 10 -o /dev/null -w '%{http_code}' http://10.211.1.1:$((DP_SPORT + 1))/big/1)
check "zero copy, slow reader: another connection is served meanwhile ($code)" test "$code" = 200
wait $slow
sum=$(cat "$DP_DIR/slow.md5")
check "zero copy, slow reader: 50 MiB intact (md5)" test "${sum%% *}" = "$(big_md5 50)"

# A keep-alive connection that passed a large uncovered body keeps its pipe only while busy:
# quiet for 2 s, the sweep closes it (an idle connection holds no spare fds).
pipes() { ls -l /proc/$DP_AGENT_PID/fd 2>/dev/null | grep -c 'pipe:'; }
p0=$(pipes)
dp_in app-a python3 -c '
import http.client, sys, time
c = http.client.HTTPConnection("10.211.1.1", '$((DP_SPORT + 1))', timeout=30)
c.request("GET", "/big/4")
n = len(c.getresponse().read())
open(sys.argv[1], "w").write(str(n))
time.sleep(6)' "$DP_DIR/ka.done" &
ka=$!
for _ in $(seq 100); do [[ -s $DP_DIR/ka.done ]] && break; sleep 0.1; done
p1=$(pipes)
sleep 3.5
p2=$(pipes)
check "zero copy, keep-alive: 4 MiB read" test "$(cat "$DP_DIR/ka.done" 2>/dev/null)" = $((4 * 1024 * 1024))
if [[ ${DP_AGENT_EXTRA:-} == *--splice* ]]; then
	check "zero copy, keep-alive: no pipe under --splice ($p0 -> $p1 pipe fds)" test "$p1" -eq "$p0"
else
	check "zero copy, keep-alive: a pipe while busy ($p0 -> $p1 pipe fds)" test "$p1" -gt "$p0"
fi
check "zero copy, keep-alive: the pipe is closed once the connection is quiet ($p1 -> $p2)" test "$p2" -eq "$p0"
wait $ka

# A tunnel (101 Upgrade) both ways: 32 MiB of random bytes echoed back intact, moved by
# splice(2) in both directions (only the server side under --splice).
zreq0=$(dp_metric 'meshmask_passthrough_spliced_bytes_total\{policy="upload",direction="request"\}')
zres0=$(dp_metric 'meshmask_passthrough_spliced_bytes_total\{policy="upload",direction="response"\}')
res=$(dp_in app-a python3 -c '
import hashlib, os, socket, threading
s = socket.create_connection(("10.211.1.1", '$((DP_SPORT + 1))'), timeout=60)
s.sendall(b"GET /upgrade-echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
data = os.urandom(32 << 20)
def send():
    for i in range(0, len(data), 1 << 20):
        s.sendall(data[i:i + (1 << 20)])
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
h, n = hashlib.sha256(), 0
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    h.update(b)
    n += len(b)
t.join()
print(head.split(b"\r\n")[0].decode(), n, h.hexdigest() == hashlib.sha256(data).hexdigest())')
check "tunnel: 32 MiB echoed back intact through the agent ($res)" test "$res" = "HTTP/1.1 101 Switching Protocols $((32 << 20)) True"
check "tunnel: counted as opened and as passed unmasked (tunnels: pass)" test \
	"$(dp_metric 'meshmask_tunnels_total\{policy="upload",kind="upgrade",action="opened"\}')" -ge 1 -a \
	"$(dp_metric 'meshmask_passed_unmasked_total\{policy="upload",direction="response",reason="tunnel"\}')" -ge 1
check "tunnel: audited" grep -q '"event":"tunnel".*"policy":"upload".*"action":"opened"' "$DP_DIR/audit.log"
zreq=$(( $(dp_metric 'meshmask_passthrough_spliced_bytes_total\{policy="upload",direction="request"\}') - zreq0 ))
zres=$(( $(dp_metric 'meshmask_passthrough_spliced_bytes_total\{policy="upload",direction="response"\}') - zres0 ))
if [[ ${DP_AGENT_EXTRA:-} == *--splice* ]]; then
	check "tunnel: spliced to the server, copied to the app under --splice ($zreq / $zres bytes)" \
		test "$zreq" -gt $((16 << 20)) -a "$zres" -eq 0
else
	check "tunnel: spliced both ways ($zreq / $zres bytes)" test "$zreq" -gt $((16 << 20)) -a "$zres" -gt $((16 << 20))
fi

# An uncovered close-delimited body cut by the server's reset, on the splice path: the app
# sees a reset too (curl 56), not a clean end.
dp_in app-a curl -s --max-time 5 http://10.211.1.1:$((DP_SPORT + 1))/reset >/dev/null
rc=$?
check "zero copy: an upstream reset mid-body reaches the app as a reset (curl rc $rc)" test $rc -eq 56

# Upload to a server that does not read for 1 s: the agent stops reading the client.
before=$(hwm)
res=$(dp_in app-a python3 -c '
import http.client
n = 100 * 1024 * 1024
def gen():
    chunk = b"a" * 65536
    for _ in range(n // 65536):
        yield chunk
c = http.client.HTTPConnection("10.211.1.1", '$((DP_SPORT + 1))', timeout=60)
c.request("POST", "/sink", body=gen(), headers={"Content-Type": "text/plain", "Content-Length": str(n)})
print(c.getresponse().read().decode())')
after=$(hwm)
check "upload: 100 MiB reach a slow server intact ($res)" test "$res" = $((100 * 1024 * 1024))
mem_check "upload: agent peak RSS grew by less than 16 MiB ($before -> $after KiB)" $((after - before)) 16

# Idle timeout (--idle-timeout 2): a connection that says nothing is closed by the agent.
res=$(dp_in app-a python3 -c '
import socket, time
s = socket.create_connection(("10.211.1.1", '$DP_SPORT'), timeout=10)
t = time.time()
try:
    d = s.recv(1)
except ConnectionResetError:
    d = b""
except socket.timeout:
    d = None
print("closed %.1f" % (time.time() - t) if d == b"" else "open")')
check "idle connection closed by the agent ($res)" bash -c '[[ $1 == closed* ]] && (( $(echo "${1#closed } < 5" | bc) ))' _ "$res"
dp_check_splice
dp_done
