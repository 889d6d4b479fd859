#!/usr/bin/env bash
# Admin API over a real socket (meshmask-agent --no-bpf, curl, python3 and the meshmask CLI):
# every endpoint and error code, auth bypass attempts, oversized and malformed bodies, bounded
# connections, slow clients (the whole-request deadline), concurrent pushes with If-Match, persistence across kill -9, a
# ConfigMap-style symlink swap, a push while a keep-alive connection is in use, HTTPS, the
# CLI, and an audit log that holds none of the secrets sent. TAP output.
# usage: admin_api.sh MESHMASK_AGENT MESHMASK_CLI
set -uo pipefail
AGENT=${1:?meshmask-agent}
CLI=${2:?meshmask}
for t in curl python3 openssl; do
	command -v $t >/dev/null || { echo "1..0 # SKIP $t not installed"; exit 77; }
done

T=$(mktemp -d /tmp/meshmask-admin-api.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
# Every CLI run's output is kept too, to check at the end that none of it holds the token.
cat >"$T/cli" <<EOF
#!/usr/bin/env bash
o=\$(mktemp -p "$T") e=\$(mktemp -p "$T")
"$CLI" "\$@" >"\$o" 2>"\$e"
rc=\$?
cat "\$o"; cat "\$e" >&2; cat "\$o" "\$e" >>"$T/cli-all.log"; rm -f "\$o" "\$e"
exit \$rc
EOF
chmod +x "$T/cli"
CLI=$T/cli

n=0
fails=0
ok() { # ok COND-STATUS NAME
	n=$((n + 1))
	if [[ $1 == 0 ]]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
is() { # is GOT WANT NAME
	n=$((n + 1))
	if [[ "$1" == "$2" ]]; then echo "ok $n - $3"; else
		echo "not ok $n - $3"; echo "#   got  '$1'"; echo "#   want '$2'"; fails=$((fails + 1)); fi
}
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

TOKEN=tok-$RANDOM-$RANDOM-secret
echo "$TOKEN" >"$T/token"
AUTH="Authorization: Bearer $TOKEN"
JSON="Content-Type: application/json"
mkdir -p "$T/cm" "$T/state"

policy() { # policy NAME MASKCHAR
	cat <<EOF
{"apiVersion":"meshmask.io/v1alpha1","kind":"MaskingPolicy","metadata":{"name":"$1"},
 "spec":{"selector":{"destinations":[{"port":8080}]},
  "rules":[{"name":"ssn","fields":["\$..ssn"],"action":{"type":"mask","keepLast":4,"char":"$2"}},
           {"name":"cards","entities":["CREDIT_CARD"],"action":{"type":"mask","keepLast":4}},
           {"name":"mail","entities":["EMAIL_ADDRESS"],"action":{"type":"redact"}}]}}
EOF
}
# ConfigMap layout: file -> ..data/file, ..data -> ..<version>
mkdir "$T/cm/..v1"
policy cm-pol '*' >"$T/cm/..v1/cm-pol.json"
ln -s ..v1 "$T/cm/..data"
ln -s ..data/cm-pol.json "$T/cm/cm-pol.json"

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start_agent() {
	"$AGENT" --no-bpf --policies "$T/cm" --state-dir "$T/state" --admin 127.0.0.1:$PORT \
		--token-file "$T/token" --audit-log "$T/audit.log" "$@" >>"$T/agent.out" 2>>"$T/agent.err" &
	AGENT_PID=$!
	PIDS+=($AGENT_PID)
	for _ in $(seq 100); do
		curl -s -o /dev/null "$URL/healthz" && return 0
		sleep 0.05
	done
	echo "# agent did not start"; cat "$T/agent.err" | sed 's/^/# /'
	return 1
}
# A short whole-request deadline so that the slow clients below are cut while the rest runs.
REQ_TIMEOUT=6
start_agent --admin-request-timeout $REQ_TIMEOUT || { echo "1..0 # agent failed"; exit 1; }

code() { curl -s -o "$T/body" -D "$T/hdrs" -w '%{http_code}' "$@"; }
hdr() { grep -i "^$1:" "$T/hdrs" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
errbody() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if isinstance(d.get("error"),str) and isinstance(d.get("details"),list) else 1)' "$T/body"; }

# --- slow clients, checked at the end: half a request line, then a byte every 2 s -------
python3 - "$PORT" >"$T/slow.out" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /heal")
t = time.time()
s.settimeout(40)
try:
    d = s.recv(100)
except Exception as e:
    d = b"timeout"
print("closed" if d == b"" else "open", round(time.time() - t))
EOF
SLOW_PID=$!
python3 - "$PORT" >"$T/trickle.out" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
req, t, state = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100, time.time(), "open"
for b in req:  # one byte every 2 s: never idle for the 15 s idle timeout
    try:
        s.sendall(bytes([b]))
        s.settimeout(2)
        if s.recv(100) == b"":
            state = "closed"
            break
    except socket.timeout:
        pass
    except OSError:
        state = "closed"
        break
    if time.time() - t > 40:
        break
print(state, round(time.time() - t))
EOF
TRICKLE_PID=$!

# --- health, readiness, metrics ------------------------------------------------------------
is "$(code $URL/healthz)" 200 "GET /healthz"
is "$(code $URL/readyz)" 200 "GET /readyz (policies loaded, no BPF)"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
assert d["ready"] and d["bpf"] == {"enabled": False, "attached": False}, d
assert d["policies"]["inForce"] == d["policies"]["fromFiles"] == 1, d
m = {x["mode"]: x for x in d["tls"]["enforceModes"]}
assert m["off"]["available"] and not m["inplace"]["available"] and "--no-bpf" in m["inplace"]["reason"], d
assert not m["stop-rewrite"]["available"] and d["tls"]["capture"] is False, d' "$T/body"
ok $? "readyz body: BPF state, policies, TLS enforce modes and why they are unavailable"
is "$(code $URL/metrics)" 200 "GET /metrics"
[[ $(hdr Content-Type) == text/plain* ]]; ok $? "metrics content type"
is "$(code -X POST $URL/healthz)" 405 "POST /healthz is 405"
is "$(hdr Allow)" "GET, HEAD" "Allow header"
errbody; ok $? "405 has a JSON error body"
is "$(code $URL/nope)" 404 "unknown path 404"
errbody; ok $? "404 has a JSON error body"

# --- auth and bypass attempts ---------------------------------------------------------------
is "$(code $URL/v1/policies)" 401 "list without a token"
[[ $(hdr WWW-Authenticate) == Bearer* ]]; ok $? "WWW-Authenticate: Bearer"
errbody; ok $? "401 has a JSON error body"
is "$(code -H "$AUTH" $URL/v1/policies)" 200 "list with the token"
for bad in "Basic $(printf %s "$TOKEN" | base64)" "Bearer" "Bearer ${TOKEN%?}" "Bearer ${TOKEN}x" \
	"Bearer ${TOKEN^^}" "$TOKEN" "Bearer $TOKEN $TOKEN"; do
	is "$(code -H "Authorization: $bad" $URL/v1/policies)" 401 "refused: Authorization: ${bad//$TOKEN/TOKEN}"
done
is "$(code -H "Authorization: Bearer wrong" -H "$AUTH" $URL/v1/policies)" 401 \
	"first of two Authorization headers decides"
for p in //v1/policies /v1//policies /v1/policies/ /V1/policies "/v1/policies/%2e%2e" \
	"/healthz/../v1/policies" "/v1/policies/../policies/cm-pol" "/v1/policies/cm-pol%00"; do
	c=$(code --path-as-is "$URL$p")
	[[ $c != 2* ]]; ok $? "no token, odd path $p -> $c (not 2xx)"
done
c=$(printf 'GET /v1/policies HTTP/1.0\r\n\r\n' | python3 -c '
import socket,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); s.sendall(sys.stdin.buffer.read())
print(s.recv(100).split()[1].decode())' "$PORT")
is "$c" 401 "HTTP/1.0 without Host and token: 401"

# --- PUT / GET / DELETE -------------------------------------------------------------------
policy pushed X >"$T/pushed.json"
is "$(code -X PUT -H "$AUTH" -H "$JSON" --data-binary @"$T/pushed.json" $URL/v1/policies/pushed)" 201 "PUT creates: 201"
ETAG=$(hdr ETag)
[[ $ETAG =~ ^\"[0-9a-f]{64}\"$ ]]; ok $? "ETag is a quoted sha256"
is "$(code -H "$AUTH" $URL/v1/policies/pushed)" 200 "GET policy"
is "$(hdr ETag)" "$ETAG" "GET returns the same ETag"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d["metadata"]["name"]!="pushed")' "$T/body"
ok $? "GET returns the policy document"
is "$(code -X PUT -H "$AUTH" -H "$JSON" -H 'If-Match: "0000"' --data-binary @"$T/pushed.json" $URL/v1/policies/pushed)" 412 "stale If-Match: 412"
errbody; ok $? "412 has a JSON error body"
is "$(code -X PUT -H "$AUTH" -H "$JSON" -H "If-Match: $ETAG" --data-binary @"$T/pushed.json" $URL/v1/policies/pushed)" 200 "matching If-Match: 200"
is "$(code -X PUT -H "$AUTH" -H 'Content-Type: text/yaml' --data-binary @"$T/pushed.json" $URL/v1/policies/pushed)" 415 "wrong Content-Type: 415"
errbody; ok $? "415 has a JSON error body"
policy cm-pol Y >"$T/cm-pol.json"
is "$(code -X PUT -H "$AUTH" -H "$JSON" --data-binary @"$T/cm-pol.json" $URL/v1/policies/cm-pol)" 409 "pushing over a ConfigMap policy: 409"
errbody; ok $? "409 has a JSON error body"
is "$(code -X DELETE -H "$AUTH" $URL/v1/policies/cm-pol)" 409 "deleting a ConfigMap policy: 409"
is "$(code -X PUT -H "$AUTH" -H "$JSON" --data-binary @"$T/pushed.json" $URL/v1/policies/other)" 400 "URL name differs from metadata.name: 400"
grep -q '"pointer":"/metadata/name"' "$T/body"; ok $? "error points at /metadata/name"
is "$(code -X PUT -H "$AUTH" -H "$JSON" --data '{"apiVersion":"meshmask.io/v1alpha1","kind":"MaskingPolicy","metadata":{"name":"bad"},"spec":{"rules":[{"name":"r","fields":["$.a"],"action":{"type":"boom"}}]}}' $URL/v1/policies/bad)" 400 "invalid policy: 400"
grep -q '"pointer":"/spec/rules/0/action/type"' "$T/body"; ok $? "error has the JSON pointer"
is "$(code -X PUT -H "$AUTH" -H "$JSON" --data '{"apiVersion": "meshmask.io/v1alpha1", "kind":' $URL/v1/policies/bad)" 400 "truncated JSON: 400"
grep -q '"line":1' "$T/body"; ok $? "syntax error has a line"
is "$(code -X PUT -H "$AUTH" -H "$JSON" --data-binary $'\xff\xfe{"a":1}' $URL/v1/policies/bad)" 400 "invalid UTF-8: 400"
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >"$T/big"
is "$(code -X PUT -H "$AUTH" -H "$JSON" --data-binary @"$T/big" $URL/v1/policies/big)" 413 "2 MiB body: 413"
errbody; ok $? "413 has a JSON error body"
c=$(code -X PUT -H "$AUTH" -H "$JSON" -H 'Transfer-Encoding: chunked' --data-binary @"$T/big" $URL/v1/policies/big)
[[ $c == 413 || $c == 000 ]]; ok $? "2 MiB chunked body refused ($c)"
c=$(code -H "$AUTH" -H "X-Big: $(head -c 100000 /dev/zero | tr '\0' a)" $URL/v1/policies)
[[ $c == 4* ]]; ok $? "100 KB header refused ($c)"
is "$(code -X PATCH -H "$AUTH" $URL/v1/policies/pushed)" 405 "PATCH: 405"
is "$(code -H "$AUTH" $URL/v1/policies/absent)" 404 "GET absent: 404"

# --- validate and dry-run -------------------------------------------------------------------
is "$(code -X POST -H "$AUTH" -H "$JSON" --data-binary @"$T/pushed.json" "$URL/v1/policies:validate")" 200 "validate ok"
policy validated-only X >"$T/v.json"
is "$(code -X POST -H "$AUTH" -H "$JSON" --data-binary @"$T/v.json" "$URL/v1/policies:validate")" 200 "validate another"
is "$(code -H "$AUTH" $URL/v1/policies/validated-only)" 404 "validated policy is not applied"
is "$(code -X POST -H "$AUTH" -H "$JSON" --data '{"kind":"MaskingPolicy"}' "$URL/v1/policies:validate")" 400 "validate error: 400"
grep -q '"pointer"' "$T/body"; ok $? "validate errors carry JSON pointers"

SSN=123-45-6789
CARD="4111 1111 1111 1111"
EMAIL=jane.doe.$RANDOM@example.com
BODY="{\"user\":{\"ssn\":\"$SSN\",\"card\":\"$CARD\",\"note\":\"mail $EMAIL\"}}"
is "$(code -X POST -H "$AUTH" -H "$JSON" --data "$BODY" "$URL/v1/mask?policy=pushed")" 200 "dry-run"
grep -q '"ssn":"XXX-XX-6789"' "$T/body" && grep -q '1111' "$T/body" && ! grep -q "$SSN\|$CARD\|$EMAIL" "$T/body"
ok $? "dry-run masks every secret"
is "$(hdr X-Meshmask-Values)" 3 "X-Meshmask-Values"
is "$(code -X POST -H "$AUTH" -H 'Content-Type: application/octet-stream' --data x "$URL/v1/mask?policy=pushed")" 415 "dry-run of an unknown type: 415"
is "$(code -X POST -H "$AUTH" -H "$JSON" --data '{}' "$URL/v1/mask?policy=absent")" 404 "dry-run unknown policy: 404"
is "$(code -X POST -H "$AUTH" -H "$JSON" --data '{}' "$URL/v1/mask")" 400 "dry-run without policy: 400"
is "$(code -X POST -H "$JSON" --data "$BODY" "$URL/v1/mask?policy=pushed")" 401 "dry-run needs the token"

# --- bounded connections -------------------------------------------------------------------
served=$(python3 - "$PORT" <<'EOF'
import socket, sys
socks, served = [], 0
for i in range(80):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        if s.recv(100).startswith(b"HTTP/1.1 200"):
            served += 1
        socks.append(s)
    except Exception:
        pass
print(served)
EOF
)
[[ $served -ge 1 && $served -lt 80 ]]; ok $? "connections are bounded ($served of 80 held open were served)"
is "$(code $URL/healthz)" 200 "serving again once they close"

# --- concurrent pushes with If-Match -------------------------------------------------------
code -H "$AUTH" $URL/v1/policies/pushed >/dev/null
ETAG=$(hdr ETag)
RACE=()
for i in $(seq 8); do
	policy pushed "$i" >"$T/c$i.json"
	curl -s -o /dev/null -w '%{http_code}\n' -X PUT -H "$AUTH" -H "$JSON" -H "If-Match: $ETAG" \
		--data-binary @"$T/c$i.json" $URL/v1/policies/pushed >"$T/race$i" &
	RACE+=($!)
done
wait "${RACE[@]}"
is "$(cat "$T"/race* | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')" "200x1 412x7 " \
	"8 concurrent pushes with one If-Match: one wins, 7 get 412"

# --- a push while a keep-alive connection is in use -----------------------------------------
python3 - "$PORT" "$TOKEN" "$T" >"$T/ka.out" 2>&1 <<'EOF'
import http.client, json, sys
port, token, t = int(sys.argv[1]), sys.argv[2], sys.argv[3]
H = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
doc = lambda c: open(t + "/pushed.json").read().replace('"char":"X"', '"char":"%s"' % c)
body = '{"ssn":"123-45-6789"}'
ka = http.client.HTTPConnection("127.0.0.1", port)
other = http.client.HTTPConnection("127.0.0.1", port)
other.request("PUT", "/v1/policies/ka", doc("A").replace('"pushed"', '"ka"'), H)
r = other.getresponse(); r.read(); assert r.status == 201, r.status
ka.request("POST", "/v1/mask?policy=ka", body, H)
r = ka.getresponse(); first = r.read().decode(); sock = ka.sock
other.request("PUT", "/v1/policies/ka", doc("B").replace('"pushed"', '"ka"'), H)
r = other.getresponse(); r.read(); assert r.status == 200, r.status
ka.request("POST", "/v1/mask?policy=ka", body, H)
r = ka.getresponse(); second = r.read().decode()
same = ka.sock is sock and sock is not None
print(first.strip(), second.strip(), "same-connection" if same else "reconnected")
EOF
is "$(cat "$T/ka.out")" '{"ssn":"AAA-AA-6789"} {"ssn":"BBB-BB-6789"} same-connection' \
	"a push takes effect on the next request of a keep-alive connection"

# --- ConfigMap symlink swap ---------------------------------------------------------------
code -H "$AUTH" $URL/v1/policies/cm-pol >/dev/null
CM1=$(hdr ETag)
mkdir "$T/cm/..v2"
policy cm-pol '#' >"$T/cm/..v2/cm-pol.json"
ln -s ..v2 "$T/cm/..data_tmp" && mv -T "$T/cm/..data_tmp" "$T/cm/..data" && rm -rf "$T/cm/..v1"
for _ in $(seq 100); do
	code -H "$AUTH" $URL/v1/policies/cm-pol >/dev/null
	[[ $(hdr ETag) != "$CM1" ]] && break
	sleep 0.05
done
CM2=$(hdr ETag)
[[ $CM2 != "$CM1" ]]; ok $? "ConfigMap symlink swap reloads the policy"
rej0=$(curl -s $URL/metrics | awk '/^meshmask_policy_rejections_total\{source="file"\}/ {print $2}')
mkdir "$T/cm/..v3"
echo '{"apiVersion": "meshmask.io/v1alpha1", broken' >"$T/cm/..v3/cm-pol.json"
ln -s ..v3 "$T/cm/..data_tmp" && mv -T "$T/cm/..data_tmp" "$T/cm/..data"
for _ in $(seq 100); do
	rej=$(curl -s $URL/metrics | awk '/^meshmask_policy_rejections_total\{source="file"\}/ {print $2}')
	[[ ${rej:-0} -gt ${rej0:-0} ]] && break
	sleep 0.05
done
[[ ${rej:-0} -gt ${rej0:-0} ]]; ok $? "broken ConfigMap version counted as a rejection"
code -H "$AUTH" $URL/v1/policies/cm-pol >/dev/null
is "$(hdr ETag)" "$CM2" "broken version refused, previous stays in force"
grep -q "cm-pol.json" "$T/agent.err" && grep -q "rejected" "$T/agent.err"
ok $? "broken file's error logged"
code -H "$AUTH" $URL/v1/policies >/dev/null
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); r=d["rejected"]
assert len(r) == 1 and r[0]["file"] == "cm-pol.json" and r[0]["name"] == "cm-pol", r
assert r[0]["previousVersionInForce"] and chr(34) + r[0]["etagInForce"] + chr(34) == sys.argv[2], r
assert r[0]["errors"][0]["line"] == 1 and r[0]["errors"][0]["column"] > 0, r
assert r[0]["time"].endswith("Z"), r
assert [p["etag"] for p in d["policies"] if p["name"] == "cm-pol"] == [r[0]["etagInForce"]], d' "$T/body" "$CM2"
ok $? "GET /v1/policies lists the refused file: error location, time, the version still in force"

# --- the CLI --------------------------------------------------------------------------------
policy cli-pol X >"$T/cli-pol.json"
"$CLI" policy push --agent $URL --token-file "$T/token" "$T/cli-pol.json" >"$T/cli.out" 2>&1
ok $? "meshmask policy push"
grep -q "cli-pol created" "$T/cli.out"; ok $? "push reports creation"
"$CLI" policy list --agent $URL --token-file "$T/token" >"$T/cli.out" 2>&1
grep -q "^cli-pol .*api" "$T/cli.out" && grep -q "^cm-pol .*file" "$T/cli.out"; ok $? "meshmask policy list"
grep -q "^cm-pol.json: policy cm-pol, refused since .*Z, previous version in force" "$T/cli.out" &&
	grep -q "^cm-pol.json:1:[0-9]*: " "$T/cli.out"
ok $? "meshmask policy list shows the refused file and its error"
"$CLI" policy get --agent $URL --token-file "$T/token" cli-pol >"$T/cli.out" 2>"$T/cli.err"
ok $? "meshmask policy get"
grep -q '"cli-pol"' "$T/cli.out"; ok $? "get prints the document"
CLI_ETAG=$(awk '/^etag/ {print $2}' "$T/cli.err")
"$CLI" policy delete --if-match 0000 --agent $URL --token-file "$T/token" cli-pol >/dev/null 2>&1
is $? 5 "delete with a stale --if-match: exit 5"
"$CLI" policy delete --if-match "$CLI_ETAG" --agent $URL --token-file "$T/token" cli-pol >/dev/null 2>&1
is $? 0 "meshmask policy delete"
echo '{"apiVersion":"meshmask.io/v1alpha1","kind":"MaskingPolicy","metadata":{"name":"x"},"spec":{"rules":[{"name":"r","action":{"type":"mask"}}]}}' >"$T/bad.json"
"$CLI" policy push --agent $URL --token-file "$T/token" "$T/bad.json" >"$T/cli.out" 2>&1
is $? 1 "push of an invalid policy: exit 1"
grep -q "/spec/rules/0" "$T/cli.out"; ok $? "CLI prints the JSON pointer"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["metadata"]["annotations"]={"pad":"x"*2000000}; json.dump(d,open(sys.argv[2],"w"))' "$T/cli-pol.json" "$T/huge.json"
"$CLI" policy push --agent $URL --token-file "$T/token" "$T/huge.json" >"$T/cli.out" 2>&1
is "$? $(grep -o 413 "$T/cli.out")" "5 413" "CLI push of a 2 MiB policy: the agent's 413 is reported"
echo wrong >"$T/wrong"
"$CLI" policy list --agent $URL --token-file "$T/wrong" >/dev/null 2>&1
is $? 5 "wrong token: exit 5"
"$CLI" policy list --agent http://127.0.0.1:1 --token-file "$T/token" >/dev/null 2>"$T/cli.err"
is "$? $(cat "$T/cli.err")" "3 meshmask: connecting to 127.0.0.1:1: Connection refused" "no agent: exit 3, connection refused"

# --- slow clients ----------------------------------------------------------------------------
wait $SLOW_PID $TRICKLE_PID
read -r state secs <"$T/slow.out"
[[ $state == closed && $secs -ge $((REQ_TIMEOUT - 1)) && $secs -le $((REQ_TIMEOUT + 4)) ]]
ok $? "half a request line, then nothing: closed after ${secs}s (deadline ${REQ_TIMEOUT}s)"
read -r state secs <"$T/trickle.out"
[[ $state == closed && $secs -ge $((REQ_TIMEOUT - 1)) && $secs -le $((REQ_TIMEOUT + 4)) ]]
ok $? "a byte every 2 s (never idle): closed after ${secs}s (deadline ${REQ_TIMEOUT}s)"
to=$(curl -s $URL/metrics | awk '/^meshmask_admin_request_timeouts_total / {print $2}')
[[ ${to:-0} -ge 2 ]]; ok $? "cut connections counted (meshmask_admin_request_timeouts_total $to)"
"$AGENT" --admin-request-timeout 0 --no-bpf 2>/dev/null
is $? 2 "--admin-request-timeout 0 refused"

# --- persistence across kill -9 -------------------------------------------------------------
# Back to a valid ConfigMap version first: a broken file has no previous version after a restart.
ln -s ..v2 "$T/cm/..data_tmp" && mv -T "$T/cm/..data_tmp" "$T/cm/..data"
sleep 0.5
curl -s -H "$AUTH" $URL/v1/policies | python3 -c 'import json,sys; print(sorted((p["name"],p["etag"]) for p in json.load(sys.stdin)["policies"]))' >"$T/before"
kill -9 $AGENT_PID
wait $AGENT_PID 2>/dev/null
start_agent
ok $? "agent restarts after kill -9"
curl -s -H "$AUTH" $URL/v1/policies | python3 -c 'import json,sys; print(sorted((p["name"],p["etag"]) for p in json.load(sys.stdin)["policies"]))' >"$T/after"
is "$(cat "$T/after")" "$(cat "$T/before")" "same policies and etags after kill -9 and restart"
[[ -z $(find "$T/state" -name '.*.tmp') ]]; ok $? "no temp files left in the state dir"

# --- audit log holds no secret ----------------------------------------------------------------
grep -q '"policy":"pushed"' "$T/audit.log" && grep -q '"rule":"cards"' "$T/audit.log"
ok $? "dry-runs audited (policy, rule)"
leaks=0
for s in "$SSN" "$CARD" "$EMAIL" "${CARD// /}" 6789 "$TOKEN"; do
	[[ $s == 6789 ]] && continue # the kept last digits are not a secret
	grep -qF -- "$s" "$T/audit.log" "$T/agent.err" "$T/agent.out" && { echo "# leaked: $s"; leaks=$((leaks + 1)); }
done
curl -s $URL/metrics | grep -qF -e "$SSN" -e "$EMAIL" -e "$TOKEN" && leaks=$((leaks + 1))
is $leaks 0 "no secret or token in the audit log, the agent's output or the metrics"

# --- HTTPS ---------------------------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
	-keyout "$T/tls.key" -out "$T/tls.crt" >/dev/null 2>&1
TPORT=$(free_port)
"$AGENT" --no-bpf --policies "$T/cm" --state-dir "$T/state2" --admin 127.0.0.1:$TPORT \
	--token-file "$T/token" --tls-cert "$T/tls.crt" --tls-key "$T/tls.key" --audit-log "$T/audit2.log" \
	>>"$T/agent.out" 2>>"$T/agent.err" &
PIDS+=($!)
for _ in $(seq 100); do curl -s -o /dev/null --cacert "$T/tls.crt" https://127.0.0.1:$TPORT/healthz && break; sleep 0.05; done
is "$(code --cacert "$T/tls.crt" -H "$AUTH" https://127.0.0.1:$TPORT/v1/policies)" 200 "HTTPS with --tls-cert/--tls-key"
c=$(code http://127.0.0.1:$TPORT/healthz)
[[ $c != 200 ]]; ok $? "plain HTTP refused on the HTTPS port ($c)"
"$CLI" policy list --agent https://127.0.0.1:$TPORT --cacert "$T/tls.crt" --token-file "$T/token" >/dev/null 2>&1
is $? 0 "CLI over HTTPS with --cacert"
"$CLI" policy list --agent https://127.0.0.1:$TPORT --token-file "$T/token" >/dev/null 2>&1
is $? 3 "CLI refuses an unknown certificate"

"$CLI" policy list --agent https://localhost:$TPORT --cacert "$T/tls.crt" --token-file "$T/token" >/dev/null 2>&1
is $? 0 "CLI over HTTPS by host name (the certificate's DNS name)"
SSL_CERT_FILE=$T/tls.crt "$CLI" policy list --agent https://127.0.0.1:$TPORT --token-file "$T/token" >/dev/null 2>&1
is $? 0 "CLI over HTTPS trusts \$SSL_CERT_FILE without --cacert"
"$CLI" policy list --agent https://127.0.0.1:$TPORT --insecure --token-file "$T/token" >/dev/null 2>&1
is $? 0 "CLI --insecure accepts an unknown certificate"
"$CLI" policy list --agent https://127.0.0.1:$TPORT --cacert "$T/absent.pem" --token-file "$T/token" 2>"$T/cli.err"
is "$? $(grep -c "^meshmask: TLS with 127.0.0.1:$TPORT: " "$T/cli.err")" "3 1" "CLI --cacert of a missing file: a TLS error, exit 3"
"$CLI" policy list --agent http://127.0.0.1:$TPORT --token-file "$T/token" 2>"$T/cli.err"
# Reset, hang-up or a TLS alert, depending on timing: any of them is one line naming the agent.
is "$? $(grep -c "^meshmask: .*127.0.0.1:$TPORT" "$T/cli.err")" "3 1" "CLI http:// to the HTTPS port: exit 3"
"$CLI" policy list --agent https://127.0.0.1:$PORT --cacert "$T/tls.crt" --token-file "$T/token" 2>"$T/cli.err"
is "$? $(grep -c "^meshmask: TLS with 127.0.0.1:$PORT: " "$T/cli.err")" "3 1" "CLI https:// to the plain HTTP port: a TLS error, exit 3"

# --- the CLI against a scripted agent: chunked replies, errors, headers it sends ------------
cat >"$T/fake_agent.py" <<'EOF'
import http.server, json, socket, ssl, sys
port, log = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def chunked(self, status, doc, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        b = json.dumps(doc).encode()
        for i in range(0, len(b), 7):  # many small chunks, with a chunk extension on one
            self.wfile.write(b"%x%s\r\n%s\r\n" % (len(b[i:i + 7]), b";x=1" if i == 7 else b"", b[i:i + 7]))
        self.wfile.write(b"0\r\n\r\n")
    def handle_one(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(log, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, "peer": self.client_address[1],
                                "headers": [[k, v] for k, v in self.headers.items()], "body": len(body)}) + "\n")
        name = self.path.rsplit("/", 1)[1]
        if name == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif name == "garbage":
            self.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n")
            self.close_connection = True
        elif name == "busy":
            self.chunked(503, {"error": "agent busy, try again", "details": []})
        elif self.command == "PUT":
            self.chunked(201, {"name": name}, [("ETag", '"e-%s"' % name)])
        elif self.command == "DELETE":
            self.send_response(204)
            self.end_headers()
        elif name == "policies":
            self.chunked(200, {"policies": [{"name": "chunky", "source": "api", "mode": "enforce",
                                             "etag": "e" * 64}], "rejected": []})
        else:
            self.chunked(200, {"metadata": {"name": name}}, [("ETag", '"e-%s"' % name)])
    do_GET = do_PUT = do_DELETE = handle_one
s = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
EOF
start_fake() { # start_fake PORT LOG [CERT KEY]
	python3 "$T/fake_agent.py" "$@" 2>>"$T/fake.err" &
	PIDS+=($!)
	for _ in $(seq 100); do
		python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null && return 0
		sleep 0.05
	done
}
FPORT=$(free_port)
start_fake "$FPORT" "$T/fake.log"
FURL=http://127.0.0.1:$FPORT/prefix/
"$CLI" policy list --agent "$FURL" --token-file "$T/token" >"$T/cli.out" 2>"$T/cli.err"
is "$? $(grep -c '^chunky  *api  *enforce  *e\{64\}$' "$T/cli.out")" "0 1" "CLI reads a chunked list (7-byte chunks, a chunk extension)"
"$CLI" policy list --json --agent "$FURL" --token-file "$T/token" >"$T/cli.out" 2>"$T/cli.err"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["policies"][0]["name"] == "chunky"' "$T/cli.out"
ok $? "CLI list --json prints the chunked body decoded"
"$CLI" policy get --agent "$FURL" --token-file "$T/token" some-pol >"$T/cli.out" 2>"$T/cli.err"
is "$? $(cat "$T/cli.err")" "0 etag e-some-pol" "CLI get: chunked document and its ETag"
"$CLI" policy get --agent "$FURL" --token-file "$T/token" busy >"$T/cli.out" 2>"$T/cli.err"
is "$? $(cat "$T/cli.err")" "3 busy: 503 agent busy, try again" "CLI prints the agent's JSON error of a 503, exit 3"
"$CLI" policy get --agent "$FURL" --token-file "$T/token" close >"$T/cli.out" 2>"$T/cli.err"
is "$? $(grep -c "^meshmask: 127.0.0.1:$FPORT closed the connection without answering$" "$T/cli.err")" "3 1" "CLI: a hang-up without an answer, exit 3"
"$CLI" policy get --agent "$FURL" --token-file "$T/token" garbage >"$T/cli.out" 2>"$T/cli.err"
is "$? $(grep -c "^meshmask: 127.0.0.1:$FPORT did not answer HTTP" "$T/cli.err")" "3 1" "CLI: not an HTTP answer, exit 3"
policy fake-a X >"$T/fake-a.json"
policy fake-b X >"$T/fake-b.json"
: >"$T/fake.log"
"$CLI" policy push --agent "$FURL" --token-file "$T/token" "$T/fake-a.json" "$T/fake-b.json" >"$T/cli.out" 2>"$T/cli.err"
is "$? $(grep -c 'created (etag e-fake-' "$T/cli.out")" "0 2" "CLI push of two files: both created"
python3 - "$T/fake.log" "$TOKEN" "$(wc -c <"$T/fake-a.json")" <<'EOF'
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
assert [(r["method"], r["path"]) for r in reqs] == [("PUT", "/prefix/v1/policies/fake-a"), ("PUT", "/prefix/v1/policies/fake-b")], reqs
for r in reqs:
    h = {}
    for k, v in r["headers"]:
        h.setdefault(k.lower(), []).append(v)
    assert h["authorization"] == ["Bearer " + sys.argv[2]], h
    assert h["content-type"] == ["application/json"] and h["accept"] == ["application/json"], h
    assert h["user-agent"][0].startswith("meshmask/") and "if-match" not in h, h
assert reqs[0]["body"] == int(sys.argv[3]), reqs[0]
assert reqs[0]["peer"] == reqs[1]["peer"], "not one connection: %s" % reqs
EOF
ok $? "CLI push: URL prefix, one bearer token, JSON headers, the file's bytes, one connection for both"
: >"$T/fake.log"
MESHMASK_AGENT=$FURL MESHMASK_TOKEN_FILE=$T/token "$CLI" policy delete --if-match abc fake-a >"$T/cli.out" 2>"$T/cli.err"
is "$? $(cat "$T/cli.out")" "0 fake-a: deleted" "CLI delete with \$MESHMASK_AGENT and \$MESHMASK_TOKEN_FILE"
python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); h={k.lower(): v for k, v in r["headers"]}
assert r["method"] == "DELETE" and h["if-match"] == "\"abc\"" and h["authorization"] == "Bearer " + sys.argv[2], r' "$T/fake.log" "$TOKEN"
ok $? "CLI delete sends the token and a quoted If-Match"
# A TLS fake agent whose certificate names another host: refused unless --insecure.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=elsewhere -addext "subjectAltName=DNS:elsewhere" \
	-keyout "$T/other.key" -out "$T/other.crt" >/dev/null 2>&1
SPORT=$(free_port)
start_fake "$SPORT" "$T/fake-tls.log" "$T/other.crt" "$T/other.key"
"$CLI" policy list --agent https://127.0.0.1:$SPORT --cacert "$T/other.crt" --token-file "$T/token" >/dev/null 2>"$T/cli.err"
is "$? $(grep -c "^meshmask: TLS with 127.0.0.1:$SPORT: " "$T/cli.err")" "3 1" "CLI refuses a trusted certificate for another host name"
"$CLI" policy list --agent https://127.0.0.1:$SPORT --insecure --token-file "$T/token" >"$T/cli.out" 2>&1
is "$? $(grep -c '^chunky ' "$T/cli.out")" "0 1" "CLI --insecure over TLS, chunked reply"
[[ ! -s $T/fake-tls.log || $(wc -l <"$T/fake-tls.log") == 1 ]]; ok $? "no request reached the host that failed verification"
[[ -s $T/cli-all.log ]] && ! grep -qF -- "$TOKEN" "$T/cli-all.log"
ok $? "no output of the CLI holds the token"

echo "1..$n"
[[ $fails == 0 ]]
