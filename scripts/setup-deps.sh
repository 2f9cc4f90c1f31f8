#!/usr/bin/env bash
# Installs every build and test dependency of m2sa; used by the README, .ci/run (through scripts/test.sh) and
# scripts/demo.sh. Idempotent and non-interactive.
#   1. Debian 12 packages: compilers and build tools, OpenCV, the header-only libraries, GoogleTest, Gloo headers.
#   2. LibTorch: the PyPI wheel torch==2.11.0 (CUDA 13.0, the LibTorch of the GPU machines) in a project-local
#      virtual environment, .venv/ (M2SA_VENV overrides), plus the CUDA compiler wheels that the wheel's CMake
#      config needs to configure (nvcc; nothing runs on a GPU here), and tensorboard, whose EventAccumulator the
#      tests use to read the event files that `m2sa train` writes. The downloaded wheels stay in
#      ~/.cache/m2sa/wheels (M2SA_WHEELS), so a second checkout installs without downloading again.
# scripts/torch-cmake-args.sh prints the CMake arguments that point a build at this LibTorch.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential cmake ninja-build ccache lld pkg-config git
  python3 python3-venv    # the virtual environment that holds the torch wheel
  libgloo-dev             # c10d Gloo headers (the wheel ships c10d's headers but not gloo's)
  libopencv-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libgtest-dev
  libcpp-httplib-dev      # `m2sa serve`: the HTTP server (Debian builds it as a shared library)
  chromium                # the tests render `m2sa report`'s page and `m2sa serve`'s web page in headless Chromium
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all ${#PKGS[@]} Debian packages already installed"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  echo "setup-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- LibTorch from PyPI ----
# The torch wheel's CMake config enables the CUDA language (FindCUDA + nvcc) even to build host-only code, so the
# CUDA compiler comes from NVIDIA's PyPI wheels at the versions of the CUDA 13.0 that torch 2.11.0+cu130 carries.
# cuda-toolkit 13.0.2 pins nvcc and cccl (<nv/target>, which cuda_fp16.h includes and the c10d NCCL headers reach)
# to CUDA 13.0, but nvcc's own crt and nvvm dependencies are unpinned: a fresh resolve takes 13.5's, whose ptxas
# fails nvcc 13.0's compiler check. So they are pinned here.
VENV_REQS=(torch==2.11.0 "cuda-toolkit[nvcc,cccl]==13.0.2" nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88
            nvidia-nvvm==13.0.88 tensorboard==2.20.0)
VENV=${M2SA_VENV:-.venv}
WHEELS=${M2SA_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/m2sa/wheels}
stamp="$VENV/.m2sa-torch-reqs"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${VENV_REQS[*]}" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup-deps: torch already installed in $VENV ($(cat "$stamp"))"
else
  PY=python3
  if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then PY=/usr/bin/python3; fi
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # The wheels (about 3 GB) are kept in $WHEELS, so another checkout, or this one after `rm -rf .venv`, installs
  # without downloading again (pip's own cache kept none of them on these machines).
  pipq=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
  if ! "${pipq[@]}" install --progress-bar off --no-index --find-links "$WHEELS" "${VENV_REQS[@]}" 2>/dev/null; then
    echo "setup-deps: downloading ${VENV_REQS[*]} into $WHEELS"
    mkdir -p "$WHEELS"
    "${pipq[@]}" download --progress-bar off -d "$WHEELS" "${VENV_REQS[@]}"
    echo "setup-deps: installing ${VENV_REQS[*]} into $VENV"
    "${pipq[@]}" install --progress-bar off --no-index --find-links "$WHEELS" "${VENV_REQS[@]}"
  fi
  echo "${VENV_REQS[*]}" > "$stamp"
fi
# FindCUDA looks for lib64/ and an unversioned libcudart.so under the toolkit root; the wheels have neither.
cuda_root=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
[ -e "$cuda_root/lib64" ] || ln -s lib "$cuda_root/lib64"
[ -e "$cuda_root/lib/libcudart.so" ] || ln -s libcudart.so.13 "$cuda_root/lib/libcudart.so"
echo "setup-deps: done"
