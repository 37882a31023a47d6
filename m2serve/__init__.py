"""m2serve: a serving engine for the MiniMax-M2 model family."""
from m2serve.sampling.params import SamplingParams

__version__ = "0.1.0"
__all__ = ["LLM", "SamplingParams", "__version__"]


def __getattr__(name):
    # LLM pulls in torch and the model code; import it lazily so `import m2serve` stays cheap.
    if name == "LLM":
        from m2serve.entrypoints.llm import LLM
        return LLM
    raise AttributeError(name)
