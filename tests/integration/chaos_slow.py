#!/usr/bin/env python3
"""Slowloris for the chaos suite: TRICKLE connections that send a request head one byte every
INTERVAL seconds, and SILENT connections that send nothing, held until the server closes them
or DURATION runs out. Prints one JSON object per kind: opened, refused (connect failed),
closed (by the server), at_once (closed unanswered within 0.5 s: not taken), close_min_s/
close_p50_s/close_max_s (seconds from connect to the close), answered (an HTTP status line received) with the status counts, raw
(a raw secret received: must never happen) and open (still open at the end).
Usage: chaos_slow.py HOST PORT [--trickle N] [--silent N] [--interval S] [--duration S]
       [--source IP]"""
import argparse
import json
import select
import socket
import statistics
import time

RAW = (b"123-45-6789", b"234-56-7890", b"4111 1111 1111 1111", b"ada@example.com")
HEAD = b"GET /customers HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 4000 + b"\r\n\r\n"


class Slow:
    def __init__(self, kind, s, t0):
        self.kind, self.s, self.t0 = kind, s, t0
        self.sent = 0
        self.got = b""
        self.closed = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--trickle", type=int, default=0)
    ap.add_argument("--silent", type=int, default=0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--source", help="bind to this source address first")
    a = ap.parse_args()
    conns, refused = [], {"trickle": 0, "silent": 0}
    for kind, n in (("trickle", a.trickle), ("silent", a.silent)):
        for _ in range(n):
            s = socket.socket()
            try:
                if a.source:
                    s.bind((a.source, 0))
                s.settimeout(5)
                s.connect((a.host, a.port))
                s.setblocking(False)
                conns.append(Slow(kind, s, time.time()))
            except OSError:
                refused[kind] += 1
                s.close()
    end = time.time() + a.duration
    next_byte = time.time()
    while time.time() < end and any(c.closed is None for c in conns):
        now = time.time()
        if now >= next_byte:
            for c in conns:
                if c.kind == "trickle" and c.closed is None and c.sent < len(HEAD):
                    try:
                        c.s.send(HEAD[c.sent:c.sent + 1])
                        c.sent += 1
                    except OSError:
                        pass  # seen as a close by the read below
            next_byte = now + a.interval
        live = [c for c in conns if c.closed is None]
        r, _, _ = select.select([c.s for c in live], [], [], min(0.1, max(0, end - now)))
        for c in live:
            if c.s not in r:
                continue
            try:
                b = c.s.recv(65536)
            except OSError:
                b = b""
            if b:
                c.got += b
            else:
                c.closed = time.time()
    out = {}
    for kind in ("trickle", "silent"):
        cs = [c for c in conns if c.kind == kind]
        shut = [c.closed - c.t0 for c in cs if c.closed is not None]
        status = {}
        for c in cs:
            if c.got.startswith(b"HTTP/1."):
                k = c.got.split(b" ", 2)[1].decode()
                status[k] = status.get(k, 0) + 1
        out[kind] = dict(
            opened=len(cs), refused=refused[kind], closed=len(shut),
            open=len(cs) - len(shut), answered=sum(status.values()), status=status,
            raw=sum(1 for c in cs if any(x in c.got for x in RAW)),
            at_once=sum(1 for c in cs if c.closed is not None and not c.got and
                        c.closed - c.t0 < 0.5),
            close_min_s=round(min(shut), 2) if shut else None,
            close_p50_s=round(statistics.median(shut), 2) if shut else None,
            close_max_s=round(max(shut), 2) if shut else None)
    for c in conns:
        c.s.close()
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
