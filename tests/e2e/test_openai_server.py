"""The OpenAI-compatible server over real HTTP, with the `openai` client, against a real server process."""
import os
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import ServerProcess

GREEDY = dict(temperature=0, max_tokens=12)


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is pid (the engine core and multiprocessing's resource tracker)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_ops_endpoints(server):
    assert httpx.get(server.url + "/health").status_code == 200
    assert httpx.get(server.url + "/version").json()["version"]
    models = httpx.get(server.url + "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny", "MiniMax-M2.7"]
    assert models["data"][0]["max_model_len"] == 512
    text = httpx.get(server.url + "/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:inter_token_latency_seconds_bucket", "vllm:e2e_request_latency_seconds_bucket"):
        assert name in text, name


def test_tokenize_detokenize(server):
    r = httpx.post(server.url + "/tokenize", json={"prompt": "hello world"}).json()
    assert r["count"] == len(r["tokens"]) > 0 and r["max_model_len"] == 512
    back = httpx.post(server.url + "/detokenize", json={"tokens": r["tokens"]}).json()
    assert back["prompt"].endswith("hello world")
    chat = httpx.post(server.url + "/tokenize", json={"messages": [{"role": "user", "content": "hi"}]}).json()
    assert chat["count"] > r["count"]


def test_chat_non_streaming_shape(client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello, who are you?"}],
                                       **GREEDY)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    c = r.choices[0]
    assert c.index == 0 and c.message.role == "assistant" and c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details.cached_tokens >= 0
    # Same greedy request again: same text, and the prompt now comes from the prefix cache.
    again = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello, who are you?"}],
                                           **GREEDY)
    assert again.choices[0].message.content == c.message.content
    assert again.usage.prompt_tokens_details.cached_tokens > 0


def test_chat_streaming_equals_non_streaming_and_usage_chunk(client):
    msgs = [{"role": "user", "content": "Tell me about Paris."}]
    full = client.chat.completions.create(model="tiny", messages=msgs, **GREEDY)
    chunks = list(client.chat.completions.create(model="tiny", messages=msgs, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == (full.choices[0].message.content or "")
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finish == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert all(ch.id == chunks[0].id for ch in chunks)


def test_stream_without_usage_option_has_no_usage(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                                 stream=True, **GREEDY))
    assert all(ch.usage is None for ch in chunks)


def test_chat_logprobs(client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], logprobs=True,
                                       top_logprobs=3, **GREEDY)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.logprob <= 0
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-5)
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob >= entry.top_logprobs[2].logprob


def test_n2_and_seed(client):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Pick a word"}], n=2, temperature=1.0,
              max_tokens=10, seed=1234)
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert [c.index for c in a.choices] == [0, 1]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert a.choices[0].message.content != a.choices[1].message.content   # two samples, two seeds
    assert a.usage.completion_tokens >= 2


def test_stop_string(client):
    base = client.completions.create(model="tiny", prompt="The quick brown fox", temperature=0, max_tokens=16)
    text = base.choices[0].text
    stop = text[4:7]
    assert len(stop) == 3 and text.find(stop) >= 0
    r = client.completions.create(model="tiny", prompt="The quick brown fox", temperature=0, max_tokens=16,
                                  stop=[stop])
    assert r.choices[0].text == text[:text.find(stop)]
    assert r.choices[0].finish_reason == "stop"
    assert r.model_extra is not None
    raw = r.choices[0].model_dump()
    assert raw.get("stop_reason") == stop


def test_completions_token_ids_echo_logprobs(client):
    ids = [5, 17, 99, 200, 31, 7]
    r = client.completions.create(model="tiny", prompt=ids, max_tokens=3, temperature=0, echo=True, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(ids) + 3
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:])
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    # lm_eval loglikelihood: max_tokens=0 with echo scores the prompt only.
    only = client.completions.create(model="tiny", prompt=ids, max_tokens=0, temperature=0, echo=True, logprobs=1)
    lp0 = only.choices[0].logprobs
    assert len(lp0.tokens) == len(ids)
    assert lp0.token_logprobs == pytest.approx(lp.token_logprobs[:len(ids)], abs=1e-5)
    assert only.usage.completion_tokens == 0


def test_completions_batch_text_and_streaming(client):
    r = client.completions.create(model="tiny", prompt=["Hello", "World"], max_tokens=5, temperature=0, n=2)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    single = client.completions.create(model="tiny", prompt="World", max_tokens=5, temperature=0)
    assert {c.text for c in r.choices if c.index >= 2} == {single.choices[0].text}
    chunks = list(client.completions.create(model="tiny", prompt="World", max_tokens=5, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == single.choices[0].text
    assert chunks[-1].usage.completion_tokens == single.usage.completion_tokens


def test_unknown_fields_accepted(server):
    r = httpx.post(server.url + "/v1/chat/completions", json={
        "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "user": "u",
        "metadata": {"a": 1}, "store": False, "service_tier": "auto", "some_future_field": [1, 2]})
    assert r.status_code == 200, r.text


LONG = "word " * 600
BAD_REQUESTS = [
    ("chat", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404),
    ("chat", {"model": "tiny"}, 400),
    ("chat", {"model": "tiny", "messages": "hi"}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "top_p": 1.5}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "n": 0}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, 400),
    ("chat", {"messages": [{"role": "user", "content": LONG}]}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 30}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "tools": []}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required",
              "tools": [{"type": "function", "function": {"name": "f"}}]}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}],
              "tools": [{"type": "function", "function": {"name": "f"}}]}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "continue_final_message": True}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"abc": 1}}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "presence_penalty": 5}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "min_tokens": 50, "max_tokens": 5}, 400),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}, 400),
    ("completions", {"prompt": ""}, 400),
    ("completions", {"prompt": [1, 2, 10 ** 9]}, 400),
    ("completions", {"prompt": "hi", "suffix": "x"}, 400),
    ("completions", {"prompt": "hi", "logprobs": 50}, 400),
]


@pytest.mark.parametrize("endpoint,body,status", BAD_REQUESTS)
def test_bad_requests(server, endpoint, body, status):
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
    r = httpx.post(server.url + path, json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and err["message"] and "type" in err


def test_bad_bodies(server):
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 400
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "application/json" in r.json()["error"]["message"]
    # The server keeps serving after every bad request.
    ok = httpx.post(server.url + "/v1/completions", json={"prompt": "hi", "max_tokens": 2})
    assert ok.status_code == 200


def test_disconnect_mid_stream_frees_kv(server):
    body = {"model": "tiny", "prompt": "a long story", "max_tokens": 400, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as r:
        got = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                got += 1
            if got >= 3:
                break
    assert got >= 3
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.metric("vllm:kv_cache_usage_perc") == 0 and server.metric("vllm:num_requests_running") == 0:
            break
        time.sleep(0.2)
    assert server.metric("vllm:kv_cache_usage_perc") == 0
    assert server.metric("vllm:num_requests_running") == 0


def test_api_key_and_engine_death(tiny_model_dir):
    s = ServerProcess(tiny_model_dir, "--api-key", "sekret", "--kv-cache-memory-bytes", "16000000")
    try:
        body = {"prompt": "hi", "max_tokens": 2}
        assert httpx.post(s.url + "/v1/completions", json=body).status_code == 401
        assert httpx.post(s.url + "/v1/completions", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = httpx.post(s.url + "/v1/completions", json=body, headers={"Authorization": "Bearer sekret"})
        assert ok.status_code == 200, ok.text
        assert httpx.get(s.url + "/health").status_code == 200      # health needs no key
        # Kill the engine-core process: /health answers 503, then the server exits non-zero.
        engines = child_pids(s.proc.pid)
        assert engines
        for pid in engines:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        saw_503 = False
        while time.monotonic() < deadline and s.proc.poll() is None:
            try:
                saw_503 |= httpx.get(s.url + "/health", timeout=1).status_code == 503
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert saw_503
        assert s.proc.wait(20) != 0
    finally:
        s.stop()


def test_responses_non_streaming_and_streaming(client):
    r = client.responses.create(model="tiny", input="Hello", max_output_tokens=8, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_") and r.status in ("completed", "incomplete")
    assert r.output and r.output[-1].type == "message" and r.output[-1].role == "assistant"
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 8
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    if r.status == "incomplete":
        assert r.incomplete_details.reason == "max_output_tokens"
    events = list(client.responses.create(model="tiny", input="Hello", max_output_tokens=8, temperature=0,
                                          stream=True))
    types = [e.type for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-1] == f"response.{r.status}" and [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == r.output_text == events[-1].response.output_text
    assert events[-1].response.usage.output_tokens == r.usage.output_tokens


def test_responses_raw_sse_has_event_lines(server):
    body = {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "instructions": "Be brief.", "max_output_tokens": 3, "stream": True}
    with httpx.stream("POST", server.url + "/v1/responses", json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[0] == "event: response.created" and lines[1].startswith("data: {")
    assert lines[-2] in ("event: response.completed", "event: response.incomplete")
    assert not any("[DONE]" in line for line in lines)


@pytest.mark.parametrize("body,status", [
    ({"model": "nope", "input": "hi"}, 404),
    ({"input": "hi", "previous_response_id": "resp_123"}, 404),
    ({"input": "hi", "background": True}, 400),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, 400),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}}, 400),
    ({"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}, 400),
    ({"input": LONG}, 400),
    ({}, 400),
])
def test_responses_bad_requests(server, body, status):
    r = httpx.post(server.url + "/v1/responses", json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and err["message"] and "type" in err


def test_responses_openai_client_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")
    with pytest.raises(openai.BadRequestError, match="background"):
        client.responses.create(model="tiny", input="hi", background=True)
