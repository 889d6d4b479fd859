#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Identity resolver against a fake Kubernetes API server on loopback (HTTPS, a CA made here).

The server serves GET /api/v1/pods with a fieldSelector: a paginated list and a chunked watch
stream (events split across chunks), checks the bearer token, can expire a watch (an ERROR 410
event, forcing a relist) and send an oversized event. identity_harness (identity.c + kube.c)
runs the real list/watch thread; lookups must follow the events, a wrong CA and a wrong host
name must be refused, and a rotated token file must be picked up on reconnect. The same
client's generic request (kube_request) sends a server-side apply PATCH to a custom resource's
status, and reads the answer, bounded.

In --serve mode (the data-path tests) it also serves the policy resources of issue 18:
MaskingPolicy and ClusterMaskingPolicy (list and watch, from files under DIR/crd, with
metadata.generation bumped on each spec change), GET /api/v1/nodes/NAME (node-1, node-2),
server-side apply of MaskingPolicyNodeStatus objects (each request appended to
DIR/patches.jsonl; the objects are listed and watched too), server-side apply of a policy's
status subresource (DIR/status.jsonl; a MODIFIED event of the same generation follows, as
from a real API server), server-side apply of a policy itself (`meshmask policy push
--cluster`: written to DIR/crd, so it becomes events like a file; DIR/applies.jsonl), and
coordination.k8s.io/v1 Leases (GET, POST, PUT with resourceVersion checks: 409 on a stale
one; each write appended to DIR/leases.jsonl), and the agents' own Pods (list and watch of
/api/v1/namespaces/NS/pods from DIR/agents.json, {"node": ready}; the queries seen are written
to DIR/pod_queries.json). Callers authenticate with the bearer token or
a client certificate signed by DIR/ca.crt (DIR/client.crt, DIR/client.key). Controls are files
under DIR/ctl: `compact` (the next change makes no watch event and every watch gets ERROR 410,
so only a relist sees it), `drop` (every watch connection is cut without a clean end),
`touch` (a status-only MODIFIED event: same generation, for a resource "plural ns name"),
`delnode` (a node NAME leaves: its Node is deleted and, as the garbage collector does, the
MaskingPolicyNodeStatus objects it owns).
Usage: identity_kube.py IDENTITY_HARNESS | identity_kube.py --serve DIR
"""
import copy
import http.server
import json
import os
import shutil
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

NODE = "node-1"
UID_A = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
UID_B = "11111111-2222-3333-4444-555555555555"
UID_C = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
UID_D = "d0d0d0d0-0000-4000-8000-000000000001"
UID_E = "e0e0e0e0-0000-4000-8000-000000000002"
UID_F = "f0f0f0f0-0000-4000-8000-000000000003"
CID = "3a5f8e0c9b7d6a4f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a99"
CONT = "tok&1=+/ x"  # a continue token that needs escaping


def cgroupfs(uid):
    return f"/kubepods/burstable/pod{uid}/{CID}"


def systemd(uid):
    u = uid.replace("-", "_")
    return (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/"
            f"cri-containerd-{CID}.scope")


def pod(uid, ns, name, sa=None, labels=None):
    o = {"kind": "Pod", "metadata": {"uid": uid, "namespace": ns, "name": name},
         "spec": {"nodeName": NODE}}
    if sa:
        o["spec"]["serviceAccountName"] = sa
    if labels:
        o["metadata"]["labels"] = labels
    return o


class State:
    def __init__(self):
        self.cond = threading.Condition()
        self.pods = {}
        self.rv = 100
        self.log = []
        self.token = "token-one"
        self.gen = 0
        self.expire_once = False
        self.oversize_once = False
        self.lists = 0
        self.watches = 0
        self.unauthorized = 0
        self.bad_selector = 0
        self.continues_ok = 0

    def event(self, typ, obj, log=True):
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            uid = obj["metadata"]["uid"]
            if typ == "DELETED":
                self.pods.pop(uid, None)
            else:
                self.pods[uid] = obj
            if log:
                self.log.append((self.rv, typ, obj))
            self.cond.notify_all()

    def end_watches(self):
        with self.cond:
            self.gen += 1
            self.cond.notify_all()


S = State()

NODE_UID = "6b1c2d3e-0000-4000-8000-00000000abcd"
NODES = {NODE: NODE_UID, "node-2": "6b1c2d3e-0000-4000-8000-00000000abce"}
PLURALS = ("maskingpolicies", "clustermaskingpolicies")
NSTATUS = "maskingpolicynodestatuses"
AGENTPODS = "agentpods"  # the agents' own Pods, GET /api/v1/namespaces/NS/pods?labelSelector=
KINDS = {"maskingpolicies": "MaskingPolicy", "clustermaskingpolicies": "ClusterMaskingPolicy",
         NSTATUS: "MaskingPolicyNodeStatus", AGENTPODS: "Pod"}
API = "/apis/meshmask.io/v1alpha1/"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/"


class Resources:
    """The policy resources: objects by (plural, ns, name), one event log (rv shared with S)."""

    def __init__(self):
        self.objs = {}
        self.log = []
        self.expire = {p: False for p in PLURALS + (NSTATUS, AGENTPODS)}
        self.drop_gen = 0
        self.lists = {p: 0 for p in PLURALS}
        self.watches = {p: 0 for p in PLURALS}
        self.patch_dir = None
        self.nodestatus = {}
        self.leases = {}
        self.lists[NSTATUS] = self.lists[AGENTPODS] = 0
        self.watches[NSTATUS] = self.watches[AGENTPODS] = 0
        self.pod_queries = set()

    def event(self, typ, plural, obj, log=True):
        with S.cond:
            S.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(S.rv)
            k = (plural, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            if typ == "DELETED":
                self.objs.pop(k, None)
            else:
                self.objs[k] = obj
            if log:
                self.log.append((S.rv, typ, plural, obj))
            S.cond.notify_all()


R = Resources()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def authorized(self):
        """The bearer token, or a client certificate the cluster CA signed."""
        if self.headers.get("Authorization") == "Bearer " + S.token:
            return True
        try:
            return bool(self.connection.getpeercert())
        except (AttributeError, ValueError):
            return False

    def record(self, name, rec):
        with open(os.path.join(R.patch_dir, name), "a") as f:
            f.write(json.dumps(rec) + "\n")

    def do_PATCH(self):
        """Server-side apply of a MaskingPolicy status: echoes what it received."""
        u = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self.authorized():
            return self.reply(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
        pfx = "/apis/meshmask.io/v1alpha1/maskingpolicynodestatuses/"
        if u.path.startswith(pfx) and R.patch_dir:
            rec = {"t": time.time(), "name": u.path[len(pfx):], "query": u.query,
                   "ct": self.headers.get("Content-Type"), "body": json.loads(body or b"null")}
            self.record("patches.jsonl", rec)
            R.nodestatus[rec["name"]] = rec["body"]
            o = copy.deepcopy(rec["body"])
            o.setdefault("metadata", {})["name"] = rec["name"]
            old = R.objs.get((NSTATUS, "", rec["name"]))
            R.event("MODIFIED" if old else "ADDED", NSTATUS, o)
            return self.reply(200, rec["body"])
        if R.patch_dir and u.path.startswith(API):
            return self.apply(u, body)
        if not u.path.startswith("/apis/meshmask.io/v1alpha1/maskingpolicies/"):
            return self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        if u.path.endswith("/big"):
            return self.reply(200, {"blob": "x" * 10000})
        self.reply(200, {"ct": self.headers.get("Content-Type"), "query": u.query,
                         "got": json.loads(body or b"null")})

    def apply(self, u, body):
        """Server-side apply of a policy (PLURAL/NAME) or of its status (PLURAL/NAME/status),
        namespaced paths as namespaces/NS/maskingpolicies/NAME."""
        parts = u.path[len(API):].split("/")
        ns = "-"
        if len(parts) >= 2 and parts[0] == "namespaces":
            ns, parts = parts[1], parts[2:]
        sub = parts[2] if len(parts) == 3 else None
        if len(parts) not in (2, 3) or parts[0] not in PLURALS or sub not in (None, "status") \
                or (parts[0] == "maskingpolicies") != (ns != "-"):
            return self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        plural, name = parts[0], parts[1]
        try:
            doc = json.loads(body)
        except ValueError:
            return self.reply(400, {"kind": "Status", "code": 400, "reason": "BadRequest"})
        rec = {"t": time.time(), "plural": plural, "namespace": ns, "name": name,
               "query": u.query, "ct": self.headers.get("Content-Type"), "body": doc,
               "auth": "token" if self.headers.get("Authorization") else "cert"}
        k = (plural, "" if ns == "-" else ns, name)
        if sub == "status":
            self.record("status.jsonl", rec)
            with S.cond:
                old = R.objs.get(k)
            if old is None:
                return self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            o = copy.deepcopy(old)
            o["status"] = doc.get("status", {})
            R.event("MODIFIED", plural, o)
            return self.reply(200, o)
        self.record("applies.jsonl", rec)
        md = doc.get("metadata", {})
        if doc.get("kind") != KINDS[plural] or md.get("name") != name or \
                md.get("namespace", "-") != ns or "spec" not in doc:
            return self.reply(400, {"kind": "Status", "code": 400, "reason": "BadRequest",
                                    "message": "kind, name or namespace differ from the URL"})
        # One rule of the CRD schema, refused as the real API server words it.
        for i, rule in enumerate(doc["spec"].get("rules", [])):
            kl = rule.get("action", {}).get("keepLast", 0)
            if isinstance(kl, int) and kl < 0:
                field = f"spec.rules[{i}].action.keepLast"
                return self.reply(422, {
                    "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                    "reason": "Invalid",
                    "message": f'{KINDS[plural]}.meshmask.io "{name}" is invalid: {field}: '
                               f'Invalid value: {kl}: {field} in body should be greater '
                               'than or equal to 0',
                    "details": {"name": name, "group": "meshmask.io", "kind": KINDS[plural],
                                "causes": [{"reason": "FieldValueInvalid", "field": field,
                                            "message": f"Invalid value: {kl}: {field} in body "
                                                       "should be greater than or equal to 0"}]}})
        f = {"spec": doc["spec"]}
        if md.get("annotations"):
            f["metadata"] = {"annotations": md["annotations"]}
        path = os.path.join(R.patch_dir, "crd", f"{plural}__{ns}__{name}.json")
        with open(path + ".new", "w") as fh:
            json.dump(f, fh)
        os.rename(path + ".new", path)
        return self.reply(200, dict(doc, apiVersion="meshmask.io/v1alpha1"))

    def lease(self, method):
        u = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length", "0") or 0)
        body = json.loads(self.rfile.read(n) or b"null") if n else None
        if not self.authorized():
            return self.reply(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
        parts = u.path[len(LEASES):].split("/")
        if len(parts) not in (2, 3) or parts[1] != "leases":
            return self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        ns = parts[0]
        name = parts[2] if len(parts) == 3 else (body or {}).get("metadata", {}).get("name")
        with S.cond:
            cur = R.leases.get((ns, name))
            if method == "GET":
                if cur is None:
                    return self.reply(404, {"kind": "Status", "code": 404,
                                            "reason": "NotFound"})
                return self.reply(200, cur)
            if method == "POST" and cur is not None or method == "PUT" and (
                    cur is None or body.get("metadata", {}).get("resourceVersion")
                    != cur["metadata"]["resourceVersion"]):
                return self.reply(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
            S.rv += 1
            o = copy.deepcopy(body)
            o["metadata"]["resourceVersion"] = str(S.rv)
            o["metadata"]["namespace"] = ns
            R.leases[(ns, name)] = o
            self.record("leases.jsonl", {"t": time.time(), "method": method, "lease": o})
            return self.reply(201 if method == "POST" else 200, o)

    def do_POST(self):
        if self.path.startswith(LEASES):
            return self.lease("POST")
        self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def do_PUT(self):
        if self.path.startswith(LEASES):
            return self.lease("PUT")
        self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path.startswith(LEASES):
            return self.lease("GET")
        parts = u.path.split("/")
        if len(parts) == 6 and parts[:4] == ["", "api", "v1", "namespaces"] and parts[5] == "pods":
            if not self.authorized():
                return self.reply(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
            with S.cond:
                R.pod_queries.add((parts[4], q.get("labelSelector", [""])[0]))
            try:
                if q.get("watch") == ["1"]:
                    self.crd_watch(AGENTPODS, q)
                else:
                    self.crd_list(AGENTPODS)
            except (OSError, ssl.SSLError):
                pass
            return
        if u.path.startswith("/apis/meshmask.io/v1alpha1/") or u.path.startswith("/api/v1/nodes/"):
            if not self.authorized():
                return self.reply(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
            if u.path.startswith("/api/v1/nodes/"):
                name = u.path.rsplit("/", 1)[-1]
                if name not in NODES:
                    return self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                return self.reply(200, {"kind": "Node", "apiVersion": "v1",
                                        "metadata": {"name": name, "uid": NODES[name]}})
            plural = u.path.rsplit("/", 1)[-1]
            if plural not in PLURALS + (NSTATUS,):
                return self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            try:
                if q.get("watch") == ["1"]:
                    self.crd_watch(plural, q)
                else:
                    self.crd_list(plural)
            except (OSError, ssl.SSLError):
                pass
            return
        if u.path != "/api/v1/pods":
            return self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        if self.headers.get("Authorization") != "Bearer " + S.token:
            with S.cond:
                S.unauthorized += 1
            return self.reply(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
        if q.get("fieldSelector") != ["spec.nodeName=" + NODE]:
            with S.cond:
                S.bad_selector += 1
            return self.reply(400, {"kind": "Status", "code": 400, "reason": "BadRequest"})
        try:
            if q.get("watch") == ["1"]:
                self.watch(q)
            else:
                self.list(q)
        except (OSError, ssl.SSLError):
            pass

    def list(self, q):
        with S.cond:
            if "continue" not in q:
                S.lists += 1
            items = [S.pods[k] for k in sorted(S.pods)]
            rv = str(S.rv)
        # Two items per page: the client must follow metadata.continue.
        start = 0
        if "continue" in q:
            if q["continue"][0] != CONT + "2":
                return self.reply(410, {"kind": "Status", "code": 410, "reason": "Expired"})
            with S.cond:
                S.continues_ok += 1
            start = 2
        page = items[start:start + 2] if start == 0 else items[start:]
        meta = {"resourceVersion": rv}
        if start == 0 and len(items) > 2:
            meta["continue"] = CONT + "2"
        self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": meta,
                         "items": page})

    def watch(self, q):
        with S.cond:
            S.watches += 1
            gen = S.gen
            expire, S.expire_once = S.expire_once, False
            oversize, S.oversize_once = S.oversize_once, False
        last = int(q.get("resourceVersion", ["0"])[0] or 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if expire:
            self.chunk(json.dumps({"type": "ERROR", "object": {
                "kind": "Status", "code": 410, "reason": "Expired"}}).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if oversize:
            big = pod(UID_A, "shop", "web-1")
            big["metadata"]["annotations"] = {"blob": "x" * (5 << 20)}
            line = json.dumps({"type": "MODIFIED", "object": big}).encode() + b"\n"
            for i in range(0, len(line), 65536):
                self.chunk(line[i:i + 65536])
        deadline = time.time() + int(q.get("timeoutSeconds", ["300"])[0])
        while time.time() < deadline:
            with S.cond:
                evs = [e for e in S.log if e[0] > last]
                if not evs and S.gen == gen:
                    S.cond.wait(0.2)
                    continue
                if not evs:
                    break
            for rv, typ, obj in evs:
                line = json.dumps({"type": typ, "object": obj}).encode() + b"\n"
                mid = len(line) // 2  # every event split across two chunks
                self.chunk(line[:mid])
                self.chunk(line[mid:])
                last = rv
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


    def crd_list(self, plural):
        with S.cond:
            R.lists[plural] += 1
            items = [o for (p, _, _), o in sorted(R.objs.items()) if p == plural]
            rv = str(S.rv)
        self.reply(200, {"kind": KINDS[plural] + "List", "apiVersion": "meshmask.io/v1alpha1",
                         "metadata": {"resourceVersion": rv}, "items": items})

    def crd_watch(self, plural, q):
        with S.cond:
            R.watches[plural] += 1
            gen, drop = S.gen, R.drop_gen
            expire, R.expire[plural] = R.expire[plural], False
        last = int(q.get("resourceVersion", ["0"])[0] or 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if expire:
            self.chunk(json.dumps({"type": "ERROR", "object": {
                "kind": "Status", "code": 410, "reason": "Expired"}}).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        deadline = time.time() + int(q.get("timeoutSeconds", ["300"])[0])
        while time.time() < deadline:
            with S.cond:
                evs = [e for e in R.log if e[0] > last and e[2] == plural]
                if R.drop_gen != drop:
                    # Cut the connection: no terminating chunk, as a broken network would.
                    self.connection.shutdown(2)
                    return
                if not evs and S.gen == gen:
                    S.cond.wait(0.05)
                    continue
                if not evs:
                    break
            for rv, typ, _, obj in evs:
                line = json.dumps({"type": typ, "object": obj}).encode() + b"\n"
                mid = len(line) // 2
                self.chunk(line[:mid])
                self.chunk(line[mid:])
                last = rv
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def sync_resources(d, compact):
    """DIR/crd/<plural>__<namespace or ->__<name>.json (each a resource: metadata and spec)
    becomes watch events: ADDED, MODIFIED (generation + 1 when the spec changes), DELETED."""
    want = {}
    for f in os.listdir(os.path.join(d, "crd")):
        if not f.endswith(".json") or f.count("__") != 2:
            continue
        plural, ns, name = f[:-5].split("__")
        with open(os.path.join(d, "crd", f)) as fh:
            o = json.load(fh)
        o.setdefault("metadata", {})
        o["metadata"]["name"] = name
        if ns != "-":
            o["metadata"]["namespace"] = ns
        o["apiVersion"] = "meshmask.io/v1alpha1"
        o["kind"] = KINDS[plural]
        want[(plural, "" if ns == "-" else ns, name)] = o
    n = 0
    for k, o in list(R.objs.items()):
        if k not in want and k[0] in PLURALS:
            R.event("DELETED", k[0], o, log=not compact)
            n += 1
    for k, o in want.items():
        old = R.objs.get(k)
        if old is None:
            o["metadata"]["generation"] = 1
            o["metadata"]["uid"] = "uid-%s-%s-%s" % k
            R.event("ADDED", k[0], o, log=not compact)
            n += 1
        elif (old.get("spec") != o.get("spec")
              or old["metadata"].get("annotations") != o["metadata"].get("annotations")):
            o["metadata"]["generation"] = old["metadata"]["generation"] + \
                (old.get("spec") != o.get("spec"))
            o["metadata"]["uid"] = old["metadata"]["uid"]
            if "status" in old:
                o["status"] = old["status"]
            R.event("MODIFIED", k[0], o, log=not compact)
            n += 1
    return n


def sync_agent_pods(path):
    """DIR/agents.json: {"node": ready (bool), ...}, one agent Pod per node (meshmask-<node>)
    in namespace crd2-meshmask; a change becomes ADDED/MODIFIED/DELETED watch events."""
    with open(path) as fh:
        want = json.load(fh)
    pods = {}
    for node, ready in want.items():
        pods[(AGENTPODS, "crd2-meshmask", f"meshmask-{node}")] = {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": f"meshmask-{node}", "namespace": "crd2-meshmask",
                         "uid": f"pod-{node}", "labels": {"app.kubernetes.io/name": "meshmask"}},
            "spec": {"nodeName": node},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    for k, o in list(R.objs.items()):
        if k[0] == AGENTPODS and k not in pods:
            R.event("DELETED", AGENTPODS, o)
    for k, o in pods.items():
        old = R.objs.get(k)
        if old is None or old["status"] != o["status"]:
            R.event("MODIFIED" if old else "ADDED", AGENTPODS, o)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d):
    def key(name):
        sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-out", f"{d}/{name}.key")

    for ca in ("ca", "wrongca"):
        key(ca)
        sh("openssl", "req", "-x509", "-new", "-key", f"{d}/{ca}.key", "-out", f"{d}/{ca}.crt",
           "-subj", f"/CN={ca}", "-days", "2")
    key("client")
    sh("openssl", "req", "-new", "-key", f"{d}/client.key", "-out", f"{d}/client.csr",
       "-subj", "/CN=crd2-admin/O=system:masters")
    with open(f"{d}/client.ext", "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    sh("openssl", "x509", "-req", "-in", f"{d}/client.csr", "-CA", f"{d}/ca.crt", "-CAkey",
       f"{d}/ca.key", "-CAcreateserial", "-out", f"{d}/client.crt", "-days", "2", "-extfile",
       f"{d}/client.ext")
    key("srv")
    sh("openssl", "req", "-new", "-key", f"{d}/srv.key", "-out", f"{d}/srv.csr",
       "-subj", "/CN=kube-apiserver")
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:kubernetes.test\n")
    sh("openssl", "x509", "-req", "-in", f"{d}/srv.csr", "-CA", f"{d}/ca.crt", "-CAkey",
       f"{d}/ca.key", "-CAcreateserial", "-out", f"{d}/srv.crt", "-days", "2", "-extfile",
       f"{d}/ext")


class Harness:
    def __init__(self, exe, d, name, url, ca):
        self.log = f"{d}/{name}.log"
        self.p = subprocess.Popen(
            [exe, "--kube-api", url, "--token-file", f"{d}/token", "--ca-file", ca,
             "--node-name", NODE, "--backoff-max-ms", "400"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "w"),
            text=True)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def wait(self, line, pred, timeout=10.0):
        end = time.time() + timeout
        out = self.cmd(line)
        while not pred(out) and time.time() < end:
            time.sleep(0.05)
            out = self.cmd(line)
        return out

    def stop(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            return self.p.wait(timeout=10)
        except Exception:
            self.p.kill()
            return -1

    def logtext(self):
        with open(self.log) as f:
            return f.read()


passed = failed = 0


def check(desc, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {desc}")
    else:
        failed += 1
        print(f"not ok - {desc}" + (f"  # {detail}" if detail else ""))
    sys.stdout.flush()


def serve(d):
    """Standalone fake API for the data-path test (identity_dp.sh): PKI and token in DIR,
    pods from DIR/pods.json (a list of pod objects, re-read when it changes: the difference
    becomes watch events), the port written to DIR/port. Runs until killed."""
    make_pki(d)
    with open(f"{d}/token", "w") as f:
        f.write(S.token + "\n")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{d}/srv.crt", f"{d}/srv.key")
    ctx.load_verify_locations(f"{d}/ca.crt")
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate authenticates too
    srv = Server(("127.0.0.1", 0), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with open(f"{d}/port.new", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(f"{d}/port.new", f"{d}/port")
    seen = None
    R.patch_dir = d
    for sub in ("crd", "ctl"):
        os.makedirs(f"{d}/{sub}", exist_ok=True)
    crd_seen = None
    agents_seen = None
    while True:
        try:
            ctl = f"{d}/ctl"
            if os.path.exists(f"{ctl}/drop"):
                os.unlink(f"{ctl}/drop")
                with S.cond:
                    R.drop_gen += 1
                    S.cond.notify_all()
            if os.path.exists(f"{ctl}/delnode"):
                with open(f"{ctl}/delnode") as fh:
                    gone = fh.read().strip()
                os.unlink(f"{ctl}/delnode")
                NODES.pop(gone, None)
                for k, o in list(R.objs.items()):
                    owners = o.get("metadata", {}).get("ownerReferences", [])
                    if k[0] == NSTATUS and any(r.get("kind") == "Node" and r.get("name") == gone
                                               for r in owners):
                        R.event("DELETED", NSTATUS, o)
            if os.path.exists(f"{ctl}/touch"):
                with open(f"{ctl}/touch") as fh:
                    plural, ns, name = fh.read().split()
                os.unlink(f"{ctl}/touch")
                k = (plural, "" if ns == "-" else ns, name)
                if k in R.objs:
                    o = copy.deepcopy(R.objs[k])
                    o["status"] = {"touched": time.time()}
                    R.event("MODIFIED", plural, o)
            if os.path.exists(f"{d}/agents.json"):
                st = os.stat(f"{d}/agents.json")
                if (st.st_mtime_ns, st.st_size) != agents_seen:
                    agents_seen = (st.st_mtime_ns, st.st_size)
                    sync_agent_pods(f"{d}/agents.json")
                    with open(f"{d}/pod_queries.json", "w") as fh:
                        json.dump(sorted(R.pod_queries), fh)
            key = tuple(sorted((f, os.stat(f"{d}/crd/{f}").st_mtime_ns)
                               for f in os.listdir(f"{d}/crd")))
            if key != crd_seen:
                compact = os.path.exists(f"{ctl}/compact")
                if sync_resources(d, compact) and compact:
                    os.unlink(f"{ctl}/compact")
                    with S.cond:
                        for p in PLURALS:
                            R.expire[p] = True
                    S.end_watches()
                crd_seen = key
        except (OSError, ValueError, KeyError) as e:
            print(f"fake API: {e}", file=sys.stderr)

        try:
            st = os.stat(f"{d}/pods.json")
            key = (st.st_mtime_ns, st.st_size)
            if key != seen:
                with open(f"{d}/pods.json") as f:
                    want = {o["metadata"]["uid"]: o for o in json.load(f)}
                seen = key
                for uid, o in list(S.pods.items()):
                    if uid not in want:
                        S.event("DELETED", o)
                for uid, o in want.items():
                    old = S.pods.get(uid)
                    if old is None:
                        S.event("ADDED", o)
                    elif old["metadata"].get("labels") != o["metadata"].get("labels"):
                        S.event("MODIFIED", o)
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)


def main():
    if sys.argv[1] == "--serve":
        return serve(sys.argv[2])
    exe = sys.argv[1]
    if not shutil.which("openssl"):
        print("SKIP: needs openssl")
        return 77
    d = tempfile.mkdtemp(prefix="meshmask-identity.")
    try:
        return run(exe, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(exe, d):
    make_pki(d)
    with open(f"{d}/token", "w") as f:
        f.write(S.token + "\n")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{d}/srv.crt", f"{d}/srv.key")
    srv = Server(("127.0.0.1", 0), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{port}"

    S.event("ADDED", pod(UID_A, "shop", "web-1", "web-sa", {"app": "web", "tier": "front"}))
    S.event("ADDED", pod(UID_B, "kube-system", "dns-1", None, {"app": "dns"}))
    S.event("ADDED", pod(UID_F, "shop", "cart-1", "cart-sa", {"app": "cart"}))

    h = Harness(exe, d, "h", url, f"{d}/ca.crt")
    try:
        out = h.wait("count", lambda o: o == "3")
        check("initial list (two pages) gives three pods", out == "3", out)
        check("the list followed metadata.continue (escaped token)", S.continues_ok >= 1)
        check("synced after the list", h.cmd("synced") == "1")
        out = h.cmd("lookup " + cgroupfs(UID_A))
        check("cgroupfs path -> pod", out == "pod shop/web-1 sa=web-sa labels=app=web,tier=front",
              out)
        out = h.cmd("lookup " + systemd(UID_B))
        check("systemd path -> pod, default service account",
              out == "pod kube-system/dns-1 sa=default labels=app=dns", out)
        check("unknown pod -> none", h.cmd("lookup " + cgroupfs(UID_C)) == "none")
        check("match namespace", h.cmd(f"match {cgroupfs(UID_A)} shop - ") == "yes")
        check("match ns + sa + labels",
              h.cmd(f"match {cgroupfs(UID_A)} shop web-sa app=web tier=front") == "yes")
        check("label mismatch", h.cmd(f"match {cgroupfs(UID_A)} shop - app=dns") == "no")

        # Watch events: add, modify, delete.
        S.event("ADDED", pod(UID_C, "shop", "new-1", "web-sa", {"app": "web"}))
        out = h.wait("lookup " + systemd(UID_C), lambda o: o != "none")
        check("ADDED event -> pod known", out.startswith("pod shop/new-1"), out)
        check("a newly known pod now matches its namespace source",
              h.cmd(f"match {systemd(UID_C)} shop - app=web") == "yes")
        S.event("MODIFIED", pod(UID_A, "shop", "web-1", "web-sa", {"app": "web", "tier": "back"}))
        out = h.wait("lookup " + cgroupfs(UID_A), lambda o: "tier=back" in o)
        check("MODIFIED event -> labels follow", "tier=back" in out, out)
        check("old label no longer matches",
              h.cmd(f"match {cgroupfs(UID_A)} - - tier=front") == "no")
        S.event("DELETED", S.pods[UID_B])
        out = h.wait("lookup " + systemd(UID_B), lambda o: o == "none")
        check("DELETED event -> pod gone", out == "none", out)
        check("change callback ran", int(h.cmd("changes")) >= 4)

        # 410: the next watch gets ERROR 410; a pod added meanwhile without an event (history
        # compacted) can only be learnt by listing again.
        lists = S.lists
        S.expire_once = True
        S.event("ADDED", pod(UID_D, "batch", "job-1"), log=False)
        S.end_watches()
        out = h.wait("lookup " + cgroupfs(UID_D), lambda o: o != "none")
        check("watch ERROR 410 -> relist -> pod learnt", out.startswith("pod batch/job-1"), out)
        check("a second list was made", S.lists > lists, f"{S.lists} lists")

        # An event line over 4 MiB: an error, then a relist; the table stays.
        lists = S.lists
        S.oversize_once = True
        S.end_watches()
        end = time.time() + 10
        while S.lists == lists and time.time() < end:
            time.sleep(0.05)
        check("oversized watch event -> relist", S.lists > lists)
        end = time.time() + 10
        while "known from the API again" not in h.logtext() and time.time() < end:
            time.sleep(0.05)
        check("recovered after the oversized event", "known from the API again" in h.logtext())
        check("oversized event logged", "over 4194304 bytes" in h.logtext())
        check("table intact after the oversized event",
              h.cmd("lookup " + cgroupfs(UID_A)).startswith("pod shop/web-1"))

        # Token rotation. First the server moves on while the file is stale: refused, the
        # last table is kept and lookups still answer.
        unauth = S.unauthorized
        S.token = "token-two"
        S.end_watches()
        end = time.time() + 10
        while S.unauthorized == unauth and time.time() < end:
            time.sleep(0.05)
        check("stale token refused by the API (401)", S.unauthorized > unauth)
        check("API unavailable: last table kept",
              h.cmd("lookup " + cgroupfs(UID_A)).startswith("pod shop/web-1"))
        time.sleep(1.0)
        text = h.logtext()
        check("unavailability logged once per state change",
              text.count("unavailable (HTTP 401") == 1, text[-400:])
        check("the log names the status, never the token",
              "HTTP 401 Unauthorized" in text and "token-one" not in text
              and "token-two" not in text)
        with open(f"{d}/token.new", "w") as f:
            f.write("token-two\n")
        os.rename(f"{d}/token.new", f"{d}/token")  # as the kubelet swaps projected tokens
        S.event("ADDED", pod(UID_E, "shop", "after-rotation"))
        out = h.wait("lookup " + cgroupfs(UID_E), lambda o: o != "none")
        check("rotated token file re-read on reconnect", out.startswith("pod shop/after-rot"),
              out)
        check("recovery logged", h.logtext().count("known from the API again") == 2)
        check("every request carried the node's fieldSelector", S.bad_selector == 0)

        # The generic request: a server-side apply PATCH of a custom resource's status.
        path = "/apis/meshmask.io/v1alpha1/maskingpolicies/p1/status"
        out = h.cmd(f"request PATCH {path}?fieldManager=meshmask-node-1&force=true "
                    'application/apply-patch+yaml {"status":{"nodes":1}}')
        want = {"ct": "application/apply-patch+yaml",
                "query": "fieldManager=meshmask-node-1&force=true",
                "got": {"status": {"nodes": 1}}}
        check("PATCH: sent with its body and content type, answer read",
              out.startswith("status 200 ") and json.loads(out[11:]) == want, out)
        out = h.cmd("request PATCH /apis/meshmask.io/v1alpha1/maskingpolicies/big "
                    "application/merge-patch+json {}")
        check("an answer over the caller's limit is refused", out.startswith("error -90 "), out)
        out = h.cmd("request GET /nothing")
        check("GET: a 404 answer is an answer",
              out.startswith("status 404 ") and "NotFound" in out, out)
    finally:
        t0 = time.time()
        rc = h.stop()
    check("harness exits cleanly, at once, from inside a watch", rc == 0 and
          time.time() - t0 < 1.5, f"rc {rc} after {time.time() - t0:.2f} s")

    # TLS verification: a CA that did not sign the server, then a name not in the cert.
    for name, u, ca, want in (
            ("wrong CA", url, f"{d}/wrongca.crt", "certificate"),
            ("wrong host name", f"https://localhost:{port}", f"{d}/ca.crt", "")):
        before = S.lists + S.watches + S.unauthorized
        w = Harness(exe, d, "bad" + name[6:9], u, ca)
        time.sleep(1.5)
        cnt, syn = w.cmd("count"), w.cmd("synced")
        w.stop()
        text = w.logtext()
        check(f"{name}: refused, nothing learnt", cnt == "0" and syn == "0", f"{cnt} {syn}")
        check(f"{name}: no request reached the API", S.lists + S.watches + S.unauthorized
              == before)
        check(f"{name}: TLS failure logged", "TLS" in text and want in text, text[-300:])

    # An API that is not there at all: the thread retries, stop still returns promptly.
    w = Harness(exe, d, "down", "https://127.0.0.1:1", f"{d}/ca.crt")
    time.sleep(0.5)
    t0 = time.time()
    rc = w.stop()
    check("unreachable API: clean, prompt stop", rc == 0 and time.time() - t0 < 3)
    check("unreachable API logged", "unavailable" in w.logtext())

    srv.shutdown()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
