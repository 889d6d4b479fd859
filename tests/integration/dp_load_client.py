#!/usr/bin/env python3
"""Load client for dp_workers.sh: N threads, each on its own keep-alive connection, GET a path
in a loop until a deadline; every response body is checked for the raw secrets. Prints one
line at the end: "requests=N raw=N masked=N other=N errors=N". Run inside a pod (netns +
cgroup)."""
import argparse
import http.client
import threading
import time

RAW = (b"123-45-6789", b"234-56-7890", b"4111 1111 1111 1111", b"5500 0000 0000 0004",
       b"ada@example.com", b"alan@example.org")


def worker(a, counts, lock):
    conn = None
    mine = dict(requests=0, raw=0, masked=0, other=0, errors=0)
    while time.time() < a.until:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(a.host, a.port, timeout=5)
            conn.request("GET", a.path)
            body = conn.getresponse().read()
            mine["requests"] += 1
            if any(s in body for s in RAW):
                mine["raw"] += 1
            elif b"XXX-XX-6789" in body:
                mine["masked"] += 1
            else:
                mine["other"] += 1
            if a.new_connections:
                conn.close()
                conn = None
        except Exception:
            mine["errors"] += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
    if conn is not None:
        conn.close()
    with lock:
        for k, v in mine.items():
            counts[k] += v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("until", type=float, help="unix time to stop at")
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--path", default="/customers")
    ap.add_argument("--new-connections", action="store_true",
                    help="a new connection for every request")
    a = ap.parse_args()
    counts = dict(requests=0, raw=0, masked=0, other=0, errors=0)
    lock = threading.Lock()
    ts = [threading.Thread(target=worker, args=(a, counts, lock)) for _ in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(" ".join("%s=%d" % (k, counts[k]) for k in ("requests", "raw", "masked", "other",
                                                       "errors")))


if __name__ == "__main__":
    main()
