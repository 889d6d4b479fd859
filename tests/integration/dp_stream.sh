#!/usr/bin/env bash
# A 200 MiB response streamed through the agent to a flagged caller: every byte arrives and
# the agent's peak RSS stays bounded (backpressure, no buffering of the body).
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
dp_policy pii closed 'app-*' 'none' $DP_SPORT
DP_DIRECTIONS='"request", "response"' dp_policy upload closed 'app-*' 'none' $((DP_SPORT + 1))
dp_pod app-a 1
dp_agent_start --idle-timeout 2 || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pod's netns" dp_wait_listener app-a
hwm() { awk '/VmHWM/ { print $2 }' /proc/$DP_AGENT_PID/status; }
before=$(hwm)
steered0=$(grep -c "steered connection to" "$DP_DIR/agent.log")
bytes=$(dp_in app-a sh -c "curl -s --max-time 150 http://10.211.1.1:$DP_SPORT/big/200 | wc -c")
after=$(hwm)
check "200 MiB streamed through the agent intact ($bytes bytes)" test "$bytes" -eq $((200 * 1024 * 1024))
check "the stream went through the agent" test "$(grep -c "steered connection to" "$DP_DIR/agent.log")" -gt "$steered0"
check "agent peak RSS grew by less than 48 MiB ($before -> $after KiB)" test $((after - before)) -lt $((48 * 1024))
# A slow reader: the agent must stop reading the server rather than queue the body.
before=$(hwm)
bytes=$(dp_in app-a sh -c "curl -s --max-time 60 --limit-rate 25M http://10.211.1.1:$DP_SPORT/big/50 | wc -c")
after=$(hwm)
check "slow reader: 50 MiB intact ($bytes bytes)" test "$bytes" -eq $((50 * 1024 * 1024))
check "slow reader: agent peak RSS grew by less than 16 MiB ($before -> $after KiB)" test $((after - before)) -lt $((16 * 1024))
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
check "upload: agent peak RSS grew by less than 16 MiB ($before -> $after KiB)" test $((after - before)) -lt $((16 * 1024))

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
