#!/usr/bin/env python3
"""Benchmark payloads: JSON documents of user records with a realistic mix of secrets.

  gen_payloads.py OUTDIR [--stream-mb N]

Writes OUTDIR/www/{1k,64k,1m,stream}.json and, for each, OUTDIR/secrets-<name>.txt: one
"KIND<TAB>value" line per distinct secret the document holds (SSNs with dashes, Luhn-valid
card numbers in several layouts, emails, NANP phones), for the correctness check. Records carry
plain fields too (ids, names, addresses, dates, amounts, tags) and about a third hold secrets in
free text as well. Deterministic: a fixed seed, so every run serves the same bytes.
"""
import argparse
import json
import os
import random

FIRST = ["ada", "grace", "alan", "edsger", "barbara", "donald", "frances", "ken", "linus",
         "margaret", "niklaus", "radia", "tim", "vint", "john", "leslie", "shafi", "whitfield"]
LAST = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "allen", "thompson",
        "torvalds", "hamilton", "wirth", "perlman", "berners-lee", "cerf", "backus", "lamport"]
CITIES = ["Springfield", "Riverton", "Fairview", "Madison", "Georgetown", "Clinton", "Salem"]
STREETS = ["Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Pine St", "Elm St", "Lake Rd"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.co.uk"]
TAGS = ["gold", "silver", "new", "churn-risk", "vip", "b2b", "newsletter", "beta"]
BRANDS = [("visa", "4", 16), ("mastercard", "5", 16), ("amex", "3", 15), ("discover", "6011", 16)]


def luhn_complete(prefix, length, rng):
    digits = [int(c) for c in prefix]
    while len(digits) < length - 1:
        digits.append(rng.randrange(10))
    total = 0
    # Double every second digit counted from the (future) check digit.
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    digits.append((10 - total % 10) % 10)
    return "".join(map(str, digits))


def card(rng):
    brand, prefix, length = rng.choice(BRANDS)
    if brand == "mastercard":
        prefix = str(rng.randrange(51, 56))
    elif brand == "amex":
        prefix = rng.choice(["34", "37"])
    num = luhn_complete(prefix, length, rng)
    style = rng.randrange(3)
    if style == 0:
        return brand, num
    sep = " " if style == 1 else "-"
    if length == 15:
        return brand, sep.join([num[:4], num[4:10], num[10:]])
    return brand, sep.join(num[i:i + 4] for i in range(0, 16, 4))


def ssn(rng):
    # SSA rules: area 001-899 except 666, group 01-99, serial 0001-9999.
    area = rng.randrange(1, 900)
    while area == 666:
        area = rng.randrange(1, 900)
    return "%03d-%02d-%04d" % (area, rng.randrange(1, 100), rng.randrange(1, 10000))


def phone(rng):
    area, exch, line = rng.randrange(201, 990), rng.randrange(200, 1000), rng.randrange(10000)
    return rng.choice(["(%03d) %03d-%04d", "%03d-%03d-%04d", "+1 %03d-%03d-%04d",
                       "%03d.%03d.%04d"]) % (area, exch, line)


def record(i, rng, secrets):
    fn, ln = rng.choice(FIRST), rng.choice(LAST)
    email = "%s.%s%d@%s" % (fn, ln.replace("-", ""), i, rng.choice(DOMAINS))
    s, p = ssn(rng), phone(rng)
    brand, c = card(rng)
    secrets.update({("US_SSN", s), ("PHONE_NUMBER", p), ("CREDIT_CARD", c),
                    ("EMAIL_ADDRESS", email)})
    rec = {
        "id": 100000 + i,
        "uuid": "%08x-%04x-4%03x-a%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                                 rng.getrandbits(12), rng.getrandbits(12),
                                                 rng.getrandbits(48)),
        "name": "%s %s" % (fn.capitalize(), ln.capitalize()),
        "email": email,
        "ssn": s,
        "phone": p,
        "card": {"brand": brand, "number": c,
                 "expiry": "%02d/%02d" % (rng.randrange(1, 13), rng.randrange(26, 32))},
        "address": {"street": "%d %s" % (rng.randrange(1, 9999), rng.choice(STREETS)),
                    "city": rng.choice(CITIES), "zip": "%05d" % rng.randrange(1000, 99999),
                    "country": "US"},
        "created": "2025-%02d-%02dT%02d:%02d:%02dZ" % (rng.randrange(1, 13), rng.randrange(1, 29),
                                                       rng.randrange(24), rng.randrange(60),
                                                       rng.randrange(60)),
        "balance": round(rng.uniform(-500, 25000), 2),
        "active": rng.random() < 0.8,
        "tags": rng.sample(TAGS, rng.randrange(0, 4)),
        "orders": [{"sku": "SKU-%06d" % rng.randrange(10**6), "qty": rng.randrange(1, 5),
                    "price": round(rng.uniform(1, 300), 2)} for _ in range(rng.randrange(0, 3))],
    }
    if rng.random() < 0.35:
        p2, s2 = phone(rng), ssn(rng)
        secrets.update({("PHONE_NUMBER", p2), ("US_SSN", s2)})
        rec["notes"] = ("Customer called from %s about a chargeback; verified identity with SSN "
                        "%s and the card on file." % (p2, s2))
    else:
        rec["notes"] = "Prefers email contact. Account reviewed, nothing to report."
    return rec


def document(target, rng, pool=None):
    """A {"users": [...]} document of about `target` bytes; with `pool`, records are drawn
    from it in turn (bounded secret set for the large streaming file)."""
    secrets, users, size, i = set(), [], 40, 0
    while size < target:
        if pool:
            rec, sec = pool[i % len(pool)]
            secrets.update(sec)
        else:
            sec = set()
            rec = record(i, rng, sec)
            secrets.update(sec)
        users.append(rec)
        size += len(json.dumps(rec)) + 2
        i += 1
    doc = {"page": 1, "count": len(users), "users": users}
    return json.dumps(doc, indent=None) + "\n", secrets


def write(outdir, name, text, secrets):
    with open(os.path.join(outdir, "www", name + ".json"), "w") as f:
        f.write(text)
    with open(os.path.join(outdir, "secrets-%s.txt" % name), "w") as f:
        for kind, value in sorted(secrets):
            f.write("%s\t%s\n" % (kind, value))


def write_stream(outdir, mb, rng):
    """`mb` MB written record by record: 4096 distinct records repeated."""
    pool = []
    for i in range(4096):
        sec = set()
        pool.append((json.dumps(record(i, rng, sec)), sec))
    secrets = set()
    for _, sec in pool:
        secrets.update(sec)
    target, size, i = mb * 1000 * 1000, 0, 0
    with open(os.path.join(outdir, "www", "stream.json"), "w") as f:
        f.write('{"page": 1, "users": [')
        while size < target:
            rec = pool[i % len(pool)][0]
            f.write(("," if i else "") + rec)
            size += len(rec) + 1
            i += 1
        f.write("]}\n")
    with open(os.path.join(outdir, "secrets-stream.txt"), "w") as f:
        for kind, value in sorted(secrets):
            f.write("%s\t%s\n" % (kind, value))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--stream-mb", type=int, default=100)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.outdir, "www"), exist_ok=True)
    rng = random.Random(20260101)
    for name, target in (("1k", 1000), ("64k", 64 * 1000), ("1m", 1000 * 1000)):
        text, secrets = document(target, rng)
        write(a.outdir, name, text, secrets)
    write_stream(a.outdir, a.stream_mb, rng)


if __name__ == "__main__":
    main()
