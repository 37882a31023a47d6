"""GSM8K-format word problems for the m2-tiny corpus: 1-3 operations with the calculation written out, as raw
"Question: ... Answer: ... #### N" documents and inside chats (English and Chinese)."""

from __future__ import annotations

from . import entities as E
from .schemas import EN


class Gsm8kMixin:
    """Part of corpus.Generator: uses its rng, heldout, lang() and system()."""

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
