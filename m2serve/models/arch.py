"""MiniMax-M2 architecture hyper-parameters, read from a checkpoint's config.json (spec minimax-m2.md §1)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from m2serve.errors import ConfigError

SUPPORTED_ARCHITECTURES = ("MiniMaxM2ForCausalLM",)


@dataclass(frozen=True)
class MiniMaxM2Arch:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int          # per-expert FFN width
    num_local_experts: int
    num_experts_per_tok: int
    rotary_dim: int
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int
    use_routing_bias: bool = True
    use_qk_norm: bool = True
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    torch_dtype: str | None = None
    quantization_config: dict | None = None

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @classmethod
    def from_dict(cls, cfg: dict) -> "MiniMaxM2Arch":
        archs = cfg.get("architectures") or ["MiniMaxM2ForCausalLM"]
        if not any(a in SUPPORTED_ARCHITECTURES for a in archs):
            raise ConfigError(f"config.json architectures={archs}: m2serve serves only {SUPPORTED_ARCHITECTURES}")
        hidden = cfg["hidden_size"]
        n_heads = cfg["num_attention_heads"]
        head_dim = cfg.get("head_dim") or hidden // n_heads
        rope_params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        rope_theta = cfg.get("rope_theta", rope_params.get("rope_theta", 5_000_000.0))
        rope_type = rope_params.get("rope_type", rope_params.get("type", "default"))
        if rope_type not in ("default", None):
            raise ConfigError(f"config.json rope_type={rope_type!r} is not supported (MiniMax-M2 uses plain RoPE)")
        # rotary_dim: explicit key first, else partial_rotary_factor (top level or in rope_parameters).
        candidates = {}
        if cfg.get("rotary_dim") is not None:
            candidates["rotary_dim"] = int(cfg["rotary_dim"])
        for where, src in (("partial_rotary_factor", cfg), ("rope_parameters.partial_rotary_factor", rope_params)):
            if src.get("partial_rotary_factor") is not None:
                candidates[where] = int(round(head_dim * float(src["partial_rotary_factor"])))
        if len(set(candidates.values())) > 1:
            raise ConfigError(f"config.json disagrees on the rotary dimension: {candidates} (head_dim={head_dim})")
        rotary_dim = next(iter(candidates.values()), head_dim)
        if rotary_dim % 2 or not 0 < rotary_dim <= head_dim:
            raise ConfigError(f"config.json rotary_dim={rotary_dim} must be even and in (0, head_dim={head_dim}]")
        if cfg.get("scoring_func", "sigmoid") != "sigmoid":
            raise ConfigError(f"config.json scoring_func={cfg['scoring_func']!r}: MiniMax-M2 routes with 'sigmoid'")
        if cfg.get("use_qk_norm", True) is False or cfg.get("qk_norm_type", "per_layer") != "per_layer":
            raise ConfigError("config.json: m2serve implements MiniMax-M2's full-width (per_layer) QK norm only")
        if cfg.get("shared_intermediate_size", 0):
            raise ConfigError("config.json shared_intermediate_size > 0: MiniMax-M2 has no shared expert")
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=hidden,
            num_hidden_layers=cfg["num_hidden_layers"],
            num_attention_heads=n_heads,
            num_key_value_heads=cfg.get("num_key_value_heads", n_heads),
            head_dim=head_dim,
            intermediate_size=cfg["intermediate_size"],
            num_local_experts=cfg["num_local_experts"],
            num_experts_per_tok=cfg["num_experts_per_tok"],
            rotary_dim=rotary_dim,
            rope_theta=float(rope_theta),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 196608)),
            use_routing_bias=bool(cfg.get("use_routing_bias", True)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_id=cfg.get("eos_token_id"),
            torch_dtype=cfg.get("torch_dtype") or cfg.get("dtype"),
            quantization_config=cfg.get("quantization_config"),
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> "MiniMaxM2Arch":
        p = Path(path) / "config.json"
        if not p.is_file():
            raise ConfigError(f"{path}: no config.json (expected a Hugging Face style model folder)")
        return cls.from_dict(json.loads(p.read_text()))
