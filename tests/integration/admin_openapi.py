#!/usr/bin/env python3
# Keeps docs/openapi.yaml true: runs the agent (--no-bpf), sends requests that reach every
# documented (path, method, status), and checks that each answer is documented, that JSON
# bodies match their schema and documented headers are present; then probes every path with
# every method to find anything the agent serves that the document does not describe.
# TAP output. usage: admin_openapi.py MESHMASK_AGENT OPENAPI_YAML
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

try:
    import yaml
except ImportError:
    print("1..0 # SKIP python3-yaml not installed")
    sys.exit(77)

AGENT, SPEC_PATH = sys.argv[1], sys.argv[2]
spec = yaml.safe_load(open(SPEC_PATH))
n = 0
fails = 0


def ok(cond, name, diag=None):
    global n, fails
    n += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (n, name))
    if not cond:
        fails += 1
        if diag:
            print("#   " + str(diag).replace("\n", "\n#   "))
    sys.stdout.flush()


def resolve(node):
    while isinstance(node, dict) and "$ref" in node:
        cur = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            cur = cur[part]
        node = cur
    return node


def check_schema(value, schema, where="$"):
    """Errors of `value` against a (small) JSON schema subset."""
    schema = resolve(schema)
    errs = []
    if value is None and schema.get("nullable"):
        return errs
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return ["%s: not an integer" % where]
    elif t in types and not isinstance(value, types[t]):
        return ["%s: not a %s" % (where, t)]
    if "enum" in schema and value not in schema["enum"]:
        errs.append("%s: %r not in %r" % (where, value, schema["enum"]))
    if t == "object":
        for k in schema.get("required", []):
            if k not in value:
                errs.append("%s: missing %s" % (where, k))
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                errs += check_schema(value[k], sub, where + "." + k)
    if t == "array" and "items" in schema:
        for i, v in enumerate(value):
            errs += check_schema(v, schema["items"], "%s[%d]" % (where, i))
    return errs


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


tmp = tempfile.mkdtemp(prefix="meshmask-openapi.")
procs = []


def start(name, token):
    d = os.path.join(tmp, name)
    os.makedirs(d + "/pol")
    open(d + "/key", "w").write("ab" * 32 + "\n")
    pol = {"apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
           "metadata": {"name": "file-pol"},
           "spec": {"rules": [{"name": "ssn", "fields": ["$..ssn"],
                               "action": {"type": "mask", "keepLast": 4}},
                              {"name": "tok", "fields": ["$..card"],
                               "action": {"type": "tokenize", "keyFile": d + "/key"}}]}}
    json.dump(pol, open(d + "/pol/file-pol.json", "w"))
    # A file the agent refuses: listed under "rejected" (no name, nothing in force).
    open(d + "/pol/broken.json", "w").write('{"apiVersion": "meshmask.io/v1alpha1", ')
    args = [AGENT, "--no-bpf", "--policies", d + "/pol", "--state-dir", d + "/state",
            "--audit-log", d + "/audit.log", "--key-dir", d]
    if token:
        open(d + "/token", "w").write(token + "\n")
        open(d + "/detok", "w").write(DTOKEN + "\n")
        args += ["--token-file", d + "/token", "--detokenize-token-file", d + "/detok"]
    port = free_port()
    args += ["--admin", "127.0.0.1:%d" % port]
    procs.append(subprocess.Popen(args, stderr=open(d + "/agent.err", "w")))
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("agent did not start")


TOKEN = "openapi-token-%d" % os.getpid()
DTOKEN = "openapi-detok-%d" % os.getpid()
try:
    port = start("main", TOKEN)
    port_ro = start("readonly", None)
except SystemExit as e:
    print("1..0 # agent failed: %s" % e)
    sys.exit(1)

seen = set()


def template_of(path):
    p = path.split("?")[0]
    if p.startswith("/v1/policies/"):
        return "/v1/policies/{name}"
    return p


def call(method, path, body=None, headers=None, auth=True, p=None, name=None):
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Bearer " + TOKEN
    c = http.client.HTTPConnection("127.0.0.1", p or port, timeout=10)
    data = body.encode() if isinstance(body, str) else body
    try:
        c.request(method, path, data, h)
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered (413) before the whole body was sent: the answer is still there
    r = c.getresponse()
    raw = r.read()
    c.close()
    tpl = template_of(path)
    op = spec["paths"].get(tpl, {}).get(method.lower())
    label = name or "%s %s" % (method, path)
    if op is None:
        ok(r.status in (404, 405), "%s -> %d (undocumented operation)" % (label, r.status))
        return r.status, raw, r
    responses = op["responses"]
    documented = str(r.status) in responses
    ok(documented, "%s -> %d is documented" % (label, r.status))
    if not documented:
        return r.status, raw, r
    seen.add((tpl, method.lower(), str(r.status)))
    resp = resolve(responses[str(r.status)])
    for hname in resp.get("headers", {}):
        if r.status < 300 or hname in ("Allow", "WWW-Authenticate"):
            ok(r.getheader(hname) is not None, "%s: header %s present" % (label, hname))
    content = resp.get("content", {})
    if "application/json" in content:
        try:
            doc = json.loads(raw)
            errs = check_schema(doc, content["application/json"]["schema"])
        except ValueError as e:
            errs = ["not JSON: %s" % e]
        ok(not errs, "%s: body matches the schema" % label, errs)
    return r.status, raw, r


policy = lambda name, c="X": json.dumps({
    "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy", "metadata": {"name": name},
    "spec": {"rules": [{"name": "ssn", "fields": ["$..ssn"],
                        "action": {"type": "mask", "keepLast": 4, "char": c}}]}})
J = {"Content-Type": "application/json"}
big = " " * (1024 * 1024 + 10)

ok(str(spec.get("openapi", "")).startswith("3."), "OpenAPI 3 document")
call("GET", "/healthz", auth=False)
call("POST", "/healthz", auth=False)
st, raw, _ = call("GET", "/readyz", auth=False)
rz = json.loads(raw) if st == 200 else {}
modes = [m["mode"] for m in rz.get("tls", {}).get("enforceModes", [])]
ok(modes == ["off", "inplace", "stop-rewrite"] and rz["bpf"] == {"enabled": False, "attached": False}
   and rz["policies"]["rejectedFiles"] == 1, "readyz reports BPF, TLS modes and rejections", rz)
call("DELETE", "/readyz", auth=False)
call("GET", "/metrics", auth=False)
call("PUT", "/metrics", auth=False)
st, raw, _ = call("GET", "/v1/policies")
rej = json.loads(raw).get("rejected", []) if st == 200 else []
ok(len(rej) == 1 and rej[0]["file"] == "broken.json" and rej[0]["errors"][0].get("line") == 1,
   "the broken file is listed as rejected, with the location of its error", rej)
call("GET", "/v1/policies", auth=False)
call("GET", "/v1/policies", p=port_ro, auth=False, name="GET /v1/policies (read-only agent)")
call("DELETE", "/v1/policies")
call("PUT", "/v1/policies/doc", policy("doc"), J)
st, _, r = call("PUT", "/v1/policies/doc", policy("doc", "#"), J)
etag = r.getheader("ETag")
call("GET", "/v1/policies/doc")
call("GET", "/v1/policies/doc", auth=False)
call("GET", "/v1/policies/doc", p=port_ro, auth=False, name="GET policy (read-only agent)")
call("GET", "/v1/policies/absent")
call("PUT", "/v1/policies/doc", '{"kind":', J)
call("PUT", "/v1/policies/doc", policy("doc"), J, auth=False)
call("PUT", "/v1/policies/doc", policy("doc"), J, p=port_ro, name="PUT (read-only agent)")
call("PUT", "/v1/policies/file-pol", policy("file-pol"), J)
call("PUT", "/v1/policies/doc", policy("doc"), dict(J, **{"If-Match": '"0"'}))
call("PUT", "/v1/policies/doc", big, J)
call("PUT", "/v1/policies/doc", policy("doc"), {"Content-Type": "text/plain"})
call("DELETE", "/v1/policies/doc", headers={"If-Match": '"0"'})
call("DELETE", "/v1/policies/doc", headers={"If-Match": etag})
call("DELETE", "/v1/policies/doc")
call("DELETE", "/v1/policies/file-pol")
call("DELETE", "/v1/policies/doc", auth=False)
call("DELETE", "/v1/policies/doc", p=port_ro, name="DELETE (read-only agent)")
call("POST", "/v1/policies:validate", policy("v"), J)
call("POST", "/v1/policies:validate", "{}", J)
call("POST", "/v1/policies:validate", "{}", J, auth=False)
call("POST", "/v1/policies:validate", "{}", J, p=port_ro, name="validate (read-only agent)")
call("POST", "/v1/policies:validate", big, J)
call("POST", "/v1/policies:validate", policy("v"), {"Content-Type": "text/plain"})
call("GET", "/v1/policies:validate")
call("POST", "/v1/mask?policy=file-pol", '{"ssn":"123-45-6789"}', J)
call("POST", "/v1/mask", "{}", J)
call("POST", "/v1/mask?policy=absent", "{}", J)
call("POST", "/v1/mask?policy=file-pol", "{}", J, auth=False)
call("POST", "/v1/mask?policy=file-pol", "{}", J, p=port_ro, name="mask (read-only agent)")
call("POST", "/v1/mask?policy=file-pol", big, J)
call("POST", "/v1/mask?policy=file-pol", "x", {"Content-Type": "application/octet-stream"})
call("GET", "/v1/mask")
D = dict(J, Authorization="Bearer " + DTOKEN)
st, raw, _ = call("POST", "/v1/mask?policy=file-pol", '{"card":"4111111111111111"}', J)
card = json.loads(raw)["card"] if st == 200 else ""
ok(len(card) == 16 and card.isdigit() and card != "4111111111111111", "the dry-run tokenizes")
st, raw, _ = call("POST", "/v1/detokenize",
                  json.dumps({"policy": "file-pol", "rule": "tok", "values": [card, "1"]}),
                  D, auth=False)
ok(st == 200 and json.loads(raw)["values"] == ["4111111111111111", None],
   "detokenize restores the token", raw)
call("POST", "/v1/detokenize", '{"policy": "file-pol"}', D, auth=False)
call("POST", "/v1/detokenize", '{"policy": "file-pol", "rule": "tok", "values": []}', J,
     name="detokenize with the admin token")
call("POST", "/v1/detokenize", '{}', J, p=port_ro, auth=False,
     name="detokenize (no detokenize token)")
call("POST", "/v1/detokenize", '{"policy": "absent", "rule": "tok", "values": []}', D,
     auth=False)
call("POST", "/v1/detokenize", big, D, auth=False)
call("POST", "/v1/detokenize", "{}", {"Content-Type": "text/plain",
                                      "Authorization": "Bearer " + DTOKEN}, auth=False)
call("GET", "/v1/detokenize")

# Every documented answer was seen (except what needs a state this test cannot create).
unreachable = {("/readyz", "get", "503")}  # --no-bpf: nothing to wait for
for path, ops in spec["paths"].items():
    for method, op in ops.items():
        if method == "parameters":
            continue
        for code in op["responses"]:
            key = (path, method, str(code))
            if key in unreachable:
                continue
            ok(key in seen, "documented %s %s -> %s is exercised" % (method.upper(), path, code))

# Nothing served that is not documented.
for path in list(spec["paths"]) + ["/", "/v1", "/v2/policies", "/debug", "/v1/policies/x/y"]:
    concrete = path.replace("{name}", "file-pol")
    for method in ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request(method, concrete, "{}" if method in ("PUT", "POST") else None,
                  {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        c.close()
        op = spec["paths"].get(path, {}).get("get" if method == "HEAD" else method.lower())
        if op is None:
            ok(r.status in (404, 405), "undocumented %s %s -> %d" % (method, concrete, r.status))

for p in procs:
    p.terminate()
for p in procs:
    p.wait()
shutil.rmtree(tmp, ignore_errors=True)
print("1..%d" % n)
sys.exit(1 if fails else 0)
