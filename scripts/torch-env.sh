# shellcheck shell=bash
# Source this (`source scripts/torch-env.sh`) after scripts/setup-torch.sh: it exports what
# building and running clip-gpu-d against the venv's PyPI torch needs.
#   PATH                  <venv>/bin first, so torch-sys's build script finds the venv's python
#   VIRTUAL_ENV           <venv>; torch-sys then runs `python` from it
#   LIBTORCH_USE_PYTORCH  1: take libtorch from the pip-installed torch (never download it)
#   LD_LIBRARY_PATH       <venv>/lib/python3.X/site-packages/torch/lib prepended (the
#                         clip-gpu-d binaries also carry an rpath to it from build.rs)
#   CAH_TORCH_PYTHON      the venv's python, which the parity tests run for references
# Env in: CAH_TORCH_VENV (default <repo>/.venv).
_cah_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_cah_venv="${CAH_TORCH_VENV:-$_cah_repo_root/.venv}"
if [[ ! -x "$_cah_venv/bin/python" ]]; then
    echo "error: no torch venv at $_cah_venv; run scripts/setup-torch.sh first" >&2
    return 1 2>/dev/null || exit 1
fi
_cah_torch_lib="$("$_cah_venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export VIRTUAL_ENV="$_cah_venv"
export PATH="$_cah_venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LD_LIBRARY_PATH="$_cah_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CAH_TORCH_PYTHON="$_cah_venv/bin/python"
unset _cah_repo_root _cah_venv _cah_torch_lib
