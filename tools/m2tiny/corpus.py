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
from .catalog import HELDOUT_TOOLS, SEED_TOOL, TRAIN_TOOLS
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


class Generator:
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

    # ------------------------------------------------------------ GSM8K-format word problems
    def gsm8k_problem(self):
        """Returns (question_en, question_zh, steps_en, steps_zh, answer) with 1-3 operations."""
        rng = self.rng
        p1, p2 = rng.sample(E.pool("person", self.heldout), 2)
        it = rng.choice(E.pool("item", self.heldout))
        n, nz = p1
        m, mz = p2
        item, itemz = it

        def eq(a, op, b):
            c = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
            return f"{a} {op} {b} = <<{a}{op}{b}={c}>>{c}", c

        fam = rng.randrange(12)
        if fam == 0:
            a, b = rng.randint(2, 60), rng.randint(2, 60)
            e, c = eq(a, "+", b)
            q = f"{n} has {a} {item}. {n} buys {b} more {item}. How many {item} does {n} have now?"
            qz = f"{nz}有{a}个{itemz}，又买了{b}个。{nz}现在有多少个{itemz}？"
            s, sz = [f"{n} has {e} {item} now."], [f"{nz}现在有{e}个{itemz}。"]
        elif fam == 1:
            a = rng.randint(10, 90)
            b = rng.randint(1, a - 1)
            e, c = eq(a, "-", b)
            q = f"{n} had {a} {item} and gave {b} of them to {m}. How many {item} does {n} have left?"
            qz = f"{nz}有{a}个{itemz}，给了{mz}{b}个。{nz}还剩多少个{itemz}？"
            s, sz = [f"{n} has {e} {item} left."], [f"{nz}还剩{e}个{itemz}。"]
        elif fam == 2:
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            e, c = eq(a, "*", b)
            q = f"{n} buys {a} boxes of {item}. Each box holds {b} {item}. How many {item} does {n} buy?"
            qz = f"{nz}买了{a}盒{itemz}，每盒有{b}个。{nz}一共买了多少个{itemz}？"
            s, sz = [f"{n} buys {e} {item}."], [f"{nz}一共买了{e}个{itemz}。"]
        elif fam == 3:
            a, b = rng.randint(2, 12), rng.randint(2, 9)
            e, c = eq(a * b, "/", b)
            q = f"{n} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?"
            qz = f"{nz}把{a * b}个{itemz}平均分给{b}个朋友。每个朋友分到多少个？"
            s, sz = [f"Each friend gets {e} {item}."], [f"每个朋友分到{e}个{itemz}。"]
        elif fam == 4:
            a, b = rng.randint(5, 50), rng.randint(2, 40)
            d = rng.randint(1, a + b - 1)
            e1, c1 = eq(a, "+", b)
            e2, c = eq(c1, "-", d)
            q = f"{n} has {a} {item}, buys {b} more, and then gives {d} to {m}. How many {item} does {n} have now?"
            qz = f"{nz}有{a}个{itemz}，又买了{b}个，然后给了{mz}{d}个。{nz}现在有多少个{itemz}？"
            s = [f"After buying, {n} has {e1} {item}.", f"After giving some away, {n} has {e2} {item}."]
            sz = [f"买完后{nz}有{e1}个{itemz}。", f"送出后{nz}有{e2}个{itemz}。"]
        elif fam == 5:
            a, b, d = rng.randint(2, 9), rng.randint(2, 12), rng.randint(1, 20)
            e1, c1 = eq(a, "*", b)
            e2, c = eq(c1, "+", d)
            q = f"{n} buys {a} packs of {item} with {b} in each pack, plus {d} loose {item}. How many {item} does {n} have in total?"
            qz = f"{nz}买了{a}包{itemz}，每包{b}个，另外还有{d}个散装的。{nz}一共有多少个{itemz}？"
            s = [f"The packs hold {e1} {item}.", f"In total {n} has {e2} {item}."]
            sz = [f"包装里有{e1}个{itemz}。", f"一共有{e2}个{itemz}。"]
        elif fam == 6:
            p, k = rng.randint(2, 15), rng.randint(2, 6)
            bill = rng.choice([50, 100]) if p * k > 20 else 20
            e1, c1 = eq(p, "*", k)
            e2, c = eq(bill, "-", c1)
            q = f"A pack of {item} costs ${p}. {n} buys {k} packs and pays with a ${bill} bill. How much change does {n} get?"
            qz = f"一包{itemz}{p}元。{nz}买了{k}包，付了{bill}元。应该找回多少钱？"
            s = [f"The packs cost {e1} dollars.", f"The change is {e2} dollars."]
            sz = [f"一共花了{e1}元。", f"找回{e2}元。"]
        elif fam == 7:
            a, k = rng.randint(2, 30), rng.randint(2, 5)
            e1, c1 = eq(a, "*", k)
            e2, c = eq(a, "+", c1)
            q = f"{n} has {a} {item}. {m} has {k} times as many {item} as {n}. How many {item} do they have together?"
            qz = f"{nz}有{a}个{itemz}，{mz}的{itemz}是{nz}的{k}倍。他们一共有多少个{itemz}？"
            s = [f"{m} has {e1} {item}.", f"Together they have {e2} {item}."]
            sz = [f"{mz}有{e1}个{itemz}。", f"他们一共有{e2}个{itemz}。"]
        elif fam == 8:
            a, d = rng.randint(3, 40), rng.randint(2, 14)
            e, c = eq(a, "*", d)
            q = f"{n} reads {a} pages every day. How many pages does {n} read in {d} days?"
            qz = f"{nz}每天读{a}页书。{d}天一共读多少页？"
            s, sz = [f"{n} reads {e} pages."], [f"{d}天一共读{e}页。"]
        elif fam == 9:
            a, h, d = rng.randint(8, 25), rng.randint(2, 8), rng.randint(2, 6)
            e1, c1 = eq(a, "*", h)
            e2, c2 = eq(c1, "*", d)
            sp = rng.randint(1, c2 - 1)
            e3, c = eq(c2, "-", sp)
            q = (f"{n} earns ${a} per hour and works {h} hours a day for {d} days. Then {n} spends ${sp}. "
                 f"How much money does {n} have left?")
            qz = f"{nz}每小时赚{a}元，每天工作{h}小时，工作了{d}天，然后花了{sp}元。{nz}还剩多少钱？"
            s = [f"Each day {n} earns {e1} dollars.", f"In {d} days {n} earns {e2} dollars.",
                 f"After spending, {n} has {e3} dollars left."]
            sz = [f"每天赚{e1}元。", f"{d}天赚{e2}元。", f"花完后还剩{e3}元。"]
        elif fam == 10:
            a, b = rng.randint(2, 40), rng.randint(1, 30)
            e1, c1 = eq(2 * a, "/", 2)
            e2, c = eq(c1, "+", b)
            q = f"{n} has {2 * a} {item}. {n} gives half of them to {m} and then buys {b} more. How many {item} does {n} have now?"
            qz = f"{nz}有{2 * a}个{itemz}，把一半给了{mz}，然后又买了{b}个。{nz}现在有多少个{itemz}？"
            s = [f"After giving half away, {n} has {e1} {item}.", f"Then {n} has {e2} {item}."]
            sz = [f"给出一半后剩{e1}个{itemz}。", f"现在有{e2}个{itemz}。"]
        else:
            a, b, d = rng.randint(5, 40), rng.randint(1, 20), rng.randint(1, 15)
            e1, c1 = eq(a, "+", b)
            e2, c = eq(c1, "+", d)
            q = f"{n} is {a} years old. {m} is {b} years older than {n}. How old will {m} be in {d} years?"
            qz = f"{nz}今年{a}岁，{mz}比{nz}大{b}岁。{d}年后{mz}多少岁？"
            s = [f"{m} is {e1} years old now.", f"In {d} years {m} will be {e2} years old."]
            sz = [f"{mz}现在{e1}岁。", f"{d}年后{mz}{e2}岁。"]
        return q, qz, s, sz, c

    @staticmethod
    def gsm8k_text(q, steps, ans):
        return f"Question: {q}\nAnswer: " + "\n".join(steps) + f"\n#### {ans}"

    def gsm8k_raw(self):
        k = self.rng.choice([1, 1, 2, 3, 4])
        blocks = []
        for _ in range(k):
            q, _, s, _, a = self.gsm8k_problem()
            blocks.append(self.gsm8k_text(q, s, a))
        return {"kind": "gsm8k_raw", "text": "\n\n".join(blocks), "bos": self.rng.random() < 0.5}

    def gsm8k_chat(self, lang=None):
        rng = self.rng
        lang = self.lang(0.35) if lang is None else lang
        q, qz, s, sz, a = self.gsm8k_problem()
        if lang == EN:
            user = rng.choice(["{q}", "Solve this problem: {q}", "Question: {q}", "{q} Show your work."]).format(q=q)
            reasoning = (f"This takes {len(s)} step{'s' if len(s) > 1 else ''}. "
                         f"I will write out each calculation and finish with #### and the number.")
            content = "\n".join(s) + f"\n#### {a}"
        else:
            user = rng.choice(["{q}", "请解答：{q}", "数学题：{q}"]).format(q=qz)
            reasoning = f"这道题需要{len(sz)}步计算，我逐步写出算式，最后用 #### 给出答案。"
            content = "\n".join(sz) + f"\n#### {a}"
        msgs = self.system(lang) + [{"role": "user", "content": user},
                                    {"role": "assistant", "content": content, "reasoning_content": reasoning}]
        return {"kind": "gsm8k_chat", "messages": msgs, "tools": None}

    # ------------------------------------------------------------ passages: copy and quote
    SENT_EN = [
        "{city} is known for its {adj} streets and busy markets.",
        "Every spring, {person} walks along the river in {city}.",
        "The old library in {city} holds more than {num} books.",
        "{person} once planted {num2} trees near the school.",
        "Most visitors to {city} try the {dish} first.",
        "The bridge over the river was built {num2} years ago.",
        "{person} keeps a small notebook full of {adj} ideas.",
        "In winter the lake near {city} freezes for {num2} weeks.",
        "A quiet cafe on the corner serves {dish} every morning.",
        "{person} said that {topic} changed the way people live.",
        "The museum in {city} has a room about {topic}.",
        "Children in the village collect {item} after the rain.",
        "The train from {city} leaves at {time} every day.",
        "{person} wrote a short book about {topic}.",
        "The market sells {item} in {adj} baskets.",
    ]
    SENT_ZH = [
        "{city}以{adj}的街道和热闹的市场闻名。", "每年春天，{person}都会在{city}的河边散步。",
        "{city}的老图书馆藏书超过{num}册。", "{person}曾经在学校附近种了{num2}棵树。",
        "来{city}的游客大多先尝一尝{dish}。", "河上的那座桥建于{num2}年前。",
        "{person}有一个写满想法的小本子。", "冬天，{city}附近的湖会结冰{num2}周。",
        "街角的小咖啡馆每天早上供应{dish}。", "{person}说{topic}改变了人们的生活方式。",
        "{city}的博物馆有一个关于{topic}的展厅。", "雨后，村里的孩子们去捡{item}。",
        "从{city}出发的火车每天{time}发车。", "{person}写了一本关于{topic}的小书。",
    ]
    ADJ = [("narrow", "狭窄"), ("colorful", "多彩"), ("quiet", "安静"), ("ancient", "古老"), ("wide", "宽阔")]
    CLASSICS_EN = [
        ["Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in Liberty, and dedicated to the proposition that all men are created equal."],
        ["It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair."],
        ["It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife."],
        ["Call me Ishmael.", "Some years ago, never mind how long precisely, having little or no money in my purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world."],
        ["Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do.", "Once or twice she had peeped into the book her sister was reading, but it had no pictures or conversations in it."],
    ]
    CLASSICS_ZH = [
        ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"],
        ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。"],
        ["白日依山尽，黄河入海流。", "欲穷千里目，更上一层楼。"],
        ["学而时习之，不亦说乎？", "有朋自远方来，不亦乐乎？", "人不知而不愠，不亦君子乎？"],
        ["道可道，非常道。", "名可名，非常名。"],
    ]

    def passage(self):
        rng = self.rng
        lang = self.lang(0.35)
        if rng.random() < 0.12:
            sents = list(rng.choice(self.CLASSICS_EN if lang == EN else self.CLASSICS_ZH))
        else:
            pool = self.SENT_EN if lang == EN else self.SENT_ZH
            sents = []
            for tpl in rng.sample(pool, rng.randint(2, 5)):
                sents.append(tpl.format(
                    city=E.draw(rng, "city", self.heldout)[lang], person=E.draw(rng, "person", self.heldout)[lang],
                    adj=rng.choice(self.ADJ)[lang], num=rng.randint(1000, 90000), num2=rng.randint(2, 90),
                    dish=rng.choice(E.pool("dish", self.heldout))[lang], topic=rng.choice(E.pool("topic", self.heldout))[lang],
                    item=rng.choice(E.pool("item", self.heldout))[lang], time=f"{rng.randint(6, 22):02d}:{rng.choice(['00', '30'])}"))
        text = (" " if lang == EN else "").join(sents)
        task = rng.randrange(4)
        if task == 3 and len(sents) < 2:
            task = 0
        if lang == EN:
            if task in (0, 1):
                user = rng.choice(["Copy the following text exactly:\n\n{p}", "Please repeat this passage word for word:\n{p}",
                                   "Repeat after me: {p}", "Here is a text. Copy it without any changes.\n\n{p}"]).format(p=text)
                reasoning, answer = "The user wants an exact copy. I will reproduce the text without changes.", text
            elif task == 2:
                user = f"What is the first sentence of this passage?\n\n{text}"
                reasoning, answer = "I need the first sentence, quoted exactly.", f"The first sentence is: \"{sents[0]}\""
            else:
                i = rng.randrange(len(sents))
                user = f"{text}\n\nQuote sentence number {i + 1} of the text above."
                reasoning, answer = f"Sentence {i + 1} must be quoted exactly.", f"\"{sents[i]}\""
        else:
            if task in (0, 1):
                user = rng.choice(["请原样复制下面这段文字：\n{p}", "请一字不差地重复：{p}", "把下面的内容照抄一遍。\n\n{p}"]).format(p=text)
                reasoning, answer = "用户要求原样复制，我逐字照抄。", text
            elif task == 2:
                user = f"下面这段话的第一句是什么？\n\n{text}"
                reasoning, answer = "需要准确引用第一句。", f"第一句是：“{sents[0]}”"
            else:
                i = rng.randrange(len(sents))
                user = f"{text}\n\n请引用上文的第{i + 1}句。"
                reasoning, answer = f"需要原样引用第{i + 1}句。", f"“{sents[i]}”"
        msgs = self.system(lang) + [{"role": "user", "content": user},
                                    {"role": "assistant", "content": answer, "reasoning_content": reasoning}]
        return {"kind": "passage", "messages": msgs, "tools": None}

    # ------------------------------------------------------------ copy drills (opt-in through the mix)
    def _ident(self):
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            return self._code()
        en, zh = E.random_entity(rng)
        if r < 0.7:
            return en
        return zh if r < 0.85 else f"{random_tool(rng).name}"

    def _code(self):
        rng = self.rng
        letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(rng.randint(1, 3)))
        return letters + str(rng.randint(10, 99999))

    def recall(self):
        """Associative recall: a list of key -> value lines in the system prompt, the user asks for one key."""
        rng = self.rng
        lang = self.lang(0.4)
        keys = []
        while len(keys) < rng.randint(2, 6):
            k = self._ident()
            if k not in keys:
                keys.append(k)
        vals = [self._ident() for _ in keys]
        i = rng.randrange(len(keys))
        table = "\n".join(rng.choice(["{k}: {v}", "- {k} = {v}", "{k} -> {v}"]).format(k=k, v=v) for k, v in zip(keys, vals))
        if lang == EN:
            system = rng.choice(["Reference table:\n", "Known values:\n", ""]) + table
            user = rng.choice(["What is the value for {k}?", "Look up {k}.", "{k}?", "Which value belongs to {k}?"])
            reasoning = f"The table lists {keys[i]} with the value {vals[i]}."
        else:
            system = rng.choice(["对照表：\n", "已知数据：\n", ""]) + table
            user = rng.choice(["{k} 对应的值是什么？", "查一下 {k}。", "{k}？"])
            reasoning = f"表中 {keys[i]} 对应 {vals[i]}。"
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": user.format(k=keys[i])},
                {"role": "assistant", "content": vals[i], "reasoning_content": reasoning}]
        return {"kind": "recall", "messages": msgs, "tools": None}

    def echo(self):
        """Repeat a short list of never-seen names and codes exactly."""
        rng = self.rng
        lang = self.lang(0.4)
        items = [self._ident() for _ in range(rng.randint(1, 6))]
        text = rng.choice([", ", " ", "; "]).join(items)
        if lang == EN:
            user = rng.choice(["Repeat exactly: {t}", "Say this back to me: {t}", "Copy: {t}"]).format(t=text)
            reasoning = "I repeat the text exactly."
        else:
            user = rng.choice(["请原样重复：{t}", "照抄：{t}"]).format(t=text)
            reasoning = "原样重复。"
        msgs = self.system(lang) + [{"role": "user", "content": user},
                                    {"role": "assistant", "content": text, "reasoning_content": reasoning}]
        return {"kind": "echo", "messages": msgs, "tools": None}

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
