#!/usr/bin/env python3
"""Loop client of the chaos suite (chaos_*.sh). Every byte of every response (head, body
de-chunked, gzip decoded, a partial body cut by a reset included) is checked for the raw
secrets; each exchange is counted as raw, masked (the masked SSN seen), other (a complete
answer without either, e.g. a 4xx/5xx) or error (refused, reset, timeout, cut short).

Loop mode (default): THREADS threads, each on a keep-alive connection (or a new one per
request), cycle through the --path list until --duration or --stop-file. A path may ask for a
hostile request head: "bighead:/x" (a 100 KB header), "manyheaders:/x" (300 header lines).
Burst mode (--burst N): N connections opened at once, all held, then one request on each, all
read at once (asyncio: no thread per connection).

Prints one JSON object: requests, raw, masked, other, errors, status counts, latency
p50/p99/max (ms), and the same per path. --log FILE writes "start end outcome status path"
per exchange (unix seconds), for recovery times. Run inside a pod (netns + cgroup)."""
import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import threading
import time
import zlib

RAW = (b"123-45-6789", b"234-56-7890", b"4111 1111 1111 1111", b"5500 0000 0000 0004",
       b"ada@example.com", b"alan@example.org")
MASKED = b"XXX-XX-6789"
OVERLAP = max(len(s) for s in RAW)
GZIP_SCAN_MAX = 64 << 20  # decoded bytes scanned per gzip body (a bomb may be passed on)


class Scan:
    """Raw secrets and the mask marker in a stream of pieces (a secret may span two)."""

    def __init__(self):
        self.tail = b""
        self.raw = False
        self.masked = False

    def feed(self, b):
        if not b:
            return
        w = self.tail + b
        if not self.raw and any(s in w for s in RAW):
            self.raw = True
        if not self.masked and MASKED in w:
            self.masked = True
        self.tail = w[-OVERLAP:]


class Body:
    """De-frames a response body (Content-Length, chunked, close-delimited) fed in pieces,
    decodes gzip/deflate, scans what it gets."""

    def __init__(self, headers):
        self.scan = Scan()
        te = headers.get("transfer-encoding", "").lower()
        self.chunked = "chunked" in te
        self.left = int(headers["content-length"]) if "content-length" in headers and \
            not self.chunked else None
        ce = headers.get("content-encoding", "").lower()
        self.dec = zlib.decompressobj(31 if ce == "gzip" else 15) if ce in ("gzip", "deflate") \
            else None
        self.decoded = 0
        self.buf = b""
        self.chunk_left = 0
        self.state = "size"  # chunked: size, data, crlf, trailer
        self.done = self.left == 0

    def _data(self, b):
        if self.dec is None:
            self.scan.feed(b)
            return
        if self.decoded >= GZIP_SCAN_MAX:
            return
        try:
            while b and self.decoded < GZIP_SCAN_MAX:
                out = self.dec.decompress(b, 1 << 20)
                self.decoded += len(out)
                self.scan.feed(out)
                b = self.dec.unconsumed_tail
        except zlib.error:
            self.decoded = GZIP_SCAN_MAX  # what decoded so far was scanned

    def feed(self, b):
        """Returns the bytes past the end of the body (the next response's)."""
        if self.left is not None:
            take = b[:self.left]
            self.left -= len(take)
            self._data(take)
            self.done = self.left == 0
            return b[len(take):]
        if not self.chunked:
            self._data(b)
            return b""
        self.buf += b
        while not self.done:
            if self.state == "data":
                take = self.buf[:self.chunk_left]
                self._data(take)
                self.chunk_left -= len(take)
                self.buf = self.buf[len(take):]
                if self.chunk_left:
                    return b""
                self.state = "crlf"
                continue
            i = self.buf.find(b"\r\n")
            if i < 0:
                return b""
            line, self.buf = self.buf[:i], self.buf[i + 2:]
            if self.state == "size":
                size = int(line.split(b";")[0], 16)
                self.state = "data" if size else "trailer"
                self.chunk_left = size
            elif self.state == "crlf":
                self.state = "size"
            else:  # trailer lines until an empty one
                self.scan.feed(line)
                if not line:
                    self.done = True
        rest, self.buf = self.buf, b""
        return rest


def parse_head(h):
    lines = h.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return status, headers


def request_bytes(spec, host):
    kind, _, path = spec.rpartition(":")
    extra = b""
    if kind == "bighead":
        extra = b"Cookie: " + b"c" * 100000 + b"\r\n"
    elif kind == "manyheaders":
        extra = b"".join(b"X-Many-%d: v\r\n" % i for i in range(300))
    return b"GET %s HTTP/1.1\r\nHost: %s\r\nAccept-Encoding: gzip\r\n%s\r\n" % (
        path.encode(), host.encode(), extra)


class Conn:
    """A blocking keep-alive connection (loop mode)."""

    def __init__(self, host, port, timeout):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.rest = b""

    def recv(self):
        if self.rest:
            b, self.rest = self.rest, b""
            return b
        return self.s.recv(262144)

    def exchange(self, req):
        """(status, scan, complete, keep): the response to REQ, scanned as it arrives."""
        self.s.sendall(req)
        scan, buf = Scan(), b""
        while b"\r\n\r\n" not in buf:
            b = self.recv()
            if not b:
                scan.feed(buf)
                return None, scan, False, False
            buf += b
            if len(buf) > (4 << 20):
                scan.feed(buf)
                return None, scan, False, False
        h, _, rest = buf.partition(b"\r\n\r\n")
        scan.feed(h)
        status, headers = parse_head(h)
        body = Body(headers)
        if status in (204, 304) or 100 <= status < 200:
            body.done, body.left = True, 0
        clean_eof = False
        while True:
            if rest:
                after = body.feed(rest)
                rest = b""
                if body.done:
                    self.rest = after  # the start of a pipelined answer (none expected)
            if body.done:
                break
            try:
                rest = self.recv()
            except OSError:  # a reset (or a timeout): the body is cut, whatever its framing
                break
            if not rest:
                clean_eof = True
                break
        scan.raw |= body.scan.raw
        scan.masked |= body.scan.masked
        complete = body.done or (clean_eof and body.left is None and not body.chunked)
        keep = body.done and headers.get("connection", "").lower() != "close"
        return status, scan, complete, keep

    def close(self):
        self.s.close()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.rows = []  # (start, end, outcome, status, path)

    def add(self, *row):
        with self.lock:
            self.rows.append(row)


def summary(rows):
    def agg(rs):
        d = dict(requests=len(rs), raw=0, masked=0, other=0, errors=0, status={})
        for r in rs:
            key = {"raw": "raw", "masked": "masked", "other": "other"}.get(r[2], "errors")
            d[key] += 1
            if r[3]:
                d["status"][str(r[3])] = d["status"].get(str(r[3]), 0) + 1
        lat = sorted((r[1] - r[0]) * 1000 for r in rs if r[2] != "error")
        if lat:
            d["p50_ms"] = round(statistics.median(lat), 2)
            d["p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2)
            d["max_ms"] = round(lat[-1], 2)
        return d

    out = agg(rows)
    paths = sorted(set(r[4] for r in rows))
    if len(paths) > 1:
        out["paths"] = {p: agg([r for r in rows if r[4] == p]) for p in paths}
    return out


def outcome(scan, complete):
    if scan.raw:
        return "raw"  # whatever else happened: a raw byte reached the caller
    if not complete:
        return "error"
    return "masked" if scan.masked else "other"


def loop_worker(a, stats, stop):
    conn, i = None, 0
    while not stop():
        spec = a.path[i % len(a.path)]
        i += 1
        t0 = time.time()
        try:
            if conn is None:
                conn = Conn(a.host, a.port, a.timeout)
            status, scan, complete, keep = conn.exchange(request_bytes(spec, a.host))
            stats.add(t0, time.time(), outcome(scan, complete), status or 0, spec)
            if not keep or a.new_connections:
                conn.close()
                conn = None
        except OSError as e:
            stats.add(t0, time.time(), "error", 0, spec)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(a.error_pause)
        if a.pause:
            time.sleep(a.pause)
    if conn is not None:
        conn.close()


async def burst_one(a, gate, stats, counts):
    spec = a.path[0]
    try:
        sock = None
        if a.rcvbuf:
            # A fixed receive buffer (no autotuning): thousands of slow readers must not
            # push the machine's TCP memory into pressure, which stalls every socket.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (a.host, a.port))
            r, w = await asyncio.open_connection(sock=sock)
        else:
            r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port), a.timeout)
    except (OSError, asyncio.TimeoutError):
        counts["connect_errors"] += 1
        stats.add(time.time(), time.time(), "error", 0, spec)
        return
    counts["connected"] += 1
    await gate.wait()  # every connection open before any request
    if a.stagger:
        await asyncio.sleep(random.uniform(0, a.stagger))
    t0 = time.time()
    scan, complete, status = Scan(), False, 0
    try:
        w.write(request_bytes(spec, a.host).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        await w.drain()
        h = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), a.timeout)
        scan.feed(h)
        status, headers = parse_head(h[:-4])
        body = Body(headers)
        while not body.done:
            b = await asyncio.wait_for(r.read(262144), a.timeout)
            if not b:
                break
            body.feed(b)
        scan.raw |= body.scan.raw
        scan.masked |= body.scan.masked
        complete = body.done or (body.left is None and not body.chunked)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        w.close()
    stats.add(t0, time.time(), outcome(scan, complete), status, spec)


async def burst(a, stats):
    counts = dict(connected=0, connect_errors=0)
    gate = asyncio.Event()
    tasks = [asyncio.create_task(burst_one(a, gate, stats, counts)) for _ in range(a.burst)]
    t0 = time.time()
    while counts["connected"] + counts["connect_errors"] < a.burst and \
            time.time() - t0 < a.timeout:
        await asyncio.sleep(0.05)
    held = counts["connected"]
    if a.ready_file:
        with open(a.ready_file, "w") as f:
            f.write("%d\n" % held)
    gate.set()
    await asyncio.gather(*tasks)
    return dict(held=held, connect_errors=counts["connect_errors"],
                seconds=round(time.time() - t0, 2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--path", action="append", help="repeatable; cycled through")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--stop-file", help="stop once this file exists")
    ap.add_argument("--new-connections", action="store_true")
    ap.add_argument("--pause", type=float, default=0, help="seconds between requests")
    ap.add_argument("--error-pause", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--burst", type=int, default=0)
    ap.add_argument("--ready-file", help="burst: written once every connection is open")
    ap.add_argument("--rcvbuf", type=int, default=0, help="burst: SO_RCVBUF of each socket")
    ap.add_argument("--stagger", type=float, default=0,
                    help="burst: each request sent after a random delay of up to this (s)")
    ap.add_argument("--log")
    a = ap.parse_args()
    a.path = a.path or ["/customers"]
    stats = Stats()
    extra = {}
    if a.burst:
        extra = asyncio.run(burst(a, stats))
    else:
        end = time.time() + a.duration if a.duration else None

        def stop():
            return (end is not None and time.time() >= end) or \
                (a.stop_file is not None and os.path.exists(a.stop_file))

        ts = [threading.Thread(target=loop_worker, args=(a, stats, stop))
              for _ in range(a.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    if a.log:
        with open(a.log, "w") as f:
            for r in sorted(stats.rows):
                f.write("%.6f %.6f %s %d %s\n" % r)
    out = summary(stats.rows)
    out.update(extra)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
