#!/usr/bin/env python3
"""Test upstream for the data-path integration tests: customer JSON with sensitive values,
a chunked+gzip response, a value split across TCP segments, and a large streaming body."""
import gzip
import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CUSTOMERS = [
    {"id": 1, "name": "Ada Lovelace", "ssn": "123-45-6789", "card": "4111 1111 1111 1111",
     "email": "ada@example.com", "note": "vip"},
    {"id": 2, "name": "Alan Turing", "ssn": "234-56-7890", "card": "5500 0000 0000 0004",
     "email": "alan@example.org", "note": "regular"},
]
BODY = json.dumps({"customers": CUSTOMERS}).encode()


GZBIG = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        # Head and body are two writes: without this, Nagle holds the body for the peer's
        # delayed ACK (40 ms a response through the agent, whose sockets are TCP_NODELAY).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_json(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/customers"):
            self.send_json(BODY)
        elif self.path == "/gzbig":
            # A large compressed JSON body (about 24 MB decoded, 12-15x): heavy for the agent
            # to decode and mask, within the decompression bound.
            global GZBIG
            if GZBIG is None:
                recs = [b'{"id":%d,"name":"user%d","ssn":"123-45-6789","note":"%x"}' % (i, i, i * 7919)
                        for i in range(400000)]
                GZBIG = gzip.compress(b"[" + b",".join(recs) + b"]", 6)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(GZBIG)))
            self.end_headers()
            self.wfile.write(GZBIG)
        elif self.path == "/gzip":
            z = gzip.compress(BODY)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(z), 37):
                part = z[i:i + 37]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/split":
            # The SSN arrives in three TCP segments, 50 ms apart.
            body = b'{"customers": [{"name": "Ada", "ssn": "123-45-6789", "email": "ada@example.com"}]}'
            cut1 = body.index(b"123-45") + 4
            cut2 = cut1 + 4
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for part in (body[:cut1], body[cut1:cut2], body[cut2:]):
                self.wfile.write(part)
                self.wfile.flush()
                time.sleep(0.05)
        elif self.path.startswith("/big"):
            # /big/<MiB>: a large text/plain body streamed in 64 KiB writes.
            mib = int(self.path.split("/")[2])
            line = (b"x" * 63 + b"\n") * 1024
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(mib * 1024 * 1024))
            self.end_headers()
            for _ in range(mib * 16):
                self.wfile.write(line)
        elif self.path == "/slow":
            # Headers, then a long pause before the body: lets a test kill the agent mid-stream.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.flush()
            time.sleep(30)
            self.wfile.write(BODY)
        elif self.path == "/reset":
            # A close-delimited body cut by a TCP reset: only the RST tells the client.
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Connection: close\r\n\r\npartial body")
            self.wfile.flush()
            time.sleep(0.2)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            self.close_connection = True
        elif self.path == "/upgrade-echo":
            # 101 Switching Protocols, then every byte the client sends comes back, raw,
            # until it half-closes: a tunnel through the agent both ways.
            self.send_response(101)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "echo")
            self.end_headers()
            self.wfile.flush()
            while True:
                b = self.connection.recv(262144)
                if not b:
                    break
                self.connection.sendall(b)
            self.connection.shutdown(socket.SHUT_WR)
            self.close_connection = True
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def do_POST(self):
    if self.path == "/sink":
        # A slow consumer: waits, then reads and counts the body.
        time.sleep(1)
        got = 0
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            # The agent re-frames a body it masks in a stream as chunked.
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                left = size
                while left:
                    b = self.rfile.read(min(65536, left))
                    if not b:
                        break
                    left -= len(b)
                    got += len(b)
                self.rfile.readline()
        else:
            n = int(self.headers.get("Content-Length", "0"))
            while got < n:
                b = self.rfile.read(min(65536, n - got))
                if not b:
                    break
                got += len(b)
        body = str(got).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return
    # /echo: answers what it received, so a test can see what the agent forwarded upstream.
    n = int(self.headers.get("Content-Length", "0"))
    body = self.rfile.read(n)
    self.send_response(200)
    self.send_header("Content-Type", "application/octet-stream")
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)


Handler.do_POST = do_POST


def main():
    port = int(sys.argv[1])
    srv = DualStackServer(("::", port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
