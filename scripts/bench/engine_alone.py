#!/usr/bin/env python3
"""The engine alone on the benchmark payloads: `meshmask mask` over each file, CPU time
(user + sys of the child process) turned into MB/s per core.

  engine_alone.py MESHMASK POLICY FILE...

A file under 50 MB is repeated into one NDJSON stream of about 50 MB (one document per line,
masked as application/x-ndjson: the tokenizer restarts on each line as it would per
response), so process start and policy load (measured on an empty document and subtracted)
stay small against the engine's work. One JSON line per file.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile

TARGET = 50 * 1000 * 1000


def cpu_of(cmd, path):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(path, "rb") as f:
        subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    meshmask, policy, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    base = [meshmask, "mask", "--policy", policy, "--content-type"]
    tmp = tempfile.mkdtemp(prefix="mm-engine-")
    try:
        empty = os.path.join(tmp, "empty.json")
        with open(empty, "w") as f:
            f.write("{}\n")
        startup = min(cpu_of(base + ["application/json", "-"], empty) for _ in range(5))
        for path in files:
            size = os.path.getsize(path)
            src, ct, copies = path, "application/json", 1
            if size < TARGET:
                with open(path, "rb") as f:
                    doc = f.read().rstrip(b"\n") + b"\n"
                copies = -(-TARGET // len(doc))
                src, ct = os.path.join(tmp, "stream.ndjson"), "application/x-ndjson"
                with open(src, "wb") as f:
                    for _ in range(copies):
                        f.write(doc)
            total = os.path.getsize(src)
            cpu = cpu_of(base + [ct, "-"], src)
            net = max(cpu - startup, 1e-9)
            print(json.dumps({"file": os.path.basename(path), "bytes": size, "copies": copies,
                              "cpu_s": round(cpu, 3), "startup_cpu_s": round(startup, 4),
                              "mb_per_s_core": round(total / net / 1e6, 1)}))
            sys.stdout.flush()
            if src != path:
                os.unlink(src)
    finally:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
