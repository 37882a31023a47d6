import json

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from m2serve.errors import InvalidRequestError
from m2serve.frontend.chat_template import ChatTemplateError
from m2serve.frontend.tokenizer import Tokenizer
from tests.helpers.tiny_tokenizer import (
    CONTROL_TOKENS, build_tiny_tokenizer, find_reference_template, reference_template_text,
)

needs_reference = pytest.mark.skipif(find_reference_template() is None,
                                     reason="shared/reference/minimax_m2_chat_template.jinja not available")

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"}}, "required": ["location"]}}}

# specs/minimax-m2.md §5.1, verbatim.
SPEC_5_1 = """]~!b[]~b]system
You are a helpful assistant.

# Tools
You may call one or more tools to assist with the user query.
Here are the tools available in JSONSchema format:

<tools>
<tool>{"name": "get_weather", "description": "Get the current weather for a city.", "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"}}, "required": ["location"]}}</tool>
</tools>

When making tool calls, use XML format to invoke tools and pass parameters:

<minimax:tool_call>
<invoke name="tool-name-1">
<parameter name="param-key-1">param-value-1</parameter>
<parameter name="param-key-2">param-value-2</parameter>
...
</invoke>
</minimax:tool_call>[e~[
]~b]user
What's the weather in Paris? Use celsius.[e~[
]~b]ai
<think>
The user wants the weather in Paris in celsius. I should call get_weather.
</think>


<minimax:tool_call>
<invoke name="get_weather">
<parameter name="location">Paris</parameter>
<parameter name="unit">celsius</parameter>
<parameter name="days">1</parameter>
</invoke>
</minimax:tool_call>[e~[
]~b]tool
<response>{"temperature": 18, "condition": "sunny"}</response>[e~[
]~b]ai
<think>
"""


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Tokenizer:
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tok"))


def direct_render(messages, tools=None, add_generation_prompt=True) -> str:
    """The reference template (line 132 removed) rendered directly with Jinja2, transformers-style."""
    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(reference_template_text()).render(
        messages=messages, tools=tools, add_generation_prompt=add_generation_prompt)


def spec_messages(arguments):
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What's the weather in Paris? Use celsius."},
        {"role": "assistant", "content": None,
         "reasoning_content": "The user wants the weather in Paris in celsius. I should call get_weather.",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18, "condition": "sunny"}'},
    ]


# ---- vocabulary and stop ids ---------------------------------------------------------------------------------
def test_vocab_and_control_tokens(tok):
    assert tok.vocab_size <= 512
    ids = [tok.token_to_id(t) for t in CONTROL_TOKENS]
    assert all(i is not None and i < 512 for i in ids) and len(set(ids)) == len(ids)
    assert tok.id_to_token(tok.token_to_id("<think>")) == "<think>"
    assert tok.token_to_id("no such token") is None
    assert tok.encode("a<think>b") == tok.encode("a") + [tok.token_to_id("<think>")] + tok.encode("b")


def test_eos_and_stripped_ids(tok):
    eos, role, bos, pad = (tok.token_to_id(t) for t in ("[e~[", "]~b]", "]~!b[", "]!p~["))
    assert tok.eos_token_ids[0] == eos          # generation_config's eos first
    assert set(tok.eos_token_ids) == {eos, role, bos}
    assert tok.stripped_special_ids == {eos, role, bos, pad}
    for tag in ("<think>", "</think>", "<minimax:tool_call>", "</minimax:tool_call>"):
        assert tok.token_to_id(tag) not in tok.stripped_special_ids
    ids = tok.encode("]~b]ai\n<think>x</think>[e~[")
    assert tok.decode(ids) == "ai\n<think>x</think>"
    assert tok.decode(ids, skip_special_tokens=False) == "]~b]ai\n<think>x</think>[e~["


def test_generation_config_is_merged_not_clobbered(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 3, "temperature": 0.7}))
    tok = build_tiny_tokenizer(tmp_path)
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert gen == {"eos_token_id": tok.token_to_id("[e~["), "temperature": 0.7}
    assert tok.generation_config["temperature"] == 0.7


def test_eos_list_and_fallbacks(tmp_path, tok):
    tok.backend.save(str(tmp_path / "tokenizer.json"))
    eos, role = tok.token_to_id("[e~["), tok.token_to_id("]~b]")
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, eos]}))
    t = Tokenizer.from_dir(tmp_path)
    assert t.eos_token_ids[:2] == [7, eos] and role in t.eos_token_ids
    assert t.chat_template is None
    with pytest.raises(Exception, match="no chat template"):
        t.apply_chat_template([{"role": "user", "content": "hi"}])
    # no generation_config: tokenizer_config's eos_token; chat_template from tokenizer_config
    (tmp_path / "generation_config.json").unlink()
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": {"content": "]~b]"}, "chat_template": "{{ messages[0]['content'] }}!"}))
    t = Tokenizer.from_dir(tmp_path)
    assert t.eos_token_ids[0] == role
    assert t.apply_chat_template([{"role": "user", "content": "hi"}]) == "hi!"


# ---- chat template -------------------------------------------------------------------------------------------
@needs_reference
def test_spec_5_1_rendering(tok):
    tools = [WEATHER_TOOL]
    # arguments as a JSON string (OpenAI wire format) are turned into a dict
    ours = tok.apply_chat_template(spec_messages('{"location": "Paris", "unit": "celsius", "days": 1}'), tools=tools)
    assert ours == SPEC_5_1
    direct_msgs = spec_messages({"location": "Paris", "unit": "celsius", "days": 1})
    assert "None" in direct_render(direct_msgs, tools=tools)  # direct rendering of content None: the text None
    direct_msgs[2]["content"] = ""
    assert ours == direct_render(direct_msgs, tools=tools)


@needs_reference
@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "你好 😀"}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!", "reasoning_content": "greet"},
     {"role": "user", "content": "bye"}],
    [{"role": "user", "content": "go"},
     {"role": "assistant", "content": "", "reasoning_content": "call a and b", "tool_calls": [
         {"type": "function", "function": {"name": "a", "arguments": {"x": 1}}},
         {"type": "function", "function": {"name": "b", "arguments": {"y": "s", "z": [1, "é"]}}}]},
     {"role": "tool", "content": "r1"}, {"role": "tool", "content": [{"type": "text", "text": "r2"}]},
     {"role": "assistant", "content": "done", "reasoning_content": "all good"}],
])
def test_matches_direct_jinja_rendering(tok, messages):
    tools = [WEATHER_TOOL] if len(messages) > 2 else None
    for gen_prompt in (True, False):
        assert tok.apply_chat_template(messages, tools=tools, add_generation_prompt=gen_prompt) == \
            direct_render(messages, tools=tools, add_generation_prompt=gen_prompt)


def test_generation_prompt(tok):
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert prompt.endswith("]~b]ai\n<think>\n")
    ids = tok.encode(prompt)
    assert ids[0] == tok.token_to_id("]~!b[")
    assert ids[-2] == tok.token_to_id("<think>") and tok.decode(ids[-1:]) == "\n"
    assert tok.decode(ids, skip_special_tokens=False) == prompt


def test_message_clean_up(tok):
    # spec §5.1: inline think before the last user message is dropped
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": "<think>\nold thoughts\n</think>\n\nHello!"},
            {"role": "user", "content": "bye"}]
    assert tok.apply_chat_template(msgs, model_identity="You are a helpful assistant.") == (
        "]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nhi[e~[\n]~b]ai\nHello![e~[\n"
        "]~b]user\nbye[e~[\n]~b]ai\n<think>\n")
    # after the last user message inline think is kept, like reasoning_content (interleaved thinking)
    inline = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>\nplan\n</think>\n\nok"}]
    field = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok", "reasoning_content": "plan"}]
    vllm_name = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok", "reasoning": "plan"}]
    expected = tok.apply_chat_template(field, add_generation_prompt=False)
    assert "<think>\nplan\n</think>\n\nok[e~[" in expected
    assert tok.apply_chat_template(inline, add_generation_prompt=False) == expected
    assert tok.apply_chat_template(vllm_name, add_generation_prompt=False) == expected
    # None content, empty tool_calls, list-of-parts content, None/empty arguments
    parts = [{"role": "system", "content": [{"type": "text", "text": "Sys "}, {"type": "text", "text": "two"}]},
             {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}},
                                          {"type": "text", "text": " here"}]},
             {"role": "assistant", "content": None, "tool_calls": []},
             {"role": "user", "content": "again"},
             {"role": "assistant", "content": None, "tool_calls": [
                 {"type": "function", "function": {"name": "f", "arguments": None}},
                 {"type": "function", "function": {"name": "g", "arguments": ""}}]},
             {"role": "tool", "content": "r"}]
    out = tok.apply_chat_template(parts, add_generation_prompt=False)
    assert out == ("]~!b[]~b]system\nSys two[e~[\n]~b]user\nlook here[e~[\n]~b]ai\n[e~[\n]~b]user\nagain[e~[\n"
                   "]~b]ai\n\n<minimax:tool_call>\n<invoke name=\"f\">\n</invoke>\n<invoke name=\"g\">\n</invoke>\n"
                   "</minimax:tool_call>[e~[\n]~b]tool\n<response>r</response>[e~[\n")
    # the caller's messages are untouched
    assert parts[2]["tool_calls"] == [] and parts[4]["content"] is None


def test_template_errors_and_options(tok):
    with pytest.raises(ChatTemplateError) as err:
        tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}])
    assert isinstance(err.value, jinja2.TemplateError) and isinstance(err.value, InvalidRequestError)
    assert err.value.status_code == 400 and "no previous assistant message" in str(err.value)
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        tok.apply_chat_template([{"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{oops"}}]}])
    with pytest.raises(InvalidRequestError, match="Cannot set both"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}], continue_final_message=True)
    cont = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "The answer "}],
                                   add_generation_prompt=False, continue_final_message=True)
    assert cont.endswith("]~b]user\nhi[e~[\n]~b]ai\nThe answer ")
    # template kwargs reach the template
    out = tok.apply_chat_template([{"role": "user", "content": "hi"}], model_identity="You are M2.")
    assert out.startswith("]~!b[]~b]system\nYou are M2.[e~[\n")
