#!/usr/bin/env python3
"""An h2c (HTTP/2 over cleartext, prior knowledge) upstream for the h2 suite, on python3-h2.

  h2_server.py PORT [CERT KEY]

With CERT and KEY it speaks TLS with ALPN h2 (PORT 0: a free port, printed). Paths: /json (customer JSON with secrets), /html (the same JSON labelled text/html), /big/N
(N MiB of JSON records, streamed as the peer's window allows), /reset (half a body, then
RST_STREAM), /goaway (a JSON answer, then GOAWAY), /trailers (JSON, then trailers), /echo
(the request body back, with the request's content-type), /straddle (an SSN that the first
16 KiB DATA frame's end cuts in two).
"""
import json
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.errors

SECRETS = {"name": "Ann", "ssn": "123-45-6789", "card": "4111111111111111",
           "email": "ann@example.com"}
BODY = json.dumps({"customers": [SECRETS, dict(SECRETS, name="Bob")]}).encode()
RECORD = json.dumps(SECRETS).encode() + b",\n"


class Conn:
    def __init__(self, sock, tls=False):
        self.sock = sock
        self.tls = tls
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.lock = threading.Lock()
        self.window = threading.Condition(self.lock)
        self.bodies = {}

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_body(self, sid, chunks, trailers=None, reset_after=None):
        """Send chunks as the flow-control windows allow (the agent's backpressure)."""
        sent = 0
        for chunk in chunks:
            while chunk:
                with self.lock:
                    while True:
                        try:
                            room = min(self.h2.local_flow_control_window(sid),
                                       self.h2.max_outbound_frame_size)
                        except Exception:
                            return
                        if room > 0:
                            break
                        self.window.wait(5)
                    part, chunk = chunk[:room], chunk[room:]
                    self.h2.send_data(sid, part)
                    self.flush()
                    sent += len(part)
                    if reset_after is not None and sent >= reset_after:
                        self.h2.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
                        self.flush()
                        return
        with self.lock:
            if trailers:
                self.h2.send_headers(sid, trailers, end_stream=True)
            else:
                self.h2.end_stream(sid)
            self.flush()

    def respond(self, sid, headers, body_req):
        path = headers.get(":path", "/")
        ctype = "application/json"
        chunks, trailers, reset_after, goaway = [BODY], None, None, False
        if path == "/html":
            ctype = "text/html"
        elif path.startswith("/big/"):
            n = int(path[5:]) << 20
            block = RECORD * (65536 // len(RECORD))
            chunks = [b"["] + [block] * (n // len(block) + 1) + [b"{}]"]  # one JSON array
        elif path == "/reset":
            # one JSON array, cut by RST_STREAM a quarter of the way through
            chunks, reset_after = [b"[" + b",".join([BODY] * 200) + b"]"], len(BODY) * 50
        elif path == "/trailers":
            trailers = [("x-checksum", "abc"), ("x-note", "ann@example.com")]
        elif path == "/goaway":
            goaway = True
        elif path == "/straddle":
            chunks = [b'{"pad":"' + b"x" * 16362 + b'","ssn":"536-22-8841"}']
        elif path == "/echo":
            ctype = headers.get("content-type", "application/octet-stream")
            chunks = [body_req]
        with self.lock:
            self.h2.send_headers(sid, [(":status", "200"), ("content-type", ctype),
                                       ("x-request-auth", headers.get("authorization", "-"))])
            self.flush()
        self.send_body(sid, chunks, trailers, reset_after)
        if goaway:
            with self.lock:
                self.h2.close_connection()
                self.flush()

    def upgrade(self):
        """An HTTP/1.1 request with Upgrade: h2c (RFC 7540 §3.2): 101, then HTTP/2, its
        answer on stream 1. Returns the bytes after the request head, or None."""
        data = b""
        while b"\r\n\r\n" not in data:
            b = self.sock.recv(65536)
            if not b:
                return None
            data += b
            if data.startswith(b"PRI "):
                return data  # prior knowledge after all
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ")
        hdrs = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        if hdrs.get("upgrade", "").lower() != "h2c" or "http2-settings" not in hdrs:
            self.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return None
        self.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                          b"Upgrade: h2c\r\n\r\n")
        with self.lock:
            self.h2.initiate_upgrade_connection(hdrs["http2-settings"])
            self.flush()
        threading.Thread(target=self.respond, daemon=True,
                         args=(1, {":path": path, ":method": method}, b"")).start()
        return rest

    def run(self):
        first = b"PRI " if self.tls else self.sock.recv(4, socket.MSG_PEEK)
        pending = b""
        if first and first != b"PRI ":
            pending = self.upgrade()
            if pending is None:
                self.sock.close()
                return
        else:
            with self.lock:
                self.h2.initiate_connection()
                self.flush()
        heads = {}
        if pending:
            with self.lock:
                events = self.h2.receive_data(pending)
                self.flush()
        events = events if pending else []
        while True:
            for ev in events:
                if isinstance(ev, h2.events.RequestReceived):
                    heads[ev.stream_id] = {k.decode() if isinstance(k, bytes) else k:
                                           v.decode() if isinstance(v, bytes) else v
                                           for k, v in ev.headers}
                    self.bodies[ev.stream_id] = b""
                elif isinstance(ev, h2.events.DataReceived):
                    self.bodies[ev.stream_id] = self.bodies.get(ev.stream_id, b"") + ev.data
                    with self.lock:
                        self.h2.acknowledge_received_data(ev.flow_controlled_length,
                                                          ev.stream_id)
                        self.flush()
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in heads:
                    threading.Thread(target=self.respond, daemon=True,
                                     args=(ev.stream_id, heads[ev.stream_id],
                                           self.bodies.get(ev.stream_id, b""))).start()
            try:
                data = self.sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            with self.lock:
                try:
                    events = self.h2.receive_data(data)
                except Exception:
                    break
                self.flush()
                self.window.notify_all()
        self.sock.close()


def main():
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(sys.argv[1])))
    ls.listen(64)
    ctx = None
    if len(sys.argv) > 3:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        ctx.set_alpn_protocols(["h2"])
        print(ls.getsockname()[1], flush=True)
    while True:
        c, _ = ls.accept()
        if ctx:
            try:
                c = ctx.wrap_socket(c, server_side=True)
            except OSError:
                c.close()
                continue
        threading.Thread(target=Conn(c, ctx is not None).run, daemon=True).start()


if __name__ == "__main__":
    main()
