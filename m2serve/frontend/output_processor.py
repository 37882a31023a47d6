"""Turns EngineCoreOutputs into RequestOutputs: detokenizes incrementally, applies stop strings, gathers logprobs,
and folds the n samples of one prompt into one RequestOutput."""
from __future__ import annotations

from dataclasses import dataclass, field

from m2serve.core.messages import EngineCoreOutput
from m2serve.frontend.detokenizer import IncrementalDetokenizer
from m2serve.frontend.tokenizer import Tokenizer
from m2serve.outputs import CompletionOutput, Logprob, RequestOutput
from m2serve.sampling.params import SamplingParams


@dataclass
class _Sample:
    """State of one of the n samples of a request (one engine request)."""
    index: int
    params: SamplingParams
    detok: IncrementalDetokenizer | None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[dict[int, Logprob]] | None = None
    cumulative_logprob: float | None = None
    text: str = ""
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class _Parent:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    samples: list[_Sample]
    num_cached_tokens: int = 0
    prompt_logprobs: list[dict[int, Logprob] | None] | None = None

    @property
    def finished(self) -> bool:
        return all(s.finish_reason is not None for s in self.samples)

    def to_output(self) -> RequestOutput:
        outs = [CompletionOutput(s.index, s.text, list(s.token_ids), s.cumulative_logprob, s.logprobs,
                                 s.finish_reason, s.stop_reason) for s in self.samples]
        return RequestOutput(self.request_id, self.prompt, self.prompt_token_ids, outs, self.finished,
                             self.num_cached_tokens, self.prompt_logprobs)


def child_request_id(request_id: str, index: int, n: int) -> str:
    return request_id if n == 1 else f"{index}_{request_id}"


class OutputProcessor:
    def __init__(self, tokenizer: Tokenizer | None):
        self.tokenizer = tokenizer
        self.parents: dict[str, _Parent] = {}
        self.children: dict[str, tuple[_Parent, _Sample]] = {}

    def add_request(self, request_id: str, prompt: str | None, prompt_token_ids: list[int],
                    params: SamplingParams) -> list[str]:
        """Register a request; returns the engine request ids of its n samples."""
        parent = _Parent(request_id, prompt, list(prompt_token_ids), [])
        ids = []
        for i in range(params.n):
            detok = None
            if self.tokenizer is not None:
                detok = IncrementalDetokenizer(self.tokenizer, prompt_token_ids,
                                               skip_special_tokens=params.skip_special_tokens, stop=params.stop,
                                               include_stop_str_in_output=params.include_stop_str_in_output)
            sample = _Sample(i, params, detok, logprobs=[] if params.logprobs is not None else None,
                             cumulative_logprob=0.0 if params.logprobs is not None else None)
            parent.samples.append(sample)
            cid = child_request_id(request_id, i, params.n)
            self.children[cid] = (parent, sample)
            ids.append(cid)
        self.parents[request_id] = parent
        return ids

    def process(self, outputs: list[EngineCoreOutput]) -> tuple[list[RequestOutput], list[str]]:
        """Returns (updated RequestOutputs, engine request ids to abort because a stop string matched)."""
        touched: dict[str, _Parent] = {}
        to_abort: list[str] = []
        for out in outputs:
            entry = self.children.get(out.req_id)
            if entry is None:
                continue
            parent, s = entry
            parent.num_cached_tokens = max(parent.num_cached_tokens, out.num_cached_tokens)
            s.token_ids.extend(out.new_token_ids)
            if out.prompt_logprobs is not None and parent.prompt_logprobs is None:
                # The first prompt token has nothing before it to be scored against.
                parent.prompt_logprobs = [None] + [self._logprob_dict(lp) for lp in out.prompt_logprobs]
            if s.logprobs is not None and out.new_logprobs:
                for lp in out.new_logprobs:
                    s.logprobs.append(self._logprob_dict(lp))
                    s.cumulative_logprob += lp.logprob
            if s.detok is not None:
                s.text += s.detok.add(out.new_token_ids)
                if s.detok.stop_reason is not None and out.finish_reason is None:
                    s.finish_reason, s.stop_reason = "stop", s.detok.stop_reason
                    to_abort.append(out.req_id)
            if out.finish_reason is not None and s.finish_reason is None:
                s.finish_reason, s.stop_reason = out.finish_reason, out.stop_reason
            if s.finish_reason is not None:
                if s.detok is not None and s.detok.stop_reason is None:
                    s.text += s.detok.flush()
                del self.children[out.req_id]
            touched[parent.request_id] = parent
        results = []
        for parent in touched.values():
            results.append(parent.to_output())
            if parent.finished:
                del self.parents[parent.request_id]
        return results, to_abort

    def abort(self, request_id: str) -> list[str]:
        """Forget a request; returns its engine request ids so the engine can abort them."""
        parent = self.parents.pop(request_id, None)
        if parent is None:
            return []
        ids = [cid for cid, (p, _) in self.children.items() if p is parent]
        for cid in ids:
            del self.children[cid]
        return ids

    def _logprob_dict(self, lp) -> dict[int, Logprob]:
        d = {lp.token_id: Logprob(lp.logprob, lp.rank, self._decode(lp.token_id))}
        for rank, (tok, val) in enumerate(lp.top, start=1):
            if tok not in d:
                d[tok] = Logprob(val, rank, self._decode(tok))
        return d

    def _decode(self, token_id: int) -> str | None:
        return None if self.tokenizer is None else self.tokenizer.decode([token_id], skip_special_tokens=False)
