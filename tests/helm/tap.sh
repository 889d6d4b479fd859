# shellcheck shell=bash
# TAP for the helm suite's scripts (sourced): ok STATUS DESCRIPTION [DIAGNOSTICS_FILE] prints
# "ok N" for status 0, else "not ok N" and the file's first lines as diagnostics; $n and
# $failed count.
n=0
failed=0
ok() {
	n=$((n + 1))
	if [[ $1 -eq 0 ]]; then
		echo "ok $n - $2"
	else
		failed=$((failed + 1))
		echo "not ok $n - $2"
		[[ -n ${3:-} && -s $3 ]] && sed 's/^/#   /' "$3" | head -60
	fi
	return 0
}
