"""`m2serve bench serve | offline | latency`: vLLM's benchmark commands (specs/openai-api.md §5).

- `serve.py`    the async load generator against an OpenAI-compatible server (`vllm bench serve`)
- `endpoint.py` one streamed request: payloads, SSE parsing, client-side timing
- `metrics.py`  aggregate metrics, the printed table and the saved JSON keys
- `datasets.py` random / sharegpt / custom prompts
- `offline.py`  `LLM.generate` throughput; `latency.py` one batch end to end
- `roofline.py` this machine's bandwidth / matmul probe and the bytes and FLOPs of a MiniMax-M2 step
"""
