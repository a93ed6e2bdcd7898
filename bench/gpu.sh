#!/usr/bin/env bash
# GPU one-shot benchmark (bench/gpu.py) for one bare H100/H200, offline, in under 8 minutes.
# The machine needs Python 3 with torch, transformers and numpy; the one other package, `snac`
# (pure Python), is installed from bench/wheels/ with no index, into a temp folder.
# Usage: bench/gpu.sh [bench/gpu.py flags]      e.g. bench/gpu.sh --budget-s 300
#        PYTHON=.venv/bin/python bench/gpu.sh --smoke   (the CPU check with tiny shapes)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if ! "$py" -c "import snac" 2>/dev/null; then
  site=$(mktemp -d /tmp/voice-gpu-bench.XXXXXX)
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" bench/wheels/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec timeout 480 "$py" bench/gpu.py "$@"
