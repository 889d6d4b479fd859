#!/usr/bin/env python3
"""Raw-socket client of the bypass suite (fail closed, issue 13), run inside a covered pod.

  bypass_client.py SERVER_IP PORT_FALLBACK PORT_BLOCK PORT_PASS PORT_TUNNELS PORT_LINE

Each case sends exact bytes to bypass_server.py through the agent and reads what comes back
until the connection ends (or 1.5 s of silence). Prints one TAP line per assertion: no raw
secret reaches the caller (also looked for in UTF-16 and UTF-32), except where the policy
passes bytes raw on purpose (onError: pass, tunnels: pass), and the answer the agent gives.
"""
import socket
import sys
import time

SECRETS = [b"123-45-6789", b"4111111111111111", b"ann@example.com"]
failed = 0


def leaks(data):
    """The secrets found in data, as bytes or as UTF-16/32 text at any alignment."""
    views = [data]
    for enc in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        width = 4 if "32" in enc else 2
        for off in range(width):
            views.append(data[off:].decode(enc, errors="ignore").encode("utf-8", "ignore"))
    return sorted({s.decode() for s in SECRETS for v in views if s in v})


def exchange(host, port, chunks, pause=0.05):
    """Send chunks (a pause between them); read until EOF/reset or 1.5 s of silence."""
    s = socket.create_connection((host, port), timeout=5)
    got, end = b"", "eof"
    try:
        for i, c in enumerate(chunks):
            if i:
                time.sleep(pause)
            s.sendall(c)
        s.settimeout(1.5)
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except socket.timeout:
        end = "open"
    except ConnectionResetError:
        end = "reset"
    except BrokenPipeError:
        end = "reset"
    finally:
        s.close()
    return got, end


def status(got):
    line = got.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
        return int(parts[1])
    return 0


def check(name, cond, detail=""):
    global failed
    if cond:
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"not ok - {name} {detail}")


def case(host, port, label, chunks, want_status=None, raw_ok=False, want_reason=None,
         want_masked=False, pause=0.05):
    got, end = exchange(host, port, chunks, pause)
    st, found = status(got), leaks(got)
    detail = f"(status {st}, end {end}, {len(got)} bytes, secrets {found})"
    if raw_ok:
        check(f"{label}: raw bytes passed, as the policy says", found, detail)
    else:
        check(f"{label}: no raw secret at the caller", not found, detail)
    if want_status is not None:
        check(f"{label}: answered {want_status or 'nothing (cut)'}", st == want_status, detail)
    if want_reason:
        check(f"{label}: x-meshmask-reason {want_reason}",
              b"\r\nx-meshmask-reason: " + want_reason.encode() + b"\r\n" in got, detail)
    if want_masked:
        check(f"{label}: the values arrive masked", b"XXX-XX-6789" in got, detail)


def req(path, *headers, method=b"GET", body=b""):
    h = b"".join(x + b"\r\n" for x in headers)
    if body:
        h += b"Content-Length: %d\r\n" % len(body)
    return method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + h + b"\r\n" + body


def main():
    host = sys.argv[1]
    pf, pb, pp, pt, pl = (int(p) for p in sys.argv[2:7])
    close = b"Connection: close"
    lenient = [
        ("bare LF", b"GET /json HTTP/1.1\nHost: x\nConnection: close\n\n", "not_http"),
        ("two spaces", b"GET  /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "not_http"),
        ("a tab", b"GET\t/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "not_http"),
        ("obs-fold", b"GET /json HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n",
         "bad_http"),
    ]
    h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    upgrade = req(b"/upgrade", b"Connection: Upgrade", b"Upgrade: websocket")
    smuggle = req(b"/json", body=req(b"/json")) + req(b"x:443", method=b"CONNECT")
    for port, name in ((pf, "fallback"), (pb, "block")):
        for label, data, reason in lenient:
            case(host, port, f"[{name}] {label}", [data], 400, want_reason=reason)
        case(host, port, f"[{name}] HTTP/2 prior knowledge", [h2], 0)
        case(host, port, f"[{name}] TLS ClientHello",
             [b"\x16\x03\x01\x00\x31\x01\x00\x00\x2d\x03\x03" + b"\x00" * 40], 0)
        case(host, port, f"[{name}] Upgrade asked, the server switches anyway", [upgrade], 502,
             want_reason="tunnel")
        case(host, port, f"[{name}] 101 nobody asked for", [req(b"/upgrade")], 502,
             want_reason="tunnel")
        case(host, port, f"[{name}] Upgrade: h2c the server ignores: answered in HTTP/1.1, masked",
             [req(b"/json", b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
                  b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA")], 200, want_masked=True)
        case(host, port, f"[{name}] CONNECT", [req(b"x:443", method=b"CONNECT")], 403,
             want_reason="tunnel")
        case(host, port, f"[{name}] request/response desync into CONNECT", [smuggle])
        for path in (b"/html", b"/plain", b"/octet", b"/xml", b"/js"):
            case(host, port, f"[{name}] JSON labelled {path.decode()[1:]}",
                 [req(path, close)], 200, want_masked=True)
        case(host, port, f"[{name}] two Content-Type headers", [req(b"/dupct", close)], 502,
             want_reason="bad_http")
        for path in (b"/utf16", b"/utf16nobom"):
            case(host, port, f"[{name}] UTF-16 body {path.decode()}", [req(path, close)], 403,
                 want_reason="bad_charset")
        case(host, port, f"[{name}] a request split byte by byte",
             [bytes([c]) for c in req(b"/json", close)], 200, want_masked=True,
             pause=0.005)  # within the agent's --head-timeout (2 s in bypass.sh)

    # onError: pass: the raw request goes on, the response is still masked.
    case(host, pp, "[pass] two spaces: the response still masked",
         [lenient[1][1]], 200, want_masked=True)
    case(host, pp, "[pass] UTF-16 body passes raw (onError: pass)", [req(b"/utf16", close)], 200,
         raw_ok=True)

    # tunnels: pass: only what a request asked for; a 2xx with a body is no CONNECT answer.
    case(host, pt, "[tunnels pass] Upgrade asked: a tunnel", [upgrade], 101, raw_ok=True)
    case(host, pt, "[tunnels pass] CONNECT: a tunnel", [req(b"x:443", method=b"CONNECT")], 200,
         raw_ok=True)
    case(host, pt, "[tunnels pass] 101 nobody asked for", [req(b"/upgrade")], 502)
    case(host, pt, "[tunnels pass] request/response desync into CONNECT", [smuggle])

    # A line protocol: its banner is entity-scanned (fallback), a line from the client refused.
    case(host, pl, "[line, fallback] server-first banner", [])
    case(host, pl, "[line, fallback] client-first line", [b"HELO x\r\n"])
    print(f"# {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
