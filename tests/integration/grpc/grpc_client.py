#!/usr/bin/env python3
"""grpcio client of the grpc suite, run inside a covered pod; prints TAP lines.

  grpc_client.py GEN_DIR HOST PORT_FALLBACK PORT_BLOCK PORT_PASS

PORT_FALLBACK's policy masks both directions (onError: fallback), PORT_BLOCK's and PORT_PASS's
responses (onError: block / pass). The agent runs with a 64 KiB gRPC message bound.
"""
import sys

import grpc

sys.path.insert(0, sys.argv[1])
import customers_pb2 as pb  # noqa: E402

host = sys.argv[2]
PF, PB, PP = sys.argv[3:6]
SSN, CARD, MAIL = "536-22-8710", "4111111111111111", "ann@example.com"
failed = 0


def check(name, cond, detail=""):
    global failed
    if cond:
        print("ok - " + name)
    else:
        failed += 1
        print("not ok - %s %s" % (name, detail))


def raw(c):
    return SSN in str(c) or CARD in str(c) or MAIL in str(c)


def masked(c):
    return c.ssn == "XXX-XX-8710" and not raw(c) and c.name == "<name>"


def channel(port, gzip=False):
    opts = [("grpc.max_receive_message_length", 64 << 20)]
    comp = grpc.Compression.Gzip if gzip else None
    return grpc.insecure_channel("%s:%s" % (host, port), options=opts, compression=comp)


def stubs(ch):
    ser, des = pb.Customer.SerializeToString, pb.Customer.FromString
    q = pb.Query.SerializeToString
    return {
        "Get": ch.unary_unary("/mm.it.Customers/Get", q, des),
        "List": ch.unary_stream("/mm.it.Customers/List", q, des),
        "Upload": ch.stream_unary("/mm.it.Customers/Upload", ser, des),
        "Chat": ch.stream_stream("/mm.it.Customers/Chat", ser, des),
        "Hidden": ch.unary_unary("/mm.hidden.Hidden/Get", q, des),
    }


def sent(i):
    return pb.Customer(name="Zed %d" % i, ssn=SSN, email=MAIL, card=CARD)


def main():
    s = stubs(channel(PF))
    c, call = s["Get"].with_call(pb.Query(id="1"), timeout=10)
    check("unary: masked by field name (ssn), entity (card, email) and replace (name)",
          masked(c), str(c))
    check("unary: trailers kept (x-trailer) and status OK",
          dict(call.trailing_metadata()).get("x-trailer") == "kept" and
          call.code() == grpc.StatusCode.OK)
    try:
        s["Get"](pb.Query(id="missing"), timeout=10)
        check("an error status passes", False, "no error")
    except grpc.RpcError as e:
        check("an error status passes (NOT_FOUND with its message)",
              e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "no customer missing",
              "%s %s" % (e.code(), e.details()))
    got = list(s["List"](pb.Query(count=1000), timeout=60))
    check("server streaming: 1000 messages, every one masked (%d)" % len(got),
          len(got) == 1000 and all(masked(c) for c in got))
    up = s["Upload"](iter([sent(i) for i in range(50)]), timeout=20)
    check("client streaming: the 50 requests reached the server masked",
          up.blob.count(b"XXX-XX-8710") == 50 and SSN.encode() not in up.blob, up.blob[:80])
    echo = list(s["Chat"](iter([sent(i) for i in range(20)]), timeout=20))
    check("bidi: 20 messages echoed, masked both ways",
          len(echo) == 20 and all(masked(c) for c in echo), str(echo[:1]))
    g = stubs(channel(PF, gzip=True))
    check("gzip (grpc-encoding): unary masked", masked(g["Get"](pb.Query(id="1"), timeout=10)))
    got = list(g["List"](pb.Query(count=100), timeout=30))
    check("gzip: server streaming masked", len(got) == 100 and all(masked(c) for c in got))

    # A message over the agent's 64 KiB bound: fallback cannot hold it (refused, gRPC status 7);
    # pass lets it through unread, as the policy says.
    try:
        list(s["List"](pb.Query(count=2, note_kib=100), timeout=20))
        check("over the bound, onError fallback: refused", False, "answered")
    except grpc.RpcError as e:
        check("over the bound, onError fallback: refused with PERMISSION_DENIED",
              e.code() == grpc.StatusCode.PERMISSION_DENIED, str(e.code()))
    p = stubs(channel(PP))
    big = list(p["List"](pb.Query(count=2, note_kib=100), timeout=20))
    check("over the bound, onError pass: passed unread (raw, counted)",
          len(big) == 2 and big[0].ssn == SSN)

    # No descriptor for the method: fallback masks in place (same length), block refuses with a
    # gRPC error, pass passes.
    h = s["Hidden"](pb.Query(id="1"), timeout=10)
    check("no descriptor, fallback: same-length scan, nothing raw",
          not raw(h) and len(h.ssn) == len(SSN) and len(h.card) == len(CARD), str(h))
    try:
        stubs(channel(PB))["Hidden"](pb.Query(id="1"), timeout=10)
        check("no descriptor, block: refused", False, "answered")
    except grpc.RpcError as e:
        check("no descriptor, block: PERMISSION_DENIED, never a broken stream",
              e.code() == grpc.StatusCode.PERMISSION_DENIED, str(e.code()))
    check("no descriptor, pass: passed raw (counted)", p["Hidden"](pb.Query(id="1"),
                                                                  timeout=10).ssn == SSN)
    check("block policy: a described method is masked",
          masked(stubs(channel(PB))["Get"](pb.Query(id="1"), timeout=10)))
    print("# %d failed" % failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
