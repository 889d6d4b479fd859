#!/usr/bin/env bash
# The test command: install what is missing, build, run every suite. Ends with
# "N passed, N failed" and exits non-zero on any failure.
#   scripts/test.sh                      all suites: root with BPF (what CI runs, .ci/run)
#   SUITES="unit fuzz" scripts/test.sh   only some; unit and fuzz need neither root nor BPF
# A run cannot shrink quietly. It fails when a suite that needs BPF is asked for and the BPF
# build is not possible (-Dbpf=enabled), when a requested suite has no test registered, and
# when a test skips (as a whole, or a TAP subtest "# SKIP"), except the few skips allowed
# below (ALLOWED_SKIPS), each printed with its reason.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

suites=${SUITES:-"unit fuzz bpf integration helm"}
jobs=${MESON_TEST_JOBS:-$(nproc)}
fail_build=0

# The BPF programs and the agent are required as soon as a suite runs them (helm runs the
# agent's rendered command line); only unit and fuzz can do without.
bpf=-Dbpf=auto
for s in $suites; do
	[[ $s == unit || $s == fuzz ]] || bpf=-Dbpf=enabled
done

configure() { # dir, meson args...
	local dir=$1
	shift
	if [[ -f $dir/build.ninja ]]; then
		meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1
	else
		meson setup "$dir" "$@" >"$dir.setup.log" 2>&1
	fi || { cat "$dir.setup.log"; return 1; }
}

# Plain build: everything; the unit suite (memory bounds hold only without ASan) and the
# privileged suites.
configure build "$bpf" || fail_build=1
((fail_build)) || ninja -C build >build.log 2>&1 || { tail -50 build.log; fail_build=1; }
# Sanitizer build (ASan + UBSan, abort on the first report): the unit and fuzz suites, and the
# kernel-path suites a second time, so the agent runs real traffic under the sanitizers too.
configure build-asan -Db_sanitize=address,undefined -Db_lundef=false "$bpf" || fail_build=1
((fail_build)) || ninja -C build-asan >build-asan.log 2>&1 || { tail -50 build-asan.log; fail_build=1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

missing=() # "dir:suite" asked for with no test registered
run_suites() { # dir, suites...
	local dir=$1 s
	shift
	local args=()
	for s in "$@"; do
		# Not `meson test --list | grep -q`: under pipefail, meson cut off by grep's early
		# exit fails the pipe.
		if [[ $(meson test -C "$dir" --no-rebuild --list --suite "$s" 2>/dev/null) == *" / "* ]]; then
			args+=(--suite "$s")
		else
			missing+=("$dir:$s")
		fi
	done
	((${#args[@]})) || return 0
	meson test -C "$dir" --print-errorlogs --num-processes "$jobs" "${args[@]}" ${NO_SUITES:-}
}

rm -f build/meson-logs/testlog.json build-asan/meson-logs/testlog.json
if ((!fail_build)); then
	asan_suites=() plain_suites=()
	for s in $suites; do
		case $s in
		fuzz) asan_suites+=("$s") ;;
		unit | bpf | integration) asan_suites+=("$s") plain_suites+=("$s") ;;
		*) plain_suites+=("$s") ;;
		esac
	done
	# The sanitizer build runs each data-path suite once; its --workers 1/4 variants (suite
	# "variants") run on the plain build only, which keeps CI well under its time.
	((${#asan_suites[@]})) && NO_SUITES="--no-suite variants" run_suites build-asan "${asan_suites[@]}"
	((${#plain_suites[@]})) && run_suites build "${plain_suites[@]}"
fi

# Count results from meson's logs (one line per test), and judge the skips.
python3 - "$fail_build" "${missing[@]}" <<'PY'
import json, os, re, sys

# The only skips a run may have, on a machine with everything setup.sh installs, as root with
# BPF: (build dir, test, text of the skip line, why). Any other skip fails the run.
ALLOWED_SKIPS = [
    # ASan keeps freed memory in its quarantine and pads every allocation: a resident-size or
    # heap bound says nothing there. The plain build runs the same bounds.
    ("build-asan", "test_memory", "# SKIP ASan build", "memory bounds under ASan"),
    ("build-asan", "dp_stream", "# SKIP sanitizer build", "memory bounds under ASan"),
    ("build-asan", "dp_stream_splice", "# SKIP sanitizer build", "memory bounds under ASan"),
    ("build-asan", "h2", "# SKIP sanitizer build", "memory bounds under ASan"),
    ("build-asan", "chaos_bomb", "# SKIP sanitizer build", "memory bounds under ASan"),
    ("build-asan", "chaos_conns", "# SKIP sanitizer build", "memory bounds under ASan"),
]

def allowed(build, test, line):
    return any(b == build and t == test and s in line for b, t, s, _ in ALLOWED_SKIPS)

skip_line = re.compile(r"^\s*(ok\b.*#\s*skip\b.*|1\.\.0\s*#\s*skip\b.*|skip:.*)$", re.I)
passed = failed = skipped = 0
for build in ("build-asan", "build"):
    p = os.path.join(build, "meson-logs", "testlog.json")
    if not os.path.exists(p):
        continue
    for line in open(p):
        r = json.loads(line)
        test = r["name"].split(" / ", 1)[-1]
        res = r["result"]
        skips = [l.strip() for l in (r.get("stdout") or "").splitlines() if skip_line.match(l)]
        if res == "SKIP" and not skips:
            skips = ["(skipped, no reason printed)"]
        bad = [l for l in skips if not allowed(build, test, l)]
        for l in skips:
            print(f"{'SKIP (allowed)' if l not in bad else 'SKIP (fails the run)'}: "
                  f"{build} {test}: {l}")
        if res in ("OK", "EXPECTEDFAIL", "SKIP") and not bad:
            if res == "SKIP":
                skipped += 1
            else:
                passed += 1
        else:
            failed += 1
for m in sys.argv[2:]:
    d, s = m.split(":", 1)
    print(f"FAIL: suite '{s}' asked for has no test registered in {d}")
    failed += 1
failed += int(sys.argv[1])
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
PY
