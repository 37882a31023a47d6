"""A tiny random MiniMax-M2 checkpoint built with transformers' native MiniMaxM2ForCausalLM (spec §8).

The model has every feature the real one has at toy size: GQA, partial RoPE (rotary_dim = head_dim/2, given
both as rope_parameters.partial_rotary_factor, which transformers reads, and as rotary_dim, which the hub config
carries), full-width QK norm, sigmoid routing with a random non-zero correction bias, untied lm_head. Weights
are drawn with std 1/sqrt(fan_in) (norm weights around 1) so activations keep unit scale through the layers and
the logits have clear, position-dependent top tokens.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def make_tiny_model(path: str | Path, *, seed: int = 0, num_hidden_layers: int = 4, vocab_size: int = 512,
                    hidden_size: int = 64, num_attention_heads: int = 4, num_key_value_heads: int = 2,
                    head_dim: int = 16, intermediate_size: int = 32, num_local_experts: int = 8,
                    num_experts_per_tok: int = 2, max_position_embeddings: int = 2048,
                    dtype: torch.dtype = torch.float32, layout: str = "original", **extra_config) -> Path:
    """Save a random model to `path` (config.json, model.safetensors, generation_config.json); return path.

    layout "original" is what save_pretrained writes by default (block_sparse_moe.*, experts.E.w1/w2/w3, like
    the hub checkpoints); "transformers" keeps the v5 in-memory names (mlp.experts.gate_up_proj/down_proj).
    """
    from transformers import MiniMaxM2Config, MiniMaxM2ForCausalLM

    if layout not in ("original", "transformers"):
        raise ValueError(f"layout={layout!r}: use 'original' or 'transformers'")
    path = Path(path)
    rotary_dim = head_dim // 2
    cfg = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads, head_dim=head_dim,
        intermediate_size=intermediate_size, num_local_experts=num_local_experts,
        num_experts_per_tok=num_experts_per_tok, max_position_embeddings=max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "partial_rotary_factor": 0.5},
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=None,
    )
    cfg.update(extra_config)
    config = MiniMaxM2Config(**cfg)
    torch.manual_seed(seed)
    model = MiniMaxM2ForCausalLM(config)

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:                                            # RMSNorm weights
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))
            else:                                                       # [.., out, in]: std 1/sqrt(in)
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
        for layer in model.model.layers:                                # starts at zeros; must matter
            layer.mlp.e_score_correction_bias.copy_(0.1 * torch.randn(num_local_experts, generator=gen))
    model = model.to(dtype)
    model.save_pretrained(path, save_original_format=(layout == "original"))

    cfg_path = path / "config.json"
    saved = json.loads(cfg_path.read_text())
    if "rotary_dim" not in extra_config:
        saved["rotary_dim"] = rotary_dim                                # as the hub config has it
    cfg_path.write_text(json.dumps(saved, indent=2) + "\n")
    gen_cfg = {"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id}
    (path / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2) + "\n")
    return path


def load_hf_reference(path: str | Path, dtype: torch.dtype = torch.float32):
    """The saved model loaded back with transformers (eager attention and experts: the bit-stable reference)."""
    from transformers import MiniMaxM2ForCausalLM

    model = MiniMaxM2ForCausalLM.from_pretrained(str(path), dtype=dtype, attn_implementation="eager",
                                                 experts_implementation="eager")
    return model.eval()
