#!/usr/bin/env python3
"""grpcio upstream of the grpc suite: mm.it.Customers (unary, server streaming, client
streaming, bidi) and mm.hidden.Hidden, on every port given.

  grpc_server.py GEN_DIR PORT[,PORT...]

GEN_DIR holds customers_pb2.py (protoc --python_out). Every answer carries secrets; Upload
answers with the SSNs it received in a bytes field (bytes are never entity-scanned), so the
client can tell whether its requests were masked on the way.
"""
import sys
import time
from concurrent import futures

import grpc

sys.path.insert(0, sys.argv[1])
import customers_pb2 as pb  # noqa: E402


def customer(i=0, note_kib=0):
    c = pb.Customer(name="Ann %d" % i, ssn="536-22-8710", email="ann@example.com",
                    card="4111111111111111", blob=b"raw-bytes")
    if note_kib:
        c.notes.append("n" * (note_kib * 1024) + " 536-22-8710")
    return c


def get(req, ctx):
    if req.id == "missing":
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no customer missing")
    ctx.set_trailing_metadata((("x-trailer", "kept"),))
    return customer(0, req.note_kib)


def list_(req, ctx):
    for i in range(req.count):
        yield customer(i, req.note_kib)


def upload(it, ctx):
    got = list(it)
    return pb.Customer(name="got %d" % len(got), blob=b";".join(c.ssn.encode() for c in got))


def chat(it, ctx):
    for c in it:
        yield c


def handlers():
    des, ser = pb.Customer.FromString, pb.Customer.SerializeToString
    q = pb.Query.FromString
    return [
        grpc.method_handlers_generic_handler("mm.it.Customers", {
            "Get": grpc.unary_unary_rpc_method_handler(get, q, ser),
            "List": grpc.unary_stream_rpc_method_handler(list_, q, ser),
            "Upload": grpc.stream_unary_rpc_method_handler(upload, des, ser),
            "Chat": grpc.stream_stream_rpc_method_handler(chat, des, ser),
        }),
        grpc.method_handlers_generic_handler("mm.hidden.Hidden", {
            "Get": grpc.unary_unary_rpc_method_handler(get, q, ser),
        }),
    ]


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                         options=[("grpc.max_receive_message_length", 64 << 20),
                                  ("grpc.max_send_message_length", 64 << 20)])
    server.add_generic_rpc_handlers(handlers())
    for p in sys.argv[2].split(","):
        server.add_insecure_port("0.0.0.0:" + p)
    server.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
