#!/usr/bin/env bash
# llama.cpp peer: llama-cpp-python (built from its PyPI sdist: compiles llama.cpp, ~10 min on 2 cores) in a
# private venv, and a GGUF converted from the same checkpoint with llama.cpp's own converter.
#   bash benchmarks/peers/setup_llama_cpp.sh MODEL_DIR [OUT.gguf] [f32|bf16|f16]
set -euo pipefail
MODEL=${1:?model folder}
OUT=${2:-build/peers/$(basename "$MODEL").gguf}
OUTTYPE=${3:-f32}
VENV=${VENV:-build/peers/llama}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV/bin/pip" install -q --no-binary llama-cpp-python "llama-cpp-python[server]"
  "$VENV/bin/pip" install -q gguf safetensors numpy sentencepiece
  "$VENV/bin/pip" install -q torch==2.13.0     # the converter imports torch; the CPU build from local disk
fi
# The converter ships in the sdist (vendor/llama.cpp). Fetch the sdist once to get it.
CONV_DIR=build/peers/llama.cpp-src
if [ ! -f "$CONV_DIR/convert_hf_to_gguf.py" ]; then
  mkdir -p build/peers/sdist
  "$VENV/bin/pip" download -q --no-deps --no-binary :all: llama-cpp-python -d build/peers/sdist
  tar -xzf build/peers/sdist/llama_cpp_python-*.tar.gz -C build/peers/sdist
  rm -rf "$CONV_DIR" && cp -r build/peers/sdist/llama_cpp_python-*/vendor/llama.cpp "$CONV_DIR"
fi
# The converter reads config.json through transformers' AutoConfig (no torchvision: it breaks that import here).
"$VENV/bin/python" -c "import transformers" 2>/dev/null || "$VENV/bin/pip" install -q transformers
# Workaround: the converter knows pre-tokenizers only by a hash of known models' output. GGUF_PRE_TOKENIZER names
# the llama.cpp pre-tokenizer to record when the hash is unknown (qwen2 for benchmarks/peers/qwen2_tokenizer.py).
BASE="$CONV_DIR/conversion/base.py"
if [ -f "$BASE" ] && ! grep -q "m2serve-peer-workaround" "$BASE"; then
  "$VENV/bin/python" - "$BASE" <<'PYEOF'
import sys
p = sys.argv[1]
s = open(p).read()
old = "        if res is None:\n            logger.warning(\"\\n\")"
new = ("        if res is None:  # m2serve-peer-workaround\n"
       "            res = __import__(\"os\").environ.get(\"GGUF_PRE_TOKENIZER\") or None\n" + old)
if old not in s:
    sys.exit(f"{p}: the pre-tokenizer check was not found; the workaround needs updating")
s = s.replace(old, new, 1)
open(p, "w").write(s)
print(f"patched {p}")
PYEOF
fi
# llama.cpp's converter wants rotary_dim and scoring_func in config.json (m2serve checkpoints carry both).
"$VENV/bin/python" "$CONV_DIR/convert_hf_to_gguf.py" "$MODEL" --outfile "$OUT" --outtype "$OUTTYPE"
echo "GGUF: $OUT (serve with: $VENV/bin/python -m llama_cpp.server --model $OUT --n_threads 2)"
