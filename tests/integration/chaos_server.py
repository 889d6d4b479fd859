#!/usr/bin/env python3
"""Upstream for the chaos suite (chaos_*.sh): one asyncio process, so thousands of concurrent
connections cost no thread each. HTTP/1.1 keep-alive; every body carries the raw secrets the
clients look for (chaos_client.py RAW).

  /customers       small JSON (the secrets of dp_server.py)
  /pii/<KiB>       JSON of about KiB KiB: records with an SSN, a card and an e-mail
  /gzbomb          gzip JSON that decodes to 1 GiB (1 MB on the wire, about 1000:1)
  /bighead         a response head of 100 KB (a secret in a header)
  /manyheaders     a response head of 300 header lines (a secret in one)
  /resetmid/<KiB>  Content-Length of KiB KiB announced, half of it sent, then a TCP reset
Usage: chaos_server.py PORT [SNDBUF]"""
import asyncio
import json
import socket
import struct
import sys
import zlib

CUSTOMERS = [
    {"id": 1, "name": "Ada Lovelace", "ssn": "123-45-6789", "card": "4111 1111 1111 1111",
     "email": "ada@example.com", "note": "vip"},
    {"id": 2, "name": "Alan Turing", "ssn": "234-56-7890", "card": "5500 0000 0000 0004",
     "email": "alan@example.org", "note": "regular"},
]
BODY = json.dumps({"customers": CUSTOMERS}).encode()
PII = {}
BOMB = None
SNDBUF = 0  # argv[2]: a fixed SO_SNDBUF for every connection (0: the kernel's autotuning)


def pii(kib):
    """A JSON array of records of about KIB KiB (cached)."""
    if kib not in PII:
        recs, n, i = [], 0, 0
        while n < kib * 1024:
            r = json.dumps({"id": i, "name": "user%d" % i, "ssn": "123-45-6789",
                            "card": "4111 1111 1111 1111", "email": "ada@example.com",
                            "note": "n%x" % (i * 7919)}).encode()
            recs.append(r)
            n += len(r) + 1
            i += 1
        PII[kib] = b"[" + b",".join(recs) + b"]"
    return PII[kib]


def bomb():
    """1 GiB of JSON (a secret before and after 1 GiB of zeros in a string) as gzip. Built from
    one raw-deflate piece per MiB of zeros, each ended by a full flush (no reference across
    it), so the piece is the same every time and is compressed once."""
    global BOMB
    if BOMB is None:
        head = b'{"ssn":"123-45-6789","email":"ada@example.com","pad":"'
        tail = b'","card":"4111 1111 1111 1111"}'
        zero = b"0" * 1048576

        def raw(data, mode):
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            return c.compress(data) + c.flush(mode)

        piece = raw(zero, zlib.Z_FULL_FLUSH)
        crc = zlib.crc32(head)
        for _ in range(1024):
            crc = zlib.crc32(zero, crc)
        crc = zlib.crc32(tail, crc)
        size = len(head) + 1024 * len(zero) + len(tail)
        BOMB = (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + raw(head, zlib.Z_FULL_FLUSH) +
                piece * 1024 + raw(tail, zlib.Z_FINISH) +
                struct.pack("<II", crc, size & 0xffffffff))
    return BOMB


def head(status, headers):
    return ("HTTP/1.1 %s\r\n" % status).encode() + b"".join(
        b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers) + b"\r\n"


def answer(ctype, body, extra=()):
    return head("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))] +
                list(extra)) + body


async def serve(reader, writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if SNDBUF:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            clen = 0
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                if h.lower().startswith(b"content-length:"):
                    clen = int(h.split(b":", 1)[1])
            if clen:
                await reader.readexactly(clen)
            parts = line.split()
            path = parts[1].decode() if len(parts) > 1 else "/"
            if path.startswith("/customers"):
                writer.write(answer("application/json", BODY))
            elif path.startswith("/pii/"):
                # In 64 KiB writes, each drained: thousands of connections must not make this
                # process hold a copy of every body.
                body = memoryview(pii(int(path.split("/")[2])))
                writer.write(head("200 OK", [("Content-Type", "application/json"),
                                             ("Content-Length", str(len(body)))]))
                for i in range(0, len(body), 65536):
                    writer.write(body[i:i + 65536])
                    await writer.drain()
            elif path == "/gzbomb":
                body = await asyncio.get_running_loop().run_in_executor(None, bomb)
                writer.write(answer("application/json", body, [("Content-Encoding", "gzip")]))
            elif path == "/bighead":
                hs = [("X-Pad-%d" % i, "p" * 990) for i in range(100)]
                writer.write(answer("application/json", BODY, hs + [("X-Ssn", "123-45-6789")]))
            elif path == "/manyheaders":
                hs = [("X-H-%d" % i, "v") for i in range(300)]
                writer.write(answer("application/json", BODY, hs + [("X-Ssn", "123-45-6789")]))
            elif path.startswith("/resetmid/"):
                body = pii(int(path.split("/")[2]))
                writer.write(head("200 OK", [("Content-Type", "application/json"),
                                             ("Content-Length", str(len(body)))]))
                writer.write(body[:len(body) // 2])
                await writer.drain()
                await asyncio.sleep(0.05)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            else:
                writer.write(head("404 Not Found", [("Content-Length", "0")]))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    global SNDBUF
    port = int(sys.argv[1])
    SNDBUF = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    srv = await asyncio.start_server(serve, "0.0.0.0", port, backlog=8192, limit=1 << 20)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
