#!/usr/bin/env bash
# Install everything and run the whole test suite (the README's test command; .ci/run calls it).
# Extra arguments go to pytest, e.g. `bash ./lab/test.sh tests/lab -x`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

started=$SECONDS
bash lab/install.sh
echo "install took $((SECONDS - started)) s"
python="${BALANCING_PYTHON:-python3}"
export PATH="$("$python" lab/toolchain.py bin-dir):$PATH"  # the pinned kubectl/helm come first
exec "$python" -m pytest -q "$@"
