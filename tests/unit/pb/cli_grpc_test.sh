#!/usr/bin/env bash
# `meshmask mask --grpc`: one binary protobuf message in, the masked message out. The descriptor
# set comes from protoc --descriptor_set_out --include_imports, messages are written with
# protoc --encode and read back with protoc --decode, so assertions name fields. TAP.
#   cli_grpc_test.sh PATH/TO/meshmask PROTO_DIR
set -u
bin=${1:?usage: cli_grpc_test.sh PATH/TO/meshmask PROTO_DIR}
protos=${2:?usage: cli_grpc_test.sh PATH/TO/meshmask PROTO_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
fails=0
ok() { # cond-status description
	n=$((n + 1))
	if [[ $1 -eq 0 ]]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
encode() { protoc --proto_path="$protos" --encode="$1" test.proto; }
decode() { protoc --proto_path="$protos" --decode="$1" test.proto; }

protoc --proto_path="$protos" --descriptor_set_out="$tmp/set.pb" --include_imports test.proto
ok $? "protoc writes a descriptor set with its imports"

policy() { # file onError [extra spec members]
	cat >"$1" <<JSON
{"apiVersion":"meshmask.io/v1alpha1","kind":"MaskingPolicy","metadata":{"name":"grpc"},
 "spec":{"onError":"$2",${3:-}"rules":[
  {"name":"ssn","fields":["\$..ssn"],"action":{"type":"mask","keepLast":4}},
  {"name":"cards","fields":["\$.cards[*].number"],"action":{"type":"replace","value":"<CARD>"}},
  {"name":"attrs","fields":["\$.attrs[*].value"],"action":{"type":"redact"}},
  {"name":"mail","entities":["EMAIL_ADDRESS"],"action":{"type":"replace"}}]}}
JSON
}
policy "$tmp/p.json" fallback
policy "$tmp/block.json" block
policy "$tmp/pass.json" pass
policy "$tmp/both.json" fallback '"directions":["request","response"],'
policy "$tmp/own.json" block "\"protobuf\":{\"descriptorSets\":[\"$tmp/set.pb\"]},"

encode mm.test.Customer >"$tmp/in.bin" <<'TXT'
name: "Ann Smith"
ssn: "536-22-1234"
email: "ann@example.com"
cards { number: "4111 1111 1111 1111" holder: "Ann" }
cards { number: "5500 0000 0000 0004" holder: "Bob" }
attrs { key: "tier" value: "gold" }
referrer { ssn: "512-44-9876" note: "write to bob@example.org" }
scores: [1, 2, 3]
TXT
ok $? "protoc --encode writes a Customer"

"$bin" mask --grpc --descriptor-set "$tmp/set.pb" --method /mm.test.Customers/Get \
	--policy "$tmp/p.json" "$tmp/in.bin" >"$tmp/out.bin"
rc=$?
decode mm.test.Customer <"$tmp/out.bin" >"$tmp/out.txt"
ok $((rc || $?)) "the response of /mm.test.Customers/Get masked (rc=$rc) and still a Customer"
grep -qx 'ssn: "\*\*\*-\*\*-1234"' "$tmp/out.txt"
ok $? "\$..ssn masked"
grep -q 'ssn: "\*\*\*-\*\*-9876"' "$tmp/out.txt"
ok $? "... in the referrer too"
[[ $(grep -c 'number: "<CARD>"' "$tmp/out.txt") -eq 2 ]]
ok $? "\$.cards[*].number replaced in both cards"
grep -q 'key: "tier"' "$tmp/out.txt" && ! grep -q 'gold' "$tmp/out.txt"
ok $? "\$.attrs[*].value redacted (the key stays)"
grep -qx 'email: "<EMAIL_ADDRESS>"' "$tmp/out.txt" && grep -q 'note: "write to <EMAIL_ADDRESS>"' "$tmp/out.txt"
ok $? "entities in string fields"
grep -qx 'name: "Ann Smith"' "$tmp/out.txt" && grep -qx 'scores: 3' "$tmp/out.txt"
ok $? "the rest as it was"

"$bin" mask --grpc --method /mm.test.Customers/Get --policy "$tmp/own.json" <"$tmp/in.bin" \
	| cmp -s - "$tmp/out.bin"
ok $? "the policy's own descriptorSets, stdin"

encode mm.test.GetRequest >"$tmp/req.bin" <<<'id: "mail me at ann@example.com"'
"$bin" mask --grpc --descriptor-set "$tmp/set.pb" --method /mm.test.Customers/Get \
	--direction request --policy "$tmp/both.json" "$tmp/req.bin" | decode mm.test.GetRequest \
	>"$tmp/req.txt"
grep -qx 'id: "mail me at <EMAIL_ADDRESS>"' "$tmp/req.txt"
ok $? "--direction request: the method's input type"
"$bin" mask --grpc --descriptor-set "$tmp/set.pb" --method /mm.test.Customers/Get \
	--direction request --policy "$tmp/p.json" "$tmp/req.bin" | cmp -s - "$tmp/req.bin"
ok $? "a direction the policy does not cover: unchanged"

"$bin" mask --grpc --descriptor-set "$tmp/set.pb" --method /mm.test.Customers/Get \
	--policy "$tmp/p.json" --stats "$tmp/in.bin" 2>"$tmp/stats" >/dev/null
python3 - "$tmp/stats" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["policy"] == "grpc" and s["outcome"] == "masked", s
assert s["method"] == "/mm.test.Customers/Get", s
assert s["rules"]["ssn"]["values"] == 2 and s["rules"]["cards"]["values"] == 2, s
assert s["rules"]["attrs"]["values"] == 1, s
assert s["rules"]["mail"]["entities"] == {"EMAIL_ADDRESS": 2}, s
txt = open(sys.argv[1]).read()
assert "1234" not in txt and "example" not in txt and "4111" not in txt, txt
PY
ok $? "--stats: counts per rule, the method's name, no value"

# No descriptor for the method: onError.
"$bin" mask --grpc --descriptor-set "$tmp/set.pb" --method /mm.test.Customers/Nope \
	--policy "$tmp/p.json" --stats "$tmp/in.bin" >"$tmp/fb.bin" 2>"$tmp/stats"
rc=$?
decode mm.test.Customer <"$tmp/fb.bin" >"$tmp/fb.txt"
[[ $rc -eq 0 && $(stat -c %s "$tmp/fb.bin") -eq $(stat -c %s "$tmp/in.bin") ]] &&
	grep -qx 'email: "\*\*\*@\*\*\*\*\*\*\*.\*\*\*"' "$tmp/fb.txt" &&
	grep -q '"outcome":"fallback"' "$tmp/stats"
ok $? "unknown method, onError fallback: same-length scan, still a Customer"
"$bin" mask --grpc --descriptor-set "$tmp/set.pb" --method /mm.test.Customers/Nope \
	--policy "$tmp/pass.json" "$tmp/in.bin" | cmp -s - "$tmp/in.bin"
ok $? "unknown method, onError pass: unchanged"
"$bin" mask --grpc --descriptor-set "$tmp/set.pb" --method /mm.test.Customers/Nope \
	--policy "$tmp/block.json" "$tmp/in.bin" >"$tmp/o" 2>"$tmp/err"
rc=$?
[[ $rc -eq 4 && ! -s $tmp/o ]] && grep -q "blocked (no_descriptor" "$tmp/err"
ok $? "unknown method, onError block: exit 4, nothing written"
printf '\x0a\x05ab' >"$tmp/bad.bin"
"$bin" mask --grpc --descriptor-set "$tmp/set.pb" --method /mm.test.Customers/Get \
	--policy "$tmp/p.json" "$tmp/bad.bin" >"$tmp/o" 2>"$tmp/err"
rc=$?
[[ $rc -eq 4 ]] && grep -q "blocked (bad_protobuf" "$tmp/err"
ok $? "not a message: fallback cannot scan it either, blocked"

# Usage and errors.
"$bin" mask --grpc --policy "$tmp/p.json" "$tmp/in.bin" >/dev/null 2>&1
[[ $? -eq 2 ]]
ok $? "--grpc without --method: usage error"
"$bin" mask --method /a/b --policy "$tmp/p.json" "$tmp/in.bin" >/dev/null 2>&1
[[ $? -eq 2 ]]
ok $? "--method without --grpc: usage error"
"$bin" mask --grpc --descriptor-set "$tmp/none.pb" --method /a/b --policy "$tmp/p.json" \
	"$tmp/in.bin" >/dev/null 2>"$tmp/err"
rc=$?
[[ $rc -eq 1 ]] && grep -q "cannot read descriptor set \"$tmp/none.pb\"" "$tmp/err"
ok $? "a missing descriptor set named (exit 1)"
"$bin" mask --grpc --descriptor-set "$tmp/p.json" --method /a/b --policy "$tmp/p.json" \
	"$tmp/in.bin" >/dev/null 2>"$tmp/err"
[[ $? -eq 1 ]] && grep -q "not a FileDescriptorSet" "$tmp/err" && ! grep -q 'apiVersion' "$tmp/err"
ok $? "a file that is no descriptor set: named, its bytes never printed"

echo "1..$n"
[[ $fails -eq 0 ]]
