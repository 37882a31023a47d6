"""m2-tiny model configuration (MiniMax-M2 architecture, scaled down) and the checkpoint config.json."""

from __future__ import annotations

import json
from pathlib import Path

from .common import BOS, EOS, PAD, ROLE, SPECIAL_TOKENS

# The shipped m2-tiny shape (28.5 M parameters, 12.0 M active per token; 57 MB in bf16). Same structure as
# MiniMax-M2: q width (heads*head_dim = 512) wider than the hidden size (256), GQA (8 query heads, 2 kv heads),
# full-width QK RMSNorm, partial NeoX RoPE on head_dim/2 dims, sigmoid router with e_score_correction_bias,
# 8 experts top-2, no shared expert, untied lm_head. Every matrix dimension is a multiple of 128 (like the real
# model, whose FP8 weight blocks are 128x128), so quantization paths can be exercised on it.
M2_TINY = {
    "vocab_size": 8192,
    "hidden_size": 256,
    "num_hidden_layers": 7,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 512,  # per expert
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "rotary_dim": 32,  # head_dim / 2
    "rope_theta": 5000000.0,
    "rms_norm_eps": 1e-06,
    "max_position_embeddings": 4096,
}

# Very small shape for smoke tests and unit tests.
SMOKE = dict(M2_TINY, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             head_dim=32, intermediate_size=64, rotary_dim=16)

# Small shape for short learning checks (minutes on one core).
MINI = dict(M2_TINY, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            head_dim=32, intermediate_size=256, rotary_dim=16)

PRESETS = {"m2-tiny": M2_TINY, "mini": MINI, "smoke": SMOKE}


def param_count(a: dict) -> dict:
    H, L, V = a["hidden_size"], a["num_hidden_layers"], a["vocab_size"]
    q = a["num_attention_heads"] * a["head_dim"]
    kv = a["num_key_value_heads"] * a["head_dim"]
    E, I, k = a["num_local_experts"], a["intermediate_size"], a["num_experts_per_tok"]
    attn = H * q + 2 * H * kv + q * H + q + kv  # projections + q/k norms
    expert = 3 * H * I
    layer = attn + E * expert + E * H + E + 2 * H  # + router, bias, two norms
    total = L * layer + 2 * V * H + H
    active = L * (attn + k * expert + E * H + 2 * H) + 2 * V * H + H
    return {"total": total, "active_per_token": active, "embeddings": 2 * V * H,
            "experts": L * E * expert, "attention": L * attn}


def hf_config(a: dict, experts_implementation: str | None = None):
    """transformers MiniMaxM2Config for training/inference in memory."""
    from transformers import MiniMaxM2Config

    cfg = MiniMaxM2Config(
        vocab_size=a["vocab_size"], hidden_size=a["hidden_size"], intermediate_size=a["intermediate_size"],
        num_hidden_layers=a["num_hidden_layers"], num_attention_heads=a["num_attention_heads"],
        num_key_value_heads=a["num_key_value_heads"], head_dim=a["head_dim"], hidden_act="silu",
        max_position_embeddings=a["max_position_embeddings"], rms_norm_eps=a["rms_norm_eps"],
        tie_word_embeddings=False, num_experts_per_tok=a["num_experts_per_tok"],
        num_local_experts=a["num_local_experts"], router_jitter_noise=0.0, output_router_logits=False,
        # The native config ignores a bare rotary_dim: partial RoPE must come through rope_parameters.
        rope_parameters={"rope_type": "default", "rope_theta": a["rope_theta"],
                         "partial_rotary_factor": a["rotary_dim"] / a["head_dim"]},
        bos_token_id=SPECIAL_TOKENS.index(BOS), eos_token_id=SPECIAL_TOKENS.index(EOS),
        pad_token_id=SPECIAL_TOKENS.index(PAD),
    )
    if experts_implementation:
        cfg._experts_implementation = experts_implementation
    return cfg


def checkpoint_config(a: dict) -> dict:
    """config.json with the keys of the real MiniMax-M2 checkpoint (specs/minimax-m2.md section 1.1)."""
    L = a["num_hidden_layers"]
    partial = a["rotary_dim"] / a["head_dim"]
    return {
        "architectures": ["MiniMaxM2ForCausalLM"],
        "model_type": "minimax_m2",
        "attention_dropout": 0.0,
        "attn_type_list": [1] * L,
        "bos_token_id": SPECIAL_TOKENS.index(BOS),
        "eos_token_id": SPECIAL_TOKENS.index(EOS),
        "pad_token_id": SPECIAL_TOKENS.index(PAD),
        "head_dim": a["head_dim"],
        "hidden_act": "silu",
        "hidden_size": a["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": a["intermediate_size"],
        "layernorm_full_attention_beta": 1.0,
        "layernorm_linear_attention_beta": 1.0,
        "layernorm_mlp_beta": 1.0,
        "max_position_embeddings": a["max_position_embeddings"],
        "mlp_intermediate_size": a["intermediate_size"] * a["num_experts_per_tok"],
        "num_attention_heads": a["num_attention_heads"],
        "num_experts_per_tok": a["num_experts_per_tok"],
        "num_hidden_layers": L,
        "num_key_value_heads": a["num_key_value_heads"],
        "num_local_experts": a["num_local_experts"],
        "num_mtp_modules": 0,
        "output_router_logits": False,
        "partial_rotary_factor": partial,
        "qk_norm_type": "per_layer",
        "rms_norm_eps": a["rms_norm_eps"],
        "rope_parameters": {"rope_type": "default", "rope_theta": a["rope_theta"], "partial_rotary_factor": partial},
        "rope_theta": a["rope_theta"],
        "rotary_dim": a["rotary_dim"],
        "router_aux_loss_coef": 0.001,
        "router_jitter_noise": 0.0,
        "scoring_func": "sigmoid",
        "shared_intermediate_size": 0,
        "shared_moe_mode": "sigmoid",
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_mtp": False,
        "use_qk_norm": True,
        "use_routing_bias": True,
        "vocab_size": a["vocab_size"],
    }


def generation_config() -> dict:
    """Like the real generation_config.json (specs section 4): same sampling values, m2-tiny ids.

    The real file has bos_token_id 200019 (`]~b]`); here bos is the id of `]~!b[` (the document BOS); eos is the
    id of `[e~[`, the stop token.
    """
    return {"bos_token_id": SPECIAL_TOKENS.index(BOS), "do_sample": True, "eos_token_id": SPECIAL_TOKENS.index(EOS),
            "pad_token_id": SPECIAL_TOKENS.index(PAD), "temperature": 1.0, "top_k": 40, "top_p": 0.95}


def arch_from_checkpoint_config(cfg: dict) -> dict:
    return {k: cfg[k] for k in M2_TINY}


def write_json(path, obj):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


ROLE_ID = SPECIAL_TOKENS.index(ROLE)
