#!/usr/bin/env python3
"""Correctness check of one system's response body against a payload's secret list.

  check_secrets.py SECRETS BODY --expect masked|present [--json] [--records N]

A secret counts as found when it appears verbatim in BODY (grep -F, fast on 100 MB) or, for
SSNs, cards and phones, when its digits appear as one digit run with the separators changed or
dropped. Prints one JSON object: secrets listed, found, per-kind counts, valid_json, records,
bytes and ok. --expect masked: ok needs found == 0 (and, with --json, a document that parses
with the expected record count); --expect present (the direct row): every secret appears.
Never prints a secret value.
"""
import argparse
import json
import os
import re
import subprocess
import sys

RUN = re.compile(rb"\d(?:[ ().+-]{0,3}\d)+")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("secrets")
    ap.add_argument("body")
    ap.add_argument("--expect", choices=["masked", "present"], required=True)
    ap.add_argument("--json", action="store_true", help="BODY must parse as JSON")
    ap.add_argument("--records", type=int, default=-1, help="expected len(users)")
    a = ap.parse_args()

    kind_of, digit_form = {}, {}
    with open(a.secrets) as f:
        for line in f:
            kind, value = line.rstrip("\n").split("\t", 1)
            kind_of[value] = kind
            if kind != "EMAIL_ADDRESS":
                digit_form[re.sub(r"\D", "", value)] = value
    values = "\n".join(kind_of) + "\n"
    # -a: never "binary file matches"; -o: each hit on its own line.
    g = subprocess.run(["grep", "-a", "-o", "-F", "-f", "/dev/stdin", a.body],
                       input=values.encode(), stdout=subprocess.PIPE, check=False)
    found = {v for v in g.stdout.decode("utf-8", "replace").split("\n") if v in kind_of}

    with open(a.body, "rb") as f:
        raw = f.read()
    for m in RUN.finditer(raw):
        d = re.sub(rb"\D", b"", m.group(0)).decode()
        if d in digit_form:
            found.add(digit_form[d])

    kinds = {}
    for v in found:
        kinds[kind_of[v]] = kinds.get(kind_of[v], 0) + 1
    valid, records = None, None
    if a.json:
        try:
            doc = json.loads(raw)
            valid = True
            records = len(doc.get("users", [])) if isinstance(doc, dict) else None
        except ValueError:
            valid = False
    ok = len(found) == 0 if a.expect == "masked" else len(found) == len(kind_of)
    if a.json:
        ok = ok and bool(valid) and (a.records < 0 or records == a.records)
    ok = ok and os.path.getsize(a.body) > 0
    json.dump({"secrets": len(kind_of), "found": len(found), "found_by_kind": kinds,
               "valid_json": valid, "records": records, "bytes": len(raw), "ok": ok},
              sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
