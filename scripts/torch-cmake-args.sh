#!/usr/bin/env bash
# Prints the CMake arguments that point a build at the LibTorch of scripts/setup-deps.sh: the torch wheel in .venv/
# (M2SA_VENV overrides) and the CUDA compiler wheels beside it, which the wheel's CMake config needs in order to
# configure (it enables the CUDA language even for host-only code). With M2SA_PYTHON set, that interpreter's torch
# is used instead (the GPU machine's own python3, scripts/gpu-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${M2SA_PYTHON:-${M2SA_VENV:-.venv}/bin/python}
[ -x "$PY" ] || command -v "$PY" >/dev/null || {
  echo "torch-cmake-args: no python at $PY; run scripts/setup-deps.sh first" >&2; exit 1; }
"$PY" -W ignore - <<'PYEOF'
import os, sys
try:
    import torch.utils
except Exception as e:  # noqa: BLE001
    sys.exit(f"torch-cmake-args: {sys.executable} cannot import torch ({e}); run scripts/setup-deps.sh")
args = [f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
if torch.version.cuda:
    # Where nvcc is: the NVIDIA wheels (nvidia/cu13), else CUDA_HOME, else a system toolkit found by CMake itself.
    root = None
    try:
        import nvidia
        for base in nvidia.__path__:
            for sub in sorted(os.listdir(base)):
                cand = os.path.join(base, sub)
                if os.path.exists(os.path.join(cand, "bin", "nvcc")):
                    root = cand
    except ImportError:
        pass
    root = root or os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if root:
        args += [f"-DCUDA_TOOLKIT_ROOT_DIR={root}", f"-DCMAKE_CUDA_COMPILER={os.path.join(root, 'bin', 'nvcc')}"]
    # m2sa compiles no CUDA kernels; naming one architecture spares the wheel's config its GPU probe.
    args.append("-DTORCH_CUDA_ARCH_LIST=9.0")
print(" ".join(args))
PYEOF
