"""Copy tasks for the m2-tiny corpus: passages to copy or quote (on by default) and the copy drills `recall`
and `echo` (only in a mix that names them; tools/m2tiny/sweeps/README.md says why they exist)."""

from __future__ import annotations

from . import entities as E
from .schemas import EN
from .synth_tools import random_tool


class CopyTasksMixin:
    """Part of corpus.Generator: uses its rng, heldout, lang() and system()."""

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
