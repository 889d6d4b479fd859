#!/usr/bin/env bash
# Checks the Dockerfile without a container engine (none runs here), on this Debian 12 machine,
# which is the release both stages are based on (TAP):
#  - both stages are Debian 12 and every package they install exists in apt;
#  - the build context (.dockerignore applied) builds with the build stage's own RUN commands,
#    and produces every file the runtime stage copies;
#  - the shared libraries the built binaries load all come from the runtime stage's packages
#    (or their dependencies, or Debian's "required" packages that debian:12-slim holds), and the
#    runtime list has no build tools or -dev packages.
# Not checked: that the build-stage list alone suffices (the build here sees this machine's
# packages; the check below only proves every tool and library it used belongs to that list's
# dependency closure), and image-only details (USER, ENTRYPOINT at run time).
#   dockerfile_test.sh SRCROOT
set -uo pipefail
root=$(cd "$1" && pwd)
df=$root/Dockerfile

source "$root/tests/helm/tap.sh"
if ! command -v apt-cache >/dev/null || ! grep -q '^12' /etc/debian_version 2>/dev/null; then
	echo "1..0 # SKIP needs a Debian 12 machine (apt-cache) to check a Debian 12 image"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- parse: logical lines (continuations joined), split into stages -------------------------
python3 - "$df" "$tmp" <<'PY'
import json, re, shlex, sys
src = open(sys.argv[1]).read()
lines, cur = [], ""
for raw in src.splitlines():
    s = raw.strip()
    if not cur and (not s or s.startswith("#")):
        continue
    if s.startswith("#"):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append(cur + s)
    cur = ""
stages = []
for l in lines:
    ins, _, rest = l.partition(" ")
    ins = ins.upper()
    if ins == "FROM":
        m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest.strip(), re.I)
        stages.append({"from": m.group(1), "name": m.group(2) or "", "run": [], "copy": [],
                       "apt": [], "workdir": "/", "entrypoint": None, "user": None})
        continue
    st = stages[-1]
    if ins == "RUN":
        for cmd in re.split(r"\s*&&\s*", rest):
            words = shlex.split(cmd)
            if words[:2] == ["apt-get", "install"]:
                st["apt"] += [w for w in words[2:] if not w.startswith("-")]
            elif words and words[0] not in ("apt-get", "rm"):
                st["run"].append(cmd)
    elif ins == "COPY":
        words = shlex.split(rest)
        frm = [w for w in words if w.startswith("--from=")]
        words = [w for w in words if not w.startswith("--")]
        st["copy"].append({"from": frm[0][7:] if frm else "", "src": words[:-1], "dst": words[-1]})
    elif ins == "WORKDIR":
        st["workdir"] = rest.strip()
    elif ins == "ENTRYPOINT":
        st["entrypoint"] = json.loads(rest)
    elif ins == "USER":
        st["user"] = rest.strip()
json.dump(stages, open(sys.argv[2] + "/stages.json", "w"), indent=1)
b, r = stages[0], stages[-1]
open(sys.argv[2] + "/build.pkgs", "w").write("\n".join(b["apt"]) + "\n")
open(sys.argv[2] + "/runtime.pkgs", "w").write("\n".join(r["apt"]) + "\n")
open(sys.argv[2] + "/build.sh", "w").write("\n".join(b["run"]) + "\n")
open(sys.argv[2] + "/copies", "w").write(
    "".join(s + "\n" for c in r["copy"] if c["from"] == b["name"] for s in c["src"]))
open(sys.argv[2] + "/entrypoint", "w").write((r["entrypoint"] or [""])[0] + "\n")
PY
rc=$?
ok $rc "Dockerfile parses"
((rc == 0)) || { echo "1..$n" && exit 1; }

jq_py() { python3 -c "import json,sys; s=json.load(open('$tmp/stages.json')); print($1)"; }
[[ $(jq_py 'len(s)') == 2 && $(jq_py 's[0]["from"]') == debian:12 && $(jq_py 's[0]["name"]') == build &&
	$(jq_py 's[1]["from"]') == debian:12-slim ]]
ok $? "two stages: debian:12 AS build, then debian:12-slim"
[[ $(jq_py 's[1]["user"]') != "" && $(jq_py 's[1]["user"]') != root && $(jq_py 's[1]["user"]') != 0* ]]
ok $? "runtime stage runs as non-root by default"

# --- packages exist ------------------------------------------------------------------------
: >"$tmp/missing"
while read -r p; do
	[[ -z $p ]] && continue
	cand=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: //p')
	[[ -n $cand && $cand != "(none)" ]] || echo "$p: no candidate in apt" >>"$tmp/missing"
done < <(cat "$tmp/build.pkgs" "$tmp/runtime.pkgs")
[[ ! -s $tmp/missing ]]
ok $? "every apt package of both stages exists in Debian 12 ($(cat "$tmp"/*.pkgs | grep -c .) packages)" "$tmp/missing"

grep -E -- '-dev$|^(build-essential|gcc|g\+\+|clang|llvm|bpftool|meson|ninja-build|pkg-config)$' \
	"$tmp/runtime.pkgs" >"$tmp/bad-runtime"
[[ ! -s $tmp/bad-runtime ]]
ok $? "runtime stage installs no build tools or -dev packages" "$tmp/bad-runtime"

# Dependency closure of a package list (Depends and PreDepends only), one name per line.
closure() {
	# shellcheck disable=SC2046
	apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances $(cat "$1") 2>/dev/null |
		sed -n 's/^\([^ <][^ ]*\)$/\1/p; s/^ *\(Pre\)\?Depends: \([^<]\S*\)$/\2/p' |
		sed 's/:.*//' | sort -u
}
closure "$tmp/build.pkgs" >"$tmp/build.closure"
closure "$tmp/runtime.pkgs" >"$tmp/runtime.closure"

# --- build the context with the build stage's commands -----------------------------------
ctx=$tmp/ctx
mkdir -p "$ctx"
# .dockerignore: top-level names and globs (the patterns this repository uses).
python3 - "$root" "$ctx" <<'PY'
import fnmatch, os, shutil, sys
root, ctx = sys.argv[1], sys.argv[2]
pats = [l.strip() for l in open(os.path.join(root, ".dockerignore"))
        if l.strip() and not l.startswith("#")]
def ignored(rel):
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.split("/")[0], p) for p in pats)
for dirpath, dirs, files in os.walk(root):
    reld = os.path.relpath(dirpath, root)
    dirs[:] = [d for d in dirs if not ignored(os.path.normpath(os.path.join(reld, d)))]
    for f in files:
        rel = os.path.normpath(os.path.join(reld, f))
        if ignored(rel):
            continue
        dst = os.path.join(ctx, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(dirpath, f), dst)
PY
ok $? "build context copied with .dockerignore applied ($(du -sh "$ctx" | cut -f1))"
[[ ! -e $ctx/build && ! -e $ctx/tools && ! -e $ctx/.git && -f $ctx/meson.build ]]
ok $? ".dockerignore keeps build dirs, tools/ and .git out of the context"

out=$tmp/out
# The stage's commands, with /out moved under the temp dir and ninja held to 2 jobs (shared
# machine).
sed -e "s#--destdir /out#--destdir $out#; s#^ninja #ninja -j2 #" "$tmp/build.sh" >"$tmp/build.run"
echo "# build stage: $(tr '\n' ';' <"$tmp/build.run")"
(cd "$ctx" && bash -e "$tmp/build.run") >"$tmp/build.log" 2>&1
rc=$?
((rc)) && tail -30 "$tmp/build.log" >"$tmp/build.tail"
ok $rc "build stage commands succeed (meson setup, ninja, meson install)" "$tmp/build.tail"

: >"$tmp/nocopy"
while read -r f; do
	[[ -f $out${f#/out} ]] || echo "COPY --from=build $f: not produced by the build" >>"$tmp/nocopy"
done <"$tmp/copies"
grep -qx "$(cat "$tmp/entrypoint")" < <(sed 's#^/out/usr/local/bin#/usr/local/bin#' "$tmp/copies") ||
	echo "ENTRYPOINT $(cat "$tmp/entrypoint") is not a copied binary" >>"$tmp/nocopy"
[[ ! -s $tmp/nocopy ]]
ok $? "the build produces every file the runtime stage copies" "$tmp/nocopy"

# --- tools and libraries the build used belong to the build stage's packages ----------------
: >"$tmp/unlisted"
# The package owning a file; tries the paths dpkg may know it by on a merged-/usr system.
owner() {
	local real c
	real=$(readlink -f "$1")
	for c in "$1" "$real" "${real#/usr}" "$(dirname "$1")/$(basename "$real")" \
		"$(dirname "${1#/usr}")/$(basename "$real")"; do
		dpkg -S "$c" 2>/dev/null | head -1 | cut -d: -f1 | cut -d, -f1 && return 0
	done
}
for prog in cc clang llvm-strip bpftool meson ninja pkg-config protoc-c; do
	p=$(command -v "$prog" || echo "/usr/sbin/$prog")
	pkg=$(owner "$p")
	[[ -n $pkg ]] && grep -qx "$pkg" "$tmp/build.closure" ||
		echo "$prog ($p, package '${pkg:-?}') is not in the build stage's packages" >>"$tmp/unlisted"
done
for pc in jansson zlib libcrypto openssl libmicrohttpd libcurl yaml-0.1 libbpf libelf libprotobuf-c protobuf; do
	f=$(pkg-config --variable=pcfiledir "$pc" 2>/dev/null)/$pc.pc
	pkg=$(owner "$f")
	[[ -n $pkg ]] && grep -qx "$pkg" "$tmp/build.closure" ||
		echo "pkg-config $pc (package '${pkg:-?}') is not in the build stage's packages" >>"$tmp/unlisted"
done
[[ ! -s $tmp/unlisted ]]
ok $? "compilers, BPF tools and -dev libraries used come from the build stage's packages" "$tmp/unlisted"

# --- runtime libraries ----------------------------------------------------------------------
: >"$tmp/libs"
: >"$tmp/usedpkgs"
while read -r f; do
	bin=$out${f#/out}
	[[ -f $bin ]] || continue
	ldd "$bin" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/.*ld-linux/ {print $1}' | while read -r lib; do
		pkg=$(owner "$lib")
		echo "$pkg" >>"$tmp/usedpkgs"
		if ! grep -qx "$pkg" "$tmp/runtime.closure" &&
			[[ $(dpkg-query -W -f='${Priority}' "$pkg" 2>/dev/null) != required ]]; then
			echo "$(basename "$bin") needs $lib from '$pkg', not in the runtime stage" >>"$tmp/libs"
		fi
	done
done <"$tmp/copies"
[[ -s $tmp/usedpkgs && ! -s $tmp/libs ]]
ok $? "every shared library the binaries load comes from the runtime stage's packages" "$tmp/libs"

: >"$tmp/unused"
while read -r p; do
	[[ -z $p ]] && continue
	grep -qx "$p" "$tmp/usedpkgs" || echo "$p: no copied binary loads a library from it" >>"$tmp/unused"
done <"$tmp/runtime.pkgs"
[[ ! -s $tmp/unused ]]
ok $? "every runtime package is loaded by a binary (no spare libraries)" "$tmp/unused"
"$out/usr/local/bin/meshmask-agent" --help >"$tmp/help" 2>&1
ok $? "the built agent runs (--help)" "$tmp/help"

echo "1..$n"
((failed == 0))
