from m2serve.sampling.params import SamplingParams

__all__ = ["SamplingParams"]
