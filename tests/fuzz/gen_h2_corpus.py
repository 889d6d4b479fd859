#!/usr/bin/env python3
"""Seeds of fuzz_h2 (tests/fuzz/corpus/h2): real HTTP/2 exchanges made by python3-h2, as
fuzz_h2 reads them: 2 bytes client length L, a policy selector, a chunk size, the client's
bytes after the 24-byte preface, the server's bytes. Run: gen_h2_corpus.py OUT_DIR."""
import gzip
import json
import os
import struct
import sys

import h2.config
import h2.connection

BODY = json.dumps({"name": "Ann", "ssn": "123-45-6789", "card": "4111111111111111"}).encode()


def grpc_msg(payload, packed=False):
    data = gzip.compress(payload) if packed else payload
    return struct.pack(">BI", 1 if packed else 0, len(data)) + data


def exchange(requests, respond, sel, chunk):
    cli = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    srv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    cli.initiate_connection()
    srv.initiate_connection()
    c, s = cli.data_to_send(), srv.data_to_send()
    for sid, headers, body in requests:
        cli.send_headers(sid, headers, end_stream=not body)
        if body:
            cli.send_data(sid, body, end_stream=True)
    c += cli.data_to_send()
    srv.receive_data(c)
    s += srv.data_to_send()
    for sid, _, _ in requests:
        respond(srv, sid)
    s += srv.data_to_send()
    c = c[24:]
    return struct.pack(">HBB", len(c), sel, chunk) + c + s


def json_resp(ctype, trailers=False):
    def r(srv, sid):
        srv.send_headers(sid, [(":status", "200"), ("content-type", ctype)])
        srv.send_data(sid, BODY[:20])
        if trailers:
            srv.send_data(sid, BODY[20:])
            srv.send_headers(sid, [("x-sum", "1")], end_stream=True)
        else:
            srv.send_data(sid, BODY[20:], end_stream=True)
    return r


def grpc_resp(packed):
    def r(srv, sid):
        hs = [(":status", "200"), ("content-type", "application/grpc")]
        if packed:
            hs.append(("grpc-encoding", "gzip"))
        srv.send_headers(sid, hs)
        m = grpc_msg(b"\x12\x0b123-45-6789\x1a\x10" + b"4111111111111111", packed)
        srv.send_data(sid, m[:7])
        srv.send_data(sid, m[7:] + m)
        srv.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    return r


def reset_resp(srv, sid):
    srv.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
    srv.send_data(sid, BODY[:10])
    srv.reset_stream(sid)


def main():
    out = sys.argv[1]
    get = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/j"),
           ("authorization", "Bearer a@b.example")]
    post = [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
            (":path", "/pkg.S/M"), ("content-type", "application/grpc"), ("te", "trailers")]
    seeds = {
        "json": exchange([(1, get, b"")], json_resp("application/json"), 0, 7),
        "json-trailers": exchange([(1, get, b"")], json_resp("application/json", True), 1, 1),
        "html": exchange([(1, get, b"")], json_resp("text/html"), 2, 13),
        "streams": exchange([(1, get, b""), (3, get, b""), (5, get, b"")],
                            json_resp("application/json"), 0x80, 5),
        "grpc": exchange([(1, post, grpc_msg(b"\x0a\x01x"))], grpc_resp(False), 1, 3),
        "grpc-gzip": exchange([(1, post + [("grpc-encoding", "gzip")],
                               grpc_msg(b"\x0a\x01x", True))], grpc_resp(True), 0, 11),
        "grpc-pass": exchange([(1, post, grpc_msg(b"\x0a\x01x"))], grpc_resp(False), 2, 64),
        "reset": exchange([(1, get, b"")], reset_resp, 0, 9),
        "observe": exchange([(1, get, b"")], json_resp("application/json"), 3, 96),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
