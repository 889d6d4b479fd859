#!/usr/bin/env python3
"""A deliberately lenient upstream for the bypass suite (fail closed, issue 13).

  bypass_server.py HTTP_PORT[,HTTP_PORT...] LINE_PORT

Every HTTP port serves the same handler, a stock BaseHTTPRequestHandler: it accepts what its
parser accepts (bare LF, several blanks or a tab between the parts of the request line), it
reads no body of a GET (so a body that holds a request is read as the next request), answers
any Upgrade or CONNECT by switching (101 / 200) and then writes raw secrets, and serves the
same JSON with secrets under every label the agent must not be fooled by. LINE_PORT speaks a
line protocol: a banner with secrets on connect, and secrets again for every line received.
"""
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRETS = {"name": "Ann", "ssn": "123-45-6789", "card": "4111111111111111",
           "email": "ann@example.com"}
BODY = json.dumps(SECRETS).encode()
RAW = b"raw " + BODY + b"\r\n"

LABELS = {
    "/json": "application/json",
    "/html": "text/html",
    "/plain": "text/plain",
    "/octet": "application/octet-stream",
    "/xml": "application/xml",
    "/js": "application/javascript",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self, ctype, body, extra=()):
        self.send_response(200)
        for k, v in extra:
            self.send_header(k, v)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def switch(self, code, reason):
        # Switch whether or not anybody asked, then raw bytes: the attacker's server.
        self.wfile.write(b"HTTP/1.1 %d %s\r\n" % (code, reason))
        if code == 101:
            self.wfile.write(b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
        self.wfile.write(b"\r\n" + RAW)
        self.wfile.flush()
        self.close_connection = True

    def do_CONNECT(self):
        self.switch(200, b"Connection established")

    def do_GET(self):
        p = self.path.split("?")[0]
        if p in LABELS:
            self.body(LABELS[p], BODY)
        elif p == "/dupct":
            self.body("application/json", BODY, [("Content-Type", "text/html")])
        elif p == "/utf16":
            self.body("application/json", b"\xff\xfe" + BODY.decode().encode("utf-16-le"))
        elif p == "/utf16nobom":
            self.body("text/plain", BODY.decode().encode("utf-16-le"))
        elif p == "/upgrade":
            self.switch(101, b"Switching Protocols")
        else:
            self.body("application/json", BODY)

    do_POST = do_GET


def line_server(port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(64)

    def serve(c):
        with c:
            try:
                c.sendall(b"220 banner " + RAW)
                while c.recv(4096):
                    c.sendall(b"250 " + RAW)
            except OSError:
                pass

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def main():
    ports = [int(p) for p in sys.argv[1].split(",")]
    threading.Thread(target=line_server, args=(int(sys.argv[2]),), daemon=True).start()
    servers = [ThreadingHTTPServer(("0.0.0.0", p), Handler) for p in ports]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
