#!/usr/bin/env python3
"""HTTPS test server of the TLS suites: prints its port, then serves
  /              one JSON document (argv[3], default: a name, an SSN, a card and an email)
  /big           a JSON document whose card straddles the first 16 KiB TLS record of the body
  /slow          / after 2.5 s
  /stream?mb=N   N MiB of JSON lines, each with an SSN and a card
Usage: tls_server.py CERT KEY [BODY]"""
import http.server
import json
import ssl
import sys
import time
import urllib.parse

SECRETS = {"name": "Ann", "ssn": "536-22-8841", "card": "4111 1111 1111 1111",
           "email": "ann@example.com"}
root = sys.argv[3].encode() if len(sys.argv) > 3 else json.dumps(SECRETS).encode()
prefix = b'{"pad": "'
big = prefix + b"x" * (16384 - len(prefix) - 12 - 8) + b'", "c": "4111 1111 1111 1111"}'
line = b'{"ssn": "536-22-8841", "card": "4111 1111 1111 1111", "pad": "' + b"x" * 40 + b'"}\n'
block = line * (65536 // len(line))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_json(self, length):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path == "/stream":
            n = (int(urllib.parse.parse_qs(u.query).get("mb", ["1"])[0]) << 20) // len(block)
            self.send_json(n * len(block))
            try:
                for _ in range(n):
                    self.wfile.write(block)
            except OSError:
                pass
            return
        if u.path == "/slow":
            time.sleep(2.5)
        body = big if u.path == "/big" else root
        self.send_json(len(body))
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
