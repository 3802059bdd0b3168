#!/usr/bin/env bash
# Create .venv and install ganforge with its test tools. Used by the README and by CI.
# PyTorch is installed first and explicitly: the CPU build 2.13.0 by default (a local file
# on the project's offline machines, a normal download elsewhere). Set GANFORGE_TORCH to
# another requirement (e.g. "torch>=2.4" for a CUDA build), or to "" to keep the torch
# already in the environment. GANFORGE_EXTRAS picks the optional parts (default "all": the
# Keras oracle tests, ONNX export, TensorBoard, video, the serve web app with its browser
# tests; "test" for the bare minimum).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
torch_spec=${GANFORGE_TORCH-torch==2.13.0}
if [ -n "$torch_spec" ]; then
  python -m pip install -q "$torch_spec"
fi
extras=${GANFORGE_EXTRAS-all}
python -m pip install -q -e ".[${extras}]"
python -c "import ganforge, torch; print(f'ganforge {ganforge.__version__} with torch {torch.__version__} installed in .venv')"
