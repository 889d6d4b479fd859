#!/usr/bin/env bash
# Identity resolver against a fake Kubernetes API (HTTPS on loopback): see identity_kube.py.
# Usage: identity_kube.sh IDENTITY_HARNESS. No root needed.
set -euo pipefail
command -v python3 >/dev/null || { echo "SKIP: needs python3"; exit 77; }
exec python3 "$(dirname "${BASH_SOURCE[0]}")/identity_kube.py" "$@"
