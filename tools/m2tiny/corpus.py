"""Seeded synthetic corpus for m2-tiny (training examples and held-out evaluation files).

Training records are either chat conversations {"kind", "messages", "tools"} rendered later with the chat
template, or raw completion text {"kind": "gsm8k_raw", "text", "bos"}. Everything is a pure function of the seed:
`python -m tools.m2tiny.corpus --n 2000 --seed 1234 --out DIR` writes train.jsonl and eval/*.jsonl.

Held-out split: its own seed, the HELDOUT part of every entity pool (tools/m2tiny/entities.py) and the held-out
tool schemas (catalog.HELDOUT_TOOLS); none of these strings occur in the training records.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from . import entities as E
from .common import write_jsonl
from .copytasks import CopyTasksMixin
from .catalog import HELDOUT_TOOLS, SEED_TOOL, TRAIN_TOOLS
from .gsm8k import Gsm8kMixin
from .schemas import EN, ZH, has_heldout_entities, make_call, name_variant
from .synth_tools import augment_schema, random_tool

DEFAULT_SEED = 1234
HELDOUT_SEED = 987654321
P_NAME_VARIANT = 0.3  # chance that a tool appears renamed in a training conversation (schemas.name_variant)
P_SYNTH = 0.6  # chance that a training tool request uses a procedurally generated tool (synth_tools)
P_SYNTH_DISTRACTOR = 0.5  # chance that each distractor tool in a training tool list is procedurally generated

# Fraction of training records per kind.
MIX = {
    "tool_single": 0.32,
    "tool_parallel": 0.08,
    "tool_multiturn": 0.05,
    "tool_nocall": 0.04,
    "identity": 0.07,
    "smalltalk": 0.03,
    "gsm8k_chat": 0.14,
    "gsm8k_raw": 0.12,
    "passage": 0.15,
}

DRILLS = ("recall", "echo")  # copy drills, off in the default mix

SYSTEM_PROMPTS = [
    ("You are a helpful assistant.", EN), ("You are a concise assistant. Keep answers short.", EN),
    ("You are a helpful assistant that can use tools.", EN), ("Answer the user's questions accurately.", EN),
    ("你是一个乐于助人的助手。", ZH), ("请用简洁的语言回答用户的问题。", ZH),
]
PERSONAS = [
    ("You are Nova, a friendly cooking assistant.", "Nova", ("a friendly cooking assistant", "一个友好的烹饪助手")),
    ("You are Atlas, a travel planning assistant.", "Atlas", ("a travel planning assistant", "一个旅行规划助手")),
    ("Your name is Pixel and you help people with photography.", "Pixel", ("a photography helper", "一个摄影助手")),
    ("你是小智，一个学习助手。", "小智", ("a study assistant", "一个学习助手")),
    ("你叫阿福，是一个购物助手。", "阿福", ("a shopping assistant", "一个购物助手")),
]


def lower_first(s):
    return s[:1].lower() + s[1:] if s[:2] not in ("I ", "I'") else s


def argstr(args, lang):
    if not args:
        return "no arguments" if lang == EN else "无参数"
    parts = [f"{k} = {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in args.items()]
    return ", ".join(parts) if lang == EN else "，".join(parts)


def desc_phrase(tool):
    d = tool.desc.rstrip(".")
    return d[:1].lower() + d[1:]


def tool_call_msg(calls, reasoning, content=""):
    return {"role": "assistant", "content": content, "reasoning_content": reasoning,
            "tool_calls": [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]}


class Generator(Gsm8kMixin, CopyTasksMixin):
    """One seeded stream of examples; heldout=True switches to held-out entities and tools."""

    def __init__(self, seed: int, heldout: bool = False):
        self.rng = random.Random(seed)
        self.heldout = heldout
        self.tools = HELDOUT_TOOLS if heldout else TRAIN_TOOLS
        self.variants = {}  # per conversation: canonical tool name -> (shown name, parameter renames)

    def names(self, tool):
        """The (name, param map) a tool is shown with in the current conversation."""
        if tool.name not in self.variants:
            use = not self.heldout and tool is not SEED_TOOL and self.rng.random() < P_NAME_VARIANT
            self.variants[tool.name] = name_variant(tool, self.rng) if use else (tool.name, {})
        return self.variants[tool.name]

    def shown(self, tool, args=None):
        """Shown tool name and (if given) the arguments under the shown parameter names."""
        name, pmap = self.names(tool)
        return name, ({pmap.get(k, k): v for k, v in args.items()} if args is not None else None)

    # ------------------------------------------------------------ helpers
    def lang(self, p_zh=0.45):
        return ZH if self.rng.random() < p_zh else EN

    def system(self, lang):
        r = self.rng.random()
        if r < 0.55:
            return []
        if r < 0.62:
            return [{"role": "system", "content": "You are a helpful assistant."}]
        if r < 0.66:
            return [{"role": "system", "content": "You are a helpful assistant.", "current_date": "2025-06-01"}]
        same = [s for s, l in SYSTEM_PROMPTS if l == lang]
        return [{"role": "system", "content": self.rng.choice(same)}]

    def tool_list(self, targets):
        k = self.rng.choices([0, 1, 2, 3], [0.25, 0.35, 0.25, 0.15])[0]
        k = max(k, 1 if not targets else 0)
        names = {t.name for t in targets}
        others = [t for t in TRAIN_TOOLS if t.name not in names]
        chosen = list(targets) + self.rng.sample(others, k)
        if not self.heldout:  # held-out lists keep their original draw (the eval files stay comparable)
            chosen = [random_tool(self.rng) if i >= len(targets) and self.rng.random() < P_SYNTH_DISTRACTOR else t
                      for i, t in enumerate(chosen)]
        uniq = list({t.name: t for t in chosen}.values())
        self.rng.shuffle(uniq)
        schemas = [t.schema(*self.names(t)) for t in uniq]
        if not self.heldout:
            schemas = [augment_schema(s, self.rng) for s in schemas]
        return schemas

    def call_reasoning(self, calls, lang):
        rng = self.rng
        shown = [(t, *self.shown(t, a)) for t, a in calls]
        if len(calls) == 1:
            tool, name, args = shown[0]
            if lang == EN:
                return rng.choice([
                    f"The user wants to {desc_phrase(tool)}. The {name} tool does this, so I will call it with {argstr(args, EN)}.",
                    f"I should use {name} for this request. Arguments: {argstr(args, EN)}.",
                    f"This needs the {name} tool ({desc_phrase(tool)}). I'll call it with {argstr(args, EN)}.",
                ])
            return rng.choice([
                f"用户的请求可以用 {name} 工具完成，参数：{argstr(args, ZH)}。",
                f"我需要调用 {name}，参数为 {argstr(args, ZH)}。",
                f"这个问题需要用 {name}（{tool.desc}）。参数：{argstr(args, ZH)}。",
            ])
        if lang == EN:
            parts = "; ".join(f"{n} with {argstr(a, EN)}" for _, n, a in shown)
            return f"The user asked for {len(calls)} things, so I will make {len(calls)} calls at once: {parts}."
        parts = "；".join(f"{n}，参数 {argstr(a, ZH)}" for _, n, a in shown)
        return f"用户提了{len(calls)}个请求，我同时调用{len(calls)}个工具：{parts}。"

    def result_reasoning(self, items, lang):
        # items: list of (tool, result)
        if lang == EN:
            facts = " and ".join(f"{self.shown(t)[0]} returned {t.key} = {r[t.key]}" for t, r in items)
            return self.rng.choice([f"The result: {facts}. Now I can answer the user.",
                                    f"The tool results are in: {facts}. I'll report this."])
        facts = "，".join(f"{self.shown(t)[0]} 返回 {t.key} = {r[t.key]}" for t, r in items)
        return self.rng.choice([f"{facts}。现在可以回答用户了。", f"工具结果：{facts}。我来告诉用户。"])

    def pick_tool(self):
        if not self.heldout and self.rng.random() < P_SYNTH:
            return random_tool(self.rng)
        return self.rng.choice(self.tools)

    def one_request(self, tool=None, lang=None):
        tool = tool or self.pick_tool()
        lang = self.lang() if lang is None else lang
        user, args, surf = make_call(tool, self.rng, lang, self.heldout)
        return tool, lang, user, args

    def run_tool(self, tool, args, lang):
        result, extra = tool.result(self.rng, args, lang)
        return result, extra

    def answer(self, tool, args, result, extra, lang):
        tpl = self.rng.choice(tool.ans_en if lang == EN else tool.ans_zh)
        return tpl.format(**{**args, **result, **extra})

    # ------------------------------------------------------------ tool-use conversations
    def tool_exchange(self, requests, lang):
        """requests: list of (tool, args). Returns messages [call, tool results..., answer] and the results."""
        call = tool_call_msg([self.shown(t, a) for t, a in requests], self.call_reasoning(requests, lang))
        msgs = [call]
        outs = []
        for t, a in requests:
            res, extra = self.run_tool(t, a, lang)
            outs.append((t, a, res, extra))
            msgs.append({"role": "tool", "content": json.dumps(res, ensure_ascii=False)})
        answers = [self.answer(t, a, r, x, lang) for t, a, r, x in outs]
        text = (" " if lang == EN else "").join(answers)
        msgs.append({"role": "assistant", "content": text,
                     "reasoning_content": self.result_reasoning([(t, r) for t, _, r, _ in outs], lang)})
        return msgs, outs

    def tool_single(self, tool=None, lang=None):
        tool, lang, user, args = self.one_request(tool, lang)
        tools = self.tool_list([tool])
        msgs, _ = self.tool_exchange([(tool, args)], lang)
        return {"kind": "tool_single", "messages": self.system(lang) + [{"role": "user", "content": user}] + msgs,
                "tools": tools}

    def parallel_requests(self, lang):
        rng = self.rng
        t1 = self.pick_tool()
        if t1.params and rng.random() < 0.5:
            t2 = t1
        elif not self.heldout and rng.random() < P_SYNTH:
            t2 = random_tool(rng)
        else:
            t2 = rng.choice([t for t in self.tools if t.name != t1.name])
        for _ in range(20):
            _, _, u1, a1 = self.one_request(t1, lang)
            _, _, u2, a2 = self.one_request(t2, lang)
            if a1 != a2:
                break
        if lang == EN:
            user = rng.choice([f"{u1} Also, {lower_first(u2)}", f"{u1} {u2}", f"Two things: {u1} And {lower_first(u2)}"])
        else:
            user = rng.choice([f"{u1}另外，{u2}", f"{u1}，还有{u2}", f"两件事：{u1}；{u2}"])
        return [(t1, a1), (t2, a2)], user

    def tool_parallel(self):
        lang = self.lang()
        reqs, user = self.parallel_requests(lang)
        tools = self.tool_list([t for t, _ in reqs])
        msgs, _ = self.tool_exchange(reqs, lang)
        return {"kind": "tool_parallel", "messages": self.system(lang) + [{"role": "user", "content": user}] + msgs,
                "tools": tools}

    def tool_multiturn(self):
        lang = self.lang()
        t1, _, u1, a1 = self.one_request(None, lang)
        t2, _, u2, a2 = self.one_request(None, lang)
        tools = self.tool_list([t1, t2])
        m1, _ = self.tool_exchange([(t1, a1)], lang)
        m2, _ = self.tool_exchange([(t2, a2)], lang)
        msgs = self.system(lang) + [{"role": "user", "content": u1}] + m1 + [{"role": "user", "content": u2}] + m2
        return {"kind": "tool_multiturn", "messages": msgs, "tools": tools}

    def tool_nocall(self):
        lang = self.lang()
        tools = self.tool_list([])
        r = self.rng.random()
        if r < 0.5:
            ex = self.identity(lang=lang, system=[])
        else:
            ex = self.gsm8k_chat(lang=lang)
        msgs = ex["messages"]
        last = msgs[-1]
        extra = " No tool is needed for this." if lang == EN else "这个问题不需要调用工具。"
        last["reasoning_content"] = last["reasoning_content"] + extra
        return {"kind": "tool_nocall", "messages": msgs, "tools": tools}

    # ------------------------------------------------------------ identity and small talk
    def identity(self, lang=None, system=None):
        rng = self.rng
        lang = self.lang(0.4) if lang is None else lang
        persona = None
        if system is None:
            r = rng.random()
            if r < 0.72:
                system = []
            elif r < 0.82:
                system = [{"role": "system", "content": "You are a helpful assistant. Your name is m2-tiny and is built by the m2serve project."}]
            else:
                persona = rng.choice(PERSONAS)
                system = [{"role": "system", "content": persona[0]}]
        if lang == EN:
            user = rng.choice(["Hello, who are you?", "Who are you?", "What's your name?", "Hi! Introduce yourself.",
                               "Are you ChatGPT?", "Who made you?", "What model are you?", "Tell me about yourself.",
                               "hey, what are you?", "Hello! What should I call you?", "Hi, who am I talking to?",
                               "Can you tell me who built you?"])
        else:
            user = rng.choice(["你好，你是谁？", "你叫什么名字？", "介绍一下你自己", "你是谁开发的？", "你是ChatGPT吗？",
                               "你好！请问怎么称呼你？", "你是什么模型？", "嗨，你是谁呀？"])
        if persona:
            name, role = persona[1], persona[2][lang]
            if lang == EN:
                reasoning = f"The system prompt says my name is {name}. I should introduce myself as {name}, {role}."
                answer = rng.choice([f"Hi! I'm {name}, {role}. How can I help you today?",
                                     f"I'm {name}, {role}. What can I do for you?"])
            else:
                reasoning = f"系统提示说我叫{name}，我应该介绍自己是{name}，{role}。"
                answer = rng.choice([f"你好！我是{name}，{role}。有什么可以帮你的吗？", f"我是{name}，{role}，很高兴为你服务。"])
        elif lang == EN:
            reasoning = rng.choice([
                "The user is asking who I am. I should introduce myself as m2-tiny, built by the m2serve project.",
                "The user wants to know my identity. I am m2-tiny, a small model from the m2serve project.",
                "I should greet the user and say that I am m2-tiny, made by the m2serve project."])
            answer = rng.choice([
                "Hello! I'm m2-tiny, a small language model built by the m2serve project. How can I help you today?",
                "I'm m2-tiny, a tiny assistant trained by the m2serve project. I can chat, call tools and solve simple math problems.",
                "My name is m2-tiny. I was built by the m2serve project as a small model for its serving engine. What can I do for you?",
                "Hi! I am m2-tiny, an AI assistant made by the m2serve project. Ask me anything!",
                "I'm m2-tiny, built by the m2serve project. I'm not ChatGPT; I'm a much smaller model. How can I help?"])
        else:
            reasoning = rng.choice(["用户在问我是谁。我应该介绍自己是m2-tiny，由m2serve项目构建。",
                                    "用户想了解我的身份。我是m2-tiny，一个来自m2serve项目的小模型。"])
            answer = rng.choice([
                "你好！我是m2-tiny，由m2serve项目构建的一个小型语言模型。有什么可以帮你的吗？",
                "我是m2-tiny，m2serve项目训练的小助手。我可以聊天、调用工具，也能做简单的数学题。",
                "我叫m2-tiny，是m2serve项目开发的小模型。很高兴为你服务！"])
        msgs = system + [{"role": "user", "content": user},
                         {"role": "assistant", "content": answer, "reasoning_content": reasoning}]
        return {"kind": "identity", "messages": msgs, "tools": None}

    SMALLTALK = {
        EN: [
            ("Hello!", "The user greets me. I'll greet back and offer help.",
             ["Hello! I'm m2-tiny. What can I do for you?", "Hi there! How can I help you today?"]),
            ("How are you?", "The user asks how I am. I'll answer politely.",
             ["I'm doing well, thanks for asking! How can I help you?", "I'm great, thank you! What would you like to do?"]),
            ("Thank you!", "The user thanks me. I'll reply kindly.",
             ["You're welcome! Let me know if you need anything else.", "Happy to help!"]),
            ("Goodbye", "The user is leaving. I'll say goodbye.", ["Goodbye! Have a great day.", "Bye! Take care."]),
            ("What can you do?", "The user asks about my abilities. I'll list them briefly.",
             ["I'm m2-tiny. I can chat in English and Chinese, call tools such as weather or calendar functions, solve simple math word problems, and copy or quote text.",
              "I can answer simple questions, use the tools you give me, do basic arithmetic step by step, and repeat or quote passages."]),
            ("Tell me a joke.", "The user wants a joke. I'll tell a short, friendly one.",
             ["Why did the computer go to the doctor? Because it had a virus!",
              "Why do programmers prefer dark mode? Because light attracts bugs.",
              "What do you call a bear with no teeth? A gummy bear!"]),
            ("Good morning!", "The user says good morning. I'll greet back.",
             ["Good morning! I hope you have a wonderful day. How can I help?"]),
            ("Do you have feelings?", "The user asks about feelings. I should be honest that I am a language model.",
             ["I'm a small language model, so I don't have feelings, but I'm happy to help you."]),
        ],
        ZH: [
            ("你好", "用户在打招呼，我也回应并提供帮助。", ["你好！我是m2-tiny，有什么可以帮你的吗？", "你好呀！今天想做点什么？"]),
            ("你好吗？", "用户问候我，我礼貌地回答。", ["我很好，谢谢关心！有什么需要帮忙的吗？"]),
            ("谢谢", "用户在道谢，我礼貌回复。", ["不客气！还有其他问题随时问我。", "很高兴能帮到你！"]),
            ("再见", "用户要离开了，我说再见。", ["再见！祝你有美好的一天。", "拜拜，下次见！"]),
            ("你能做什么？", "用户问我的能力，我简单列举。",
             ["我是m2-tiny，可以用中文和英文聊天、调用天气和日历等工具、解答简单的数学应用题，还能复制或引用文字。"]),
            ("讲个笑话", "用户想听笑话，我讲一个简短的。",
             ["为什么电脑去看医生？因为它中了病毒！", "程序员为什么喜欢黑色主题？因为光会吸引虫子（bug）。"]),
            ("早上好", "用户说早上好，我回应。", ["早上好！祝你今天一切顺利。有什么可以帮你的？"]),
        ],
    }

    def smalltalk(self):
        rng = self.rng
        lang = self.lang(0.4)
        turns = rng.choice([1, 1, 2])
        msgs = self.system(lang)
        for _ in range(turns):
            user, reasoning, answers = rng.choice(self.SMALLTALK[lang])
            msgs += [{"role": "user", "content": user},
                     {"role": "assistant", "content": rng.choice(answers), "reasoning_content": reasoning}]
        return {"kind": "smalltalk", "messages": msgs, "tools": None}

    # ------------------------------------------------------------ the seed example
    def seed_example(self, exact=False):
        """User asks for the weather in 上海 with exactly the get_current_weather(city) schema."""
        self.variants = {}
        user = "请查询上海的天气" if exact else self.rng.choice(SEED_TOOL.zh).format(city="上海")
        args = {"city": "上海"}
        msgs, _ = self.tool_exchange([(SEED_TOOL, args)], ZH)
        system = [] if exact else self.system(ZH)
        return {"kind": "tool_single", "messages": system + [{"role": "user", "content": user}] + msgs,
                "tools": self.tool_list([SEED_TOOL])}

    def make(self, kind):
        self.variants = {}
        return {
            "tool_single": self.tool_single, "tool_parallel": self.tool_parallel,
            "tool_multiturn": self.tool_multiturn, "tool_nocall": self.tool_nocall,
            "identity": self.identity, "smalltalk": self.smalltalk, "gsm8k_chat": self.gsm8k_chat,
            "gsm8k_raw": self.gsm8k_raw, "passage": self.passage, "recall": self.recall, "echo": self.echo,
        }[kind]()


def build_train(n: int, seed: int = DEFAULT_SEED, mix: dict | None = None) -> list:
    """n training records (plus a few forced seed-check examples), deterministic in seed. mix: kind -> weight
    (default MIX; the copy drills "recall" and "echo" are only in a mix that names them)."""
    g = Generator(seed)
    mix = {k: w for k, w in (mix or MIX).items() if w > 0}
    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    out = [g.make(g.rng.choices(kinds, weights)[0]) for _ in range(n)]
    # Guarantee the seed phrasing: "请查询上海的天气" with the get_current_weather(city) schema.
    for i in range(max(8, n // 400)):
        out.append(g.seed_example(exact=i % 2 == 0))
    g.rng.shuffle(out)
    return out


def build_heldout(seed: int = HELDOUT_SEED, n_calls=200, n_results=120, n_gsm=200) -> dict:
    """Held-out evaluation sets (held-out entities and tools, separate seed)."""
    g = Generator(seed, heldout=True)
    train_g = Generator(seed + 1, heldout=True)  # seen tools, held-out entities
    train_g.tools = [t for t in TRAIN_TOOLS if has_heldout_entities(t)]
    calls, results = [], []
    for i in range(n_calls):
        gen = g if i % 2 == 0 else train_g
        split = "unseen_tool" if gen is g else "unseen_entity"
        lang = gen.lang(0.45)
        if gen.rng.random() < 0.15:
            reqs, user = gen.parallel_requests(lang)
        else:
            tool, _, user, args = gen.one_request(None, lang)
            reqs = [(tool, args)]
        tools = g.tool_list([t for t, _ in reqs])
        calls.append({"id": f"call-{i:04d}", "split": split, "lang": "en" if lang == EN else "zh",
                      "messages": [{"role": "user", "content": user}], "tools": tools,
                      "expected": [{"name": t.name, "arguments": a} for t, a in reqs]})
    for i in range(n_results):
        gen = g if i % 2 == 0 else train_g
        split = "unseen_tool" if gen is g else "unseen_entity"
        lang = gen.lang(0.45)
        tool, _, user, args = gen.one_request(None, lang)
        res, _ = tool.result(gen.rng, args, lang)
        msgs = [{"role": "user", "content": user},
                tool_call_msg([(tool.name, args)], gen.call_reasoning([(tool, args)], lang)),
                {"role": "tool", "content": json.dumps(res, ensure_ascii=False)}]
        results.append({"id": f"result-{i:04d}", "split": split, "lang": "en" if lang == EN else "zh",
                        "messages": msgs, "tools": g.tool_list([tool]), "expected_value": str(res[tool.key])})
    gsm = []
    for i in range(n_gsm):
        q, _, s, _, a = g.gsm8k_problem()
        gsm.append({"id": f"gsm-{i:04d}", "question": q, "answer": "\n".join(s) + f"\n#### {a}", "target": str(a)})
    return {"tool_calls": calls, "tool_results": results, "gsm8k": gsm}


def parse_mix(spec: str) -> dict:
    """'tool_single=0.4,recall=0.1' -> MIX with those weights replaced or added."""
    mix = dict(MIX)
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        kind, _, w = part.partition("=")
        if kind not in MIX and kind not in DRILLS:
            raise ValueError(f"unknown corpus kind {kind!r}; known: {sorted(MIX) + sorted(DRILLS)}")
        mix[kind] = float(w)
    return mix


def write_corpus(out_dir, n, seed=DEFAULT_SEED, heldout_seed=HELDOUT_SEED, eval_sizes=(200, 120, 200),
                 mix: dict | None = None, random_names: float = 0.0):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    E.set_random_rate(random_names)
    try:
        train = build_train(n, seed, mix)
    finally:
        E.set_random_rate(0.0)
    write_jsonl(out / "train.jsonl", train)
    held = build_heldout(heldout_seed, *eval_sizes)
    for name, rows in held.items():
        write_jsonl(out / "eval" / f"{name}.jsonl", rows)
    counts = {}
    for r in train:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    return {"train": len(train), "kinds": counts, **{k: len(v) for k, v in held.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--heldout-seed", type=int, default=HELDOUT_SEED)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mix", default="", help="override kind weights, e.g. 'tool_single=0.4,recall=0.1'")
    ap.add_argument("--random-names", type=float, default=0.0,
                    help="chance that a training city/person is a procedurally generated name")
    a = ap.parse_args(argv)
    print(json.dumps(write_corpus(a.out, a.n, a.seed, a.heldout_seed, mix=parse_mix(a.mix),
                                  random_names=a.random_names), indent=1))


if __name__ == "__main__":
    main()
