#!/usr/bin/env bash
# The GPU check in one command (issue #22): installs into a venv, measures, writes one results file.
#   bash benchmarks/gpu_check.sh              # on the GPU machine, from the checkout's root
#   bash benchmarks/gpu_check.sh --dry-run    # the same steps on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
for py in python3.13 python3.12 python3.11 python3; do
  if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    exec "$py" benchmarks/gpu_check.py "$@"
  fi
done
echo "gpu_check: salmat needs Python 3.11 or newer; none found on PATH" >&2
exit 2
