#!/usr/bin/env bash
# The test command: install what is missing, build, run every suite. Ends with
# "N passed, N failed" and exits non-zero on any failure.
#   scripts/test.sh            all suites
#   SUITES="unit fuzz" scripts/test.sh   only some
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

suites=${SUITES:-"unit fuzz bpf integration helm"}
jobs=${MESON_TEST_JOBS:-$(nproc)}
fail_build=0

configure() { # dir, meson args...
	local dir=$1
	shift
	if [[ -f $dir/build.ninja ]]; then
		meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1
	else
		meson setup "$dir" "$@" >"$dir.setup.log" 2>&1
	fi || { cat "$dir.setup.log"; return 1; }
}

# Plain build: everything, for the privileged suites.
configure build || fail_build=1
((fail_build)) || ninja -C build >build.log 2>&1 || { tail -50 build.log; fail_build=1; }
# Sanitizer build (ASan + UBSan, abort on the first report): the unit and fuzz suites, and the
# kernel-path suites a second time, so the agent runs real traffic under the sanitizers too.
configure build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbpf=auto || fail_build=1
((fail_build)) || ninja -C build-asan >build-asan.log 2>&1 || { tail -50 build-asan.log; fail_build=1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_suites() { # dir, suites...
	local dir=$1
	shift
	local args=()
	for s in "$@"; do
		if meson test -C "$dir" --list --suite "$s" >/dev/null 2>&1 &&
			[[ -n $(meson test -C "$dir" --list --suite "$s" 2>/dev/null) ]]; then
			args+=(--suite "$s")
		fi
	done
	((${#args[@]})) || return 0
	meson test -C "$dir" --print-errorlogs --num-processes "$jobs" "${args[@]}"
}

rm -f build/meson-logs/testlog.json build-asan/meson-logs/testlog.json
if ((!fail_build)); then
	asan_suites=() plain_suites=()
	for s in $suites; do
		case $s in
		unit | fuzz) asan_suites+=("$s") ;;
		bpf | integration) asan_suites+=("$s") plain_suites+=("$s") ;;
		*) plain_suites+=("$s") ;;
		esac
	done
	((${#asan_suites[@]})) && run_suites build-asan "${asan_suites[@]}"
	((${#plain_suites[@]})) && run_suites build "${plain_suites[@]}"
fi

# Count results from meson's logs (one line per test).
python3 - "$fail_build" <<'PY'
import json, os, sys
passed = failed = skipped = 0
for d in ("build-asan", "build"):
    p = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(p):
        continue
    for line in open(p):
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
failed += int(sys.argv[1])
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
