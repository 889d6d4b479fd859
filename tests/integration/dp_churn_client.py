#!/usr/bin/env python3
"""Client for dp_churn.sh: GET /customers in a loop until a deadline, one line per attempt:
"<unix time at completion> raw|masked|other|error". Styles: keepalive (one connection,
reopened after an error), perrequest (a new connection each time), pool (like keepalive, but
opened only at --start-at). Run inside a pod (netns + cgroup)."""
import argparse
import http.client
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("style", choices=["keepalive", "perrequest", "pool"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("until", type=float, help="unix time to stop at")
    ap.add_argument("--start-at", type=float, default=0)
    ap.add_argument("--interval", type=float, default=0.02)
    a = ap.parse_args()
    while time.time() < a.start_at:
        time.sleep(0.01)
    conn = None
    out = sys.stdout
    while time.time() < a.until:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(a.host, a.port, timeout=3)
            conn.request("GET", "/customers")
            body = conn.getresponse().read()
            if b"123-45-6789" in body:
                verdict = "raw"
            elif b"XXX-XX-6789" in body:
                verdict = "masked"
            else:
                verdict = "other"
            if a.style == "perrequest":
                conn.close()
                conn = None
        except Exception:
            verdict = "error"
            if conn is not None:
                conn.close()
            conn = None
        out.write("%.3f %s\n" % (time.time(), verdict))
        out.flush()
        time.sleep(a.interval)


if __name__ == "__main__":
    main()
