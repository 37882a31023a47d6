"""Give a benchmark checkpoint a tokenizer llama.cpp can reproduce (for the llama.cpp peer).

    python benchmarks/peers/qwen2_tokenizer.py MODEL_DIR

m2-tiny's tokenizer splits every Han character on its own, which none of llama.cpp's built-in pre-tokenizers
does, so its converter refuses it and a relabelled GGUF would tokenize prompts differently from the other
engines. This trains a byte-level BPE of the same size, with the same control tokens, on m2-tiny's corpus, but
with exactly Qwen2's split regex (llama.cpp's `qwen2` pre-tokenizer), and writes tokenizer.json and
tokenizer_config.json into MODEL_DIR. Convert with GGUF_PRE_TOKENIZER=qwen2 (setup_llama_cpp.sh passes it on).
For throughput benchmarks only: the weights were not trained with this tokenizer.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.m2tiny import corpus, data, tokenizer  # noqa: E402


def main(model_dir: str) -> None:
    texts = [data.record_text(r)[0] for r in corpus.build_train(3000, seed=corpus.DEFAULT_SEED)]
    tok = tokenizer.train_tokenizer(texts, split="qwen2")
    tokenizer.save_tokenizer(tok, model_dir)
    print(f"{model_dir}: tokenizer.json with Qwen2's split ({tok.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main(sys.argv[1])
