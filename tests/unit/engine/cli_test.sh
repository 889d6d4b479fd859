#!/usr/bin/env bash
# `meshmask` command line: mask (file, stdin, gzip, --stats), policy validate, exit codes. TAP.
set -u
bin=${1:?usage: cli_test.sh PATH/TO/meshmask}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
fails=0
ok() { # cond-status description
	n=$((n + 1))
	if [[ $1 -eq 0 ]]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}

policy() { # file onError
	cat >"$1" <<JSON
{"apiVersion":"meshmask.io/v1alpha1","kind":"MaskingPolicy","metadata":{"name":"cli"},
 "spec":{"mode":"enforce","onError":"$2","rules":[
  {"name":"pw","fields":["\$..password"],"action":{"type":"redact"}},
  {"name":"ssn","entities":["US_SSN"],"action":{"type":"mask","keepLast":4}}]}}
JSON
}
policy "$tmp/p.json" fallback
policy "$tmp/block.json" block
printf '{"password":"hunter2","note":"ssn 536-22-8105"}' >"$tmp/in.json"
want='{"password":null,"note":"ssn ***-**-8105"}'

out=$("$bin" mask --policy "$tmp/p.json" --content-type application/json "$tmp/in.json")
rc=$?
[[ $rc -eq 0 && $out == "$want" ]]
ok $? "mask a file (rc=$rc)"

out=$("$bin" mask --policy "$tmp/p.json" --content-type application/json <"$tmp/in.json")
[[ $? -eq 0 && $out == "$want" ]]
ok $? "mask stdin"

out=$("$bin" mask --policy "$tmp/p.json" - <"$tmp/in.json")
[[ $? -eq 0 && $out == "$want" ]]
ok $? "content type sniffed, '-' is stdin"

out=$(gzip -c "$tmp/in.json" | "$bin" mask --policy "$tmp/p.json" --content-type application/json \
	--content-encoding gzip | gunzip -c)
[[ $out == "$want" ]]
ok $? "gzip in, gzip out"

"$bin" mask --policy "$tmp/p.json" --stats --content-type application/json "$tmp/in.json" \
	>/dev/null 2>"$tmp/stats"
python3 - "$tmp/stats" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["policy"] == "cli" and s["outcome"] == "masked", s
assert s["values"] == 2 and s["rules"]["pw"]["values"] == 1, s
assert s["rules"]["ssn"]["entities"] == {"US_SSN": 1}, s
assert s["bytes_in"] == 47 and s["errors"] == {}, s
assert "8105" not in open(sys.argv[1]).read().replace('"US_SSN"', '')
PY
ok $? "--stats prints counts as JSON on stderr"

out=$(printf '{"a":' | "$bin" mask --policy "$tmp/block.json" --content-type application/json 2>"$tmp/err")
rc=$?
[[ $rc -eq 4 && $(wc -l <"$tmp/err") -eq 1 ]] && grep -q "blocked (bad_json" "$tmp/err"
ok $? "onError=block: exit 4 with one line (rc=$rc)"

# Byte-exact output (cmp, not $(...), which would drop trailing newlines): every byte outside
# the masked values is kept, trailing newlines, CR and blanks included.
exact() { # description content-type-or-empty input-printf-format expected-printf-format
	printf "$3" >"$tmp/x.in"
	printf "$4" >"$tmp/x.want"
	"$bin" mask --policy "$tmp/p.json" ${2:+--content-type "$2"} "$tmp/x.in" >"$tmp/x.out" &&
		cmp -s "$tmp/x.out" "$tmp/x.want" &&
		"$bin" mask --policy "$tmp/p.json" ${2:+--content-type "$2"} <"$tmp/x.in" |
		cmp -s - "$tmp/x.want"
	ok $? "byte-exact: $1"
}
exact "JSON document, trailing newline" application/json \
	'{"password":"hunter2","note":"ssn 536-22-8105"}\n' '{"password":null,"note":"ssn ***-**-8105"}\n'
exact "sniffed JSON, CRLF and blanks after" "" \
	' {"password":"x"} \r\n\n' ' {"password":null} \r\n\n'
exact "top-level number and string, newline" application/json '"536-22-8105"\n' '"***-**-8105"\n'
exact "unchanged document keeps its bytes" application/json \
	'{ "a" : [1, 2.5e3, true, null, "x\\u0041"] }\n\n' '{ "a" : [1, 2.5e3, true, null, "x\\u0041"] }\n\n'
exact "NDJSON, last line with newline" application/x-ndjson \
	'{"password":"a"}\n{"password":"b"}\n' '{"password":null}\n{"password":null}\n'
exact "text, trailing newline" text/plain 'ssn 536-22-8105\n' 'ssn ***-**-8105\n'
# The newline arriving in a later read() than the document.
{
	printf '{"password":"x"}'
	sleep 0.2
	printf '\n'
} | "$bin" mask --policy "$tmp/p.json" --content-type application/json >"$tmp/x.out"
printf '{"password":null}\n' | cmp -s - "$tmp/x.out"
ok $? "byte-exact: newline in a separate read"
printf '{"password":"x"}\n' | gzip -c |
	"$bin" mask --policy "$tmp/p.json" --content-type application/json --content-encoding gzip |
	gunzip -c >"$tmp/x.out"
printf '{"password":null}\n' | cmp -s - "$tmp/x.out"
ok $? "byte-exact: gzip round trip keeps the newline"

"$bin" mask --policy "$tmp/p.json" "$tmp/missing.json" >/dev/null 2>"$tmp/err"
rc=$?
[[ $rc -eq 3 && $(wc -l <"$tmp/err") -eq 1 ]] && grep -q "missing.json: No such file" "$tmp/err"
ok $? "missing input: exit 3, one line naming the file (rc=$rc)"

"$bin" mask --policy "$tmp/nope.json" "$tmp/in.json" >/dev/null 2>"$tmp/err"
[[ $? -eq 3 ]] && grep -q "nope.json" "$tmp/err"
ok $? "missing policy file: exit 3"

"$bin" mask "$tmp/in.json" >/dev/null 2>&1
[[ $? -eq 2 ]]
ok $? "no --policy: usage, exit 2"

"$bin" frobnicate >/dev/null 2>&1
[[ $? -eq 2 ]]
ok $? "unknown command: exit 2"

out=$("$bin" policy validate "$tmp/p.json" "$tmp/block.json")
[[ $? -eq 0 && $out == "$tmp/p.json: ok"$'\n'"$tmp/block.json: ok" ]]
ok $? "policy validate: ok files, exit 0"

printf '{"apiVersion":"meshmask.io/v1alpha1","kind":"MaskingPolicy","metadata":{"name":"b"},"spec":{"rules":[{"name":"x","action":{"type":"explode"}}]}}' >"$tmp/bad.json"
printf '{"apiVersion": ' >"$tmp/syntax.json"
out=$("$bin" policy validate "$tmp/p.json" "$tmp/bad.json" "$tmp/syntax.json" 2>"$tmp/err")
rc=$?
[[ $rc -eq 1 && $out == "$tmp/p.json: ok" ]] && grep -q "bad.json: /spec/rules/0" "$tmp/err" &&
	grep -q "syntax.json:1:" "$tmp/err"
ok $? "policy validate: errors with locations, exit 1 (rc=$rc)"

"$bin" version | grep -Eq '^meshmask [0-9]+\.[0-9]+'
ok $? "version"

"$bin" --help | grep -q "policy validate"
ok $? "--help lists the commands"

echo "1..$n"
exit $((fails > 0))
