"""Weight/activation and KV-cache quantization methods (see base.py for the interfaces)."""
from m2serve.layers.quant.base import (FloatKVCache, KVCacheMethod, LinearMethod, MoEMethod, QuantMethod,
                                       UnquantizedLinearMethod, UnquantizedMoEMethod)
from m2serve.layers.quant.kv_c8 import C8KVCache
from m2serve.layers.quant.w8a8 import W8A8DynamicLinearMethod, W8A8DynamicMoEMethod, W8A8StaticLinearMethod

__all__ = ["QuantMethod", "LinearMethod", "MoEMethod", "KVCacheMethod", "UnquantizedLinearMethod",
           "UnquantizedMoEMethod", "FloatKVCache", "W8A8DynamicLinearMethod", "W8A8StaticLinearMethod",
           "W8A8DynamicMoEMethod", "C8KVCache"]
