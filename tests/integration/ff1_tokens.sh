#!/usr/bin/env bash
# FF1 tokens end to end: a covered caller receives tokens (format kept: SSN layout, a card that
# keeps its BIN and last four and passes Luhn); the same caller's request carrying those tokens
# to the one destination allowed to see originals arrives there with the originals; the admin
# API restores tokens with the detokenize token only (not without, not with the admin token);
# each call is audited without a value, and no value or token reaches a log.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
CLI=${2:-}

key=$DP_DIR/ff1.key
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key"
echo ff1-admin-$DP_ID >"$DP_DIR/admin.token"
echo ff1-detok-$DP_ID >"$DP_DIR/detok.token"

# ff1_policy NAME TYPE DIRECTION PORT
ff1_policy() {
	cat >"$DP_DIR/policies/$1.json" <<JSON
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "$1" },
  "spec": {
    "selector": { "destinations": [ { "port": $4 } ],
                  "sources": [ { "cgroup": "$DP_CG_REL/app-*" } ] },
    "directions": [ "$3" ],
    "rules": [
      { "name": "ssn", "fields": [ "\$..ssn" ],
        "action": { "type": "$2", "keyFile": "$key", "tokenSpace": "pii" } },
      { "name": "cards", "entities": [ "CREDIT_CARD" ],
        "action": { "type": "$2", "keyFile": "$key", "tokenSpace": "cards",
                    "keepFirst": 6, "keepLast": 4, "luhn": true } },
      { "name": "email", "entities": [ "EMAIL_ADDRESS" ],
        "action": { "type": "$2", "keyFile": "$key" } }
    ] } }
JSON
}
# Callers get tokens from the customer service (8080); the payment service (8081) gets originals.
ff1_policy ff1tok tokenize response $DP_SPORT
ff1_policy ff1detok detokenize request $((DP_SPORT + 1))
dp_pod app-ff1 1
dp_agent_start --token-file "$DP_DIR/admin.token" --detokenize-token-file "$DP_DIR/detok.token" \
	--key-dir "$DP_DIR" ||
	{ not_ok "agent starts"; dp_done; exit; }
check "agent listens in the caller's netns" dp_wait_listener app-ff1

orig=$DP_DIR/orig.json
ip netns exec "$DP_NS_SRV" curl -s --max-time 5 http://127.0.0.1:$DP_SPORT/customers >"$orig"
tok=$DP_DIR/tok.json
dp_in app-ff1 curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers >"$tok"

out=$(/usr/bin/python3 - "$orig" "$tok" <<'PY'
import json, re, sys
o = json.load(open(sys.argv[1]))["customers"]
t = json.load(open(sys.argv[2]))["customers"]
def ok(c, m):
    print(("ok - " if c else "not ok - ") + m)
def luhn(d):
    s = 0
    for i, c in enumerate(reversed(d)):
        v = int(c) * (2 if i % 2 else 1)
        s += v - 9 if v > 9 else v
    return s % 10 == 0
ok(len(o) == len(t) == 2, "the caller gets the customers")
for a, b in zip(o, t):
    n = a["name"]
    ok(b["ssn"] != a["ssn"] and re.fullmatch(r"\d{3}-\d{2}-\d{4}", b["ssn"]) is not None,
       "%s: SSN tokenized, layout kept (%s)" % (n, b["ssn"]))
    dc, db = a["card"].replace(" ", ""), b["card"].replace(" ", "")
    ok(b["card"] != a["card"] and len(b["card"]) == len(a["card"]) and
       [i for i, c in enumerate(b["card"]) if c == " "] == [i for i, c in enumerate(a["card"]) if c == " "],
       "%s: card tokenized, spaces kept" % n)
    ok(db[:6] == dc[:6] and db[-4:] == dc[-4:], "%s: card keeps BIN and last four" % n)
    ok(luhn(db), "%s: card token passes Luhn" % n)
    ok(b["name"] == a["name"] and b["note"] == a["note"], "%s: other fields unchanged" % n)
# ada@example.com: a 3-letter local part is below FF1's minimum domain: masked, not tokenized.
ok(t[0]["email"] == "***@example.com", "a local part too short for FF1 is masked")
ok(t[1]["email"] != o[1]["email"] and t[1]["email"].endswith("@example.org") and
   len(t[1]["email"]) == len(o[1]["email"]), "e-mail tokenized, domain kept (%s)" % t[1]["email"])
PY
)
dp_tap "$out"
check "no raw SSN, card or e-mail reaches the caller" \
	bash -c '! grep -qE "123-45-6789|234-56-7890|4111 1111 1111 1111|5500 0000 0000 0004|alan@" "$1"' _ "$tok"

# The same caller sends the tokens to the payment service, which is allowed the originals.
echoed=$DP_DIR/echoed.json
dp_in app-ff1 curl -s --max-time 5 -H 'Content-Type: application/json' --data-binary @"$tok" \
	http://10.211.1.1:$((DP_SPORT + 1))/echo >"$echoed"
sed 's/"ada@example.com"/"***@example.com"/' "$orig" >"$DP_DIR/want.json"
check "the allowed destination receives the originals, byte for byte" cmp -s "$DP_DIR/want.json" "$echoed"
check "the customer service is not given originals by a request to it" \
	test "$(dp_in app-ff1 curl -s --max-time 5 -o /dev/null -w '%{http_code}' \
		-H 'Content-Type: application/json' --data-binary @"$tok" \
		http://10.211.1.1:$DP_SPORT/echo)" = 200
errs=$(dp_metric 'meshmask_errors_total\{policy="ff1tok",direction="response",reason="tokenize_failed"\}')
check "the e-mail too short to tokenize is counted ($errs)" test "$errs" -ge 1
out=$(dp_in app-ff1 curl -s --max-time 5 -H 'Content-Type: application/json' \
	--data-binary '{"ssn": "12"}' http://10.211.1.1:$((DP_SPORT + 1))/echo)
check "a value that cannot be a token passes unchanged" test "$out" = '{"ssn": "12"}'
errs=$(dp_metric 'meshmask_errors_total\{policy="ff1detok",direction="request",reason="detokenize_failed"\}')
check "and is counted as detokenize_failed ($errs)" test "$errs" -ge 1

# Admin API: the detokenize token restores; the admin token and no token are refused.
ssn_tok=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["customers"][1]["ssn"])' "$tok")
card_tok=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["customers"][0]["card"])' "$tok")
api() { # api TOKEN_FILE|- BODY
	local h=()
	[[ $1 != - ]] && h=(-H "Authorization: Bearer $(cat "$1")")
	curl -s --max-time 5 -w '\n%{http_code}' "${h[@]}" -H 'Content-Type: application/json' \
		--data-binary "$2" "http://127.0.0.1:$DP_APORT/v1/detokenize"
}
body="{\"policy\": \"ff1tok\", \"rule\": \"ssn\", \"values\": [\"$ssn_tok\", \"12\"]}"
res=$(api "$DP_DIR/detok.token" "$body")
check "admin detokenize with its token: 200" test "$(tail -n1 <<<"$res")" = 200
check "admin detokenize restores the SSN and answers null for a value too short to be a token" \
	/usr/bin/python3 -c 'import json,sys; d = json.loads(sys.argv[1]); sys.exit(d["values"] != ["234-56-7890", None] or d["failed"] != 1)' "$(head -n1 <<<"$res")"
res=$(api "$DP_DIR/detok.token" "{\"policy\": \"ff1detok\", \"rule\": \"cards\", \"values\": [\"$card_tok\"]}")
check "admin detokenize by the detokenize policy's rule restores the card" \
	grep -q '"4111 1111 1111 1111"' <<<"$res"
check "admin detokenize with the admin token: 401" \
	test "$(api "$DP_DIR/admin.token" "$body" | tail -n1)" = 401
check "admin detokenize without a token: 401" test "$(api - "$body" | tail -n1)" = 401

if [[ -n $CLI && -x $CLI ]]; then
	out=$("$CLI" detokenize --agent "http://127.0.0.1:$DP_APORT" --token-file "$DP_DIR/detok.token" \
		--policy ff1tok --rule ssn "$ssn_tok" 2>&1)
	check "meshmask detokenize prints the original" test "$out" = "234-56-7890"
	"$CLI" detokenize --agent "http://127.0.0.1:$DP_APORT" --token-file "$DP_DIR/admin.token" \
		--policy ff1tok --rule ssn "$ssn_tok" >/dev/null 2>&1
	check "meshmask detokenize with the admin token is refused (exit 5)" test $? -eq 5
fi

# Audit: each call with caller, policy, rule and counts; no value or token anywhere in the logs.
check "audit: the detokenize call is recorded with its rule and counts" \
	grep -q '"event":"detokenize","policy":"ff1tok".*"rule":"ssn","count":2,"failed":1,"status":200' "$DP_DIR/audit.log"
check "audit: refused calls are recorded" grep -q '"event":"detokenize".*"status":401' "$DP_DIR/audit.log"
check "audit: tokenize and detokenize decisions are recorded" \
	bash -c 'grep -q "\"action\":\"tokenize\"" "$1" && grep -q "\"action\":\"detokenize\"" "$1"' _ "$DP_DIR/audit.log"
for f in audit.log agent.log; do
	check "$f holds no value or token" bash -c '! grep -qF -e "234-56-7890" -e "4111 1111" -e "$2" -e "$3" "$1"' \
		_ "$DP_DIR/$f" "$ssn_tok" "$card_tok"
done
check "metrics: detokenize calls counted" test "$(dp_metric 'meshmask_detokenize_requests_total\{code="200"\}')" -ge 2
check "metrics: restored values counted" \
	test "$(dp_metric 'meshmask_detokenize_values_total\{policy="ff1tok",rule="ssn",result="restored"\}')" -ge 1
dp_done
