#!/usr/bin/env bash
# Install everything meshmask needs to build, test and demo on Debian 12. Idempotent and quiet:
# when all is present it only checks (well under a second). Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build and runtime dependencies (Debian package names).
pkgs=(
	build-essential pkg-config meson ninja-build
	clang llvm bpftool libbpf-dev libelf-dev
	zlib1g-dev libssl-dev openssl libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev libyaml-dev
	iproute2 curl python3 procps util-linux
)
# Extra packages a component asks for (tests/benchmarks), one per line in scripts/packages.d/*.
if compgen -G 'scripts/packages.d/*' >/dev/null; then
	while read -r p; do
		[[ -n $p && $p != \#* ]] && pkgs+=("$p")
	done < <(cat scripts/packages.d/*)
fi

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "setup: missing packages (${missing[*]}); run as root to install them" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Tools that come from the npm registry (helm, kubectl, schema validators), if a component
# declares them.
for hook in scripts/setup.d/*.sh; do
	[[ -e $hook ]] || continue
	bash "$hook"
done
