#!/usr/bin/env bash
# Creates <repo>/.venv with the PyPI torch that tch 0.24 builds against, plus the Python
# references that clip-gpu-d's parity tests compare with: Hugging Face transformers (model
# forward), OpenAI's own CLIP package (tokenizer and `_transform` preprocessing) and
# open-clip-torch (it ships the real CLIP BPE vocabulary, bpe_simple_vocab_16e6.txt.gz).
# Idempotent: does nothing when the venv of the current recipe version is complete.
# Takes about 2 to 3 minutes and 5 GB on a fresh machine (torch alone is 4.6 GB, ~70 s).
#
# Usage: scripts/setup-torch.sh
# Env:   CAH_TORCH_VENV   venv folder (default: <repo>/.venv)
#        PYTHON           interpreter that creates the venv (default: python3, must be 3.10+)
#
# After it, `source scripts/torch-env.sh` exports what cargo and the binaries need:
#   PATH="$CAH_TORCH_VENV/bin:$PATH"     so torch-sys's build script finds the venv's python
#   VIRTUAL_ENV="$CAH_TORCH_VENV"        torch-sys runs `python` (not python3) when this is set
#   LIBTORCH_USE_PYTORCH=1               torch-sys takes libtorch from the pip torch
#   LD_LIBRARY_PATH="<venv>/lib/python3.X/site-packages/torch/lib:$LD_LIBRARY_PATH"
#                                        (clip-gpu-d's build.rs also sets an rpath, so the
#                                        binary runs without it; test binaries and other
#                                        tools may still need it)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CAH_TORCH_VENV:-$repo_root/.venv}"
python="${PYTHON:-python3}"
recipe_version="2"

# Pinned: torch is the exact version tch 0.24 expects; torchvision is the release built
# against it (clip-anytorch and open-clip-torch depend on it, and a free torchvision would
# drag torch to another version); transformers is what the GPU machine has preinstalled.
packages=(
    "torch==2.11.0"
    "torchvision==0.26.0"
    "transformers==5.17.0"
    "tokenizers"
    "safetensors"
    "numpy"
    "pillow==12.0.0"
    "ftfy==6.3.1"
    "regex"
    "open-clip-torch==3.3.0"
    "clip-anytorch==2.6.0"
    # Readers of clip-gpu-d's dataset output, as its consumers read it (tests/python/check_dataset.py).
    "pyarrow"
    "webdataset"
)
stamp="$venv/.cah-torch-ready-$recipe_version"

if [[ -f "$stamp" ]] && "$venv/bin/python" -c 'import torch, transformers, clip, open_clip, ftfy, pyarrow, webdataset' >/dev/null 2>&1; then
    echo "torch venv already prepared in $venv"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating venv $venv"
    "$python" -m venv "$venv"
fi

echo "installing ${packages[*]} into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-input \
    --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-input \
    "${packages[@]}"

"$venv/bin/python" - <<'PY'
import importlib.resources, torch, transformers, clip, open_clip, ftfy  # noqa: F401
assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
vocab = importlib.resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"
assert vocab.is_file(), vocab
print(f"torch {torch.__version__}, transformers {transformers.__version__}, vocab {vocab}")
PY
touch "$stamp"
echo "torch venv ready in $venv; now: source scripts/torch-env.sh"
