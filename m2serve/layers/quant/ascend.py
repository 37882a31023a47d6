"""`--quantization ascend`: msModelSlim's AscendV1 layout, dispatched per layer from quant_model_description.json.

The description is a flat JSON dict: one "<tensor name>": "<TYPE>" entry per saved tensor plus global keys
(version, model_quant_type, group_size, metadata, optional, kv_cache_type / kv_quant_type for C8). Rules, as
vllm-ascend applies them to MiniMax-M2 (spec A1):
  * q/k/v_proj form one packed layer: their `.weight` entries must agree; o_proj stands alone. Types:
    FLOAT, W8A8 (static), W8A8_DYNAMIC.
  * the experts of a layer form one fused layer: every expert's w1/w2/w3 must agree (vllm-ascend reads expert
    0 as representative; a disagreement is refused here). Types: FLOAT, W8A8_DYNAMIC (static W8A8 has no MoE
    scheme).
  * every one of these needs an entry: a missing one is an error naming the layer. embed_tokens and lm_head
    must be FLOAT; the router gate and the norms are never quantized.
  * kv_cache_type "C8": every layer needs self_attn.{k,v}_proj.kv_cache_scale; the KV cache becomes int8.
The flag is required (as in vllm-ascend, whose config.json has no quantization_config): a folder with the
description but no flag, or the flag but no description, is refused naming the file.
"""
from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

from m2serve.errors import CheckpointError, ConfigError
from m2serve.layers.quant.base import (FloatKVCache, KVCacheMethod, LinearMethod, MoEMethod, UnquantizedLinearMethod,
                                       UnquantizedMoEMethod)
from m2serve.layers.quant.kv_c8 import C8KVCache
from m2serve.layers.quant.w8a8 import W8A8DynamicLinearMethod, W8A8DynamicMoEMethod, W8A8StaticLinearMethod

logger = logging.getLogger(__name__)

DESCRIPTION_FILE = "quant_model_description.json"
SUPPORTED_QUANTIZATION = ("ascend",)
GLOBAL_KEYS = frozenset({"version", "model_quant_type", "group_size", "metadata", "optional", "kv_cache_type",
                         "kv_quant_type", "fa_quant_type"})
LINEAR_METHODS = {"FLOAT": UnquantizedLinearMethod, "W8A8": W8A8StaticLinearMethod,
                  "W8A8_DYNAMIC": W8A8DynamicLinearMethod}
MOE_METHODS = {"FLOAT": UnquantizedMoEMethod, "W8A8_DYNAMIC": W8A8DynamicMoEMethod}
# Priority of model_quant_type (informational): the highest type present.
TYPE_PRIORITY = ("FLOAT", "W16A16S", "W8A16", "W8A8_DYNAMIC", "W8A8_MIX", "W8A8", "WFP8AFP8_DYNAMIC", "W8A8_MXFP8",
                 "W4A8_MXFP", "W4A4_DYNAMIC", "W4A4_MXFP4")
_LAYER_ID = re.compile(r"^model\.layers\.(\d+)\.")


def check_quantization_arg(quantization: str | None, model_dir: str | Path) -> str | None:
    """Validate the quantization argument against the folder; returns the normalised name. Raises ConfigError."""
    desc = Path(model_dir) / DESCRIPTION_FILE
    if quantization is None:
        if desc.is_file():
            raise ConfigError(f"{desc} is present: this is an msModelSlim (Ascend) quantized checkpoint; load it "
                              "with --quantization ascend (LLM(..., quantization='ascend'))")
        return None
    name = str(quantization).lower()
    if name not in SUPPORTED_QUANTIZATION:
        raise ConfigError(f"quantization={quantization!r} is not supported: m2serve loads msModelSlim W8A8 / "
                          "W8A8_DYNAMIC / C8 checkpoints with quantization='ascend'")
    if not desc.is_file():
        raise ConfigError(f"quantization='ascend' needs {desc}, which does not exist (write one with "
                          "`m2serve quantize`)")
    return name


class AscendQuantConfig:
    """The parsed, validated description; hands each layer its method by m2serve parameter prefix."""

    def __init__(self, description: dict, arch, source: str = DESCRIPTION_FILE) -> None:
        if not isinstance(description, dict):
            raise CheckpointError(f"{source}: expected a JSON object")
        self.source = source
        self.globals = {k: v for k, v in description.items() if k in GLOBAL_KEYS}
        self.types = {k: v for k, v in description.items() if k not in GLOBAL_KEYS}
        for k, v in self.types.items():
            if not isinstance(v, str):
                raise CheckpointError(f"{source}: entry {k!r} is {v!r}, expected a type string")
        self.arch = arch
        self.linear: dict[str, str] = {}      # m2serve prefix -> type
        self.moe: dict[str, str] = {}
        self.c8 = False
        self._validate()

    @classmethod
    def from_dir(cls, model_dir: str | Path, arch) -> "AscendQuantConfig":
        path = Path(model_dir) / DESCRIPTION_FILE
        try:
            desc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"quantization='ascend' needs {path}, which does not exist") from None
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read {path}: {e}") from None
        return cls(desc, arch, source=str(path))

    # -- validation ---------------------------------------------------------------------------------
    def _type(self, key: str, layer: str) -> str:
        t = self.types.get(key)
        if t is None:
            raise CheckpointError(f"{self.source} has no entry for {key}: layer {layer} cannot be dispatched "
                                  "(every quantizable linear needs one)")
        return t

    def _validate(self) -> None:
        a = self.arch
        if self.globals.get("fa_quant_type"):
            raise CheckpointError(f"{self.source}: fa_quant_type={self.globals['fa_quant_type']!r} (MLA attention "
                                  "quantization) does not apply to MiniMax-M2")
        for name in ("model.embed_tokens", "lm_head"):
            t = self._type(name + ".weight", name)
            if t != "FLOAT":
                raise CheckpointError(f"{self.source}: {name}.weight is {t}; the embedding and lm_head must be FLOAT")
        kv_type = self.globals.get("kv_cache_type") or self.globals.get("kv_quant_type")
        if kv_type not in (None, "C8"):
            raise CheckpointError(f"{self.source}: kv_cache_type={kv_type!r} is not supported (only C8)")
        c8_layers = {int(m.group(1)) for k in self.types if "k_proj.kv_cache_scale" in k
                     if (m := _LAYER_ID.match(k))}
        if kv_type is None and c8_layers:
            raise CheckpointError(f"{self.source} has kv_cache_scale entries (layers {sorted(c8_layers)}) but no "
                                  "kv_cache_type: C8")
        self.c8 = kv_type == "C8"
        for i in range(a.num_hidden_layers):
            src = f"model.layers.{i}"
            attn = f"{src}.self_attn"
            qkv = {p: self._type(f"{attn}.{p}.weight", attn) for p in ("q_proj", "k_proj", "v_proj")}
            if len(set(qkv.values())) > 1:
                raise CheckpointError(f"{self.source}: layer {attn} has q_proj/k_proj/v_proj of different types "
                                      f"{qkv}: they form one packed qkv_proj and must agree")
            o = self._type(f"{attn}.o_proj.weight", f"{attn}.o_proj")
            for p in ("q_proj", "k_proj", "v_proj"):
                self.linear[f"{attn}.{p}"] = qkv[p]
            self.linear[f"{attn}.o_proj"] = o
            for prefix, t in list(qkv.items())[:1] + [("o_proj", o)]:
                if t not in LINEAR_METHODS:
                    raise CheckpointError(f"{self.source}: layer {attn}.{prefix} has type {t}; m2serve supports "
                                          f"{sorted(LINEAR_METHODS)} for linears")
            moe = f"{src}.block_sparse_moe"
            experts = Counter()
            for e in range(a.num_local_experts):
                shard_types = {w: self._type(f"{moe}.experts.{e}.{w}.weight", f"{moe}.experts.{e}.{w}")
                               for w in ("w1", "w2", "w3")}
                if len(set(shard_types.values())) > 1:
                    raise CheckpointError(f"{self.source}: layer {moe}.experts.{e} has w1/w2/w3 of different types "
                                          f"{shard_types}: one expert is one fused layer and they must agree")
                experts[shard_types["w1"]] += 1
            if len(experts) > 1:
                raise CheckpointError(f"{self.source}: layer {moe}.experts mixes types across experts "
                                      f"{dict(experts)}: the fused experts of a layer share one scheme")
            et = next(iter(experts))
            if et not in MOE_METHODS:
                why = " (static W8A8 has no MoE scheme; use W8A8_DYNAMIC)" if et == "W8A8" else ""
                raise CheckpointError(f"{self.source}: layer {moe}.experts has type {et}{why}; m2serve supports "
                                      f"{sorted(MOE_METHODS)} for experts")
            self.moe[f"{src}.mlp.experts"] = et
            gate = self.types.get(f"{moe}.gate.weight", "FLOAT")
            if gate != "FLOAT":
                raise CheckpointError(f"{self.source}: {moe}.gate.weight is {gate}; the router is never quantized")
            if self.c8:
                for w in ("k_proj", "v_proj"):
                    key = f"{attn}.{w}.kv_cache_scale"
                    if key not in self.types:
                        raise CheckpointError(f"{self.source}: kv_cache_type is C8 but layer {attn} has no entry for "
                                              f"{key} (every layer needs K and V scales)")

    # -- dispatch -----------------------------------------------------------------------------------
    def get_linear_method(self, prefix: str) -> LinearMethod:
        t = self.linear.get(prefix)
        if t is None:                   # lm_head (checked FLOAT) and the fp32 router
            return UnquantizedLinearMethod()
        return LINEAR_METHODS[t]()

    def get_moe_method(self, prefix: str) -> MoEMethod:
        return MOE_METHODS[self.moe[prefix]]()

    def get_kv_cache_method(self, prefix: str, parallel) -> KVCacheMethod:
        if not self.c8:
            return FloatKVCache()
        tp = getattr(parallel, "tp_size", 1)
        return C8KVCache(self.arch.num_key_value_heads, self.arch.head_dim, getattr(parallel, "tp_rank", 0), tp)

    def summary(self) -> str:
        lin = Counter(self.linear.values())
        moe = Counter(self.moe.values())
        return (f"msModelSlim {self.globals.get('model_quant_type', '?')}: linears {dict(lin)}, experts {dict(moe)}, "
                f"KV cache {'int8 (C8)' if self.c8 else 'float'}")


def load_quant_config(model_dir: str | Path, arch, quantization: str | None) -> AscendQuantConfig | None:
    """The quant config for `quantization` (None: unquantized); refuses a mismatch with the folder."""
    name = check_quantization_arg(quantization, model_dir)
    if name is None:
        return None
    if arch.quantization_config:
        raise ConfigError(f"config.json has quantization_config={arch.quantization_config!r} and quantization="
                          f"{quantization!r} was given: an msModelSlim checkpoint has no quantization_config")
    config = AscendQuantConfig.from_dir(model_dir, arch)
    logger.info("%s", config.summary())
    return config
