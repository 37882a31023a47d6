"""Tool machinery for the synthetic corpus: value generators, shared surfaces, Tool / Param, phrasing fill-in.

Each tool carries its OpenAI-shaped JSON schema, user phrasings in English and Chinese (a phrasing's
placeholders decide which parameters the call has), a fake result generator, the result's key field (the value a
follow-up answer must contain) and answer phrasings. The tools themselves are in catalog.py, their fake
results in results.py; held-out tools (catalog.HELDOUT_TOOLS) never appear in training.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Callable

from . import entities as E

EN, ZH = 0, 1


def join_list(items, lang):
    items = list(items)
    if len(items) == 1:
        return items[0]
    if lang == EN:
        return ", ".join(items[:-1]) + " and " + items[-1]
    return "、".join(items[:-1]) + "和" + items[-1]


# ---------------------------------------------------------------- value generators
# A generator takes (rng, lang, heldout) and returns (argument value, surface text used in the phrasing).

def g_pool(name):
    def gen(rng, lang, heldout):
        v = E.draw(rng, name, heldout)[lang]
        return v, v
    gen.pool_name = name
    return gen


def g_int(lo, hi):
    def gen(rng, lang, heldout):
        v = rng.randint(lo, hi)
        return v, str(v)
    return gen


def g_num(choices):
    def gen(rng, lang, heldout):
        v = rng.choice(choices)
        return v, str(v)
    return gen


def g_enum(mapping):
    def gen(rng, lang, heldout):
        v = rng.choice(list(mapping))
        return v, mapping[v][lang]
    return gen


def g_bool(true_surface, false_surface):
    def gen(rng, lang, heldout):
        v = rng.random() < 0.5
        return v, (true_surface if v else false_surface)[lang]
    return gen


def g_array(name, lo=2, hi=3):
    def gen(rng, lang, heldout):
        entries = E.pool(name, heldout)
        k = min(rng.randint(lo, hi), len(entries))
        vals = [e[lang] for e in rng.sample(entries, k)]
        return vals, join_list(vals, lang)
    return gen


def g_date(rng, lang, heldout):
    v = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return v, v


def g_time(rng, lang, heldout):
    v = f"{rng.randint(6, 22):02d}:{rng.choice(['00', '15', '30', '45'])}"
    return v, v


def g_email(rng, lang, heldout):
    name = rng.choice(E.pool("person", heldout))[EN].lower()
    v = f"{name}@{rng.choice(['example.com', 'mail.com', 'work.org'])}"
    return v, v


g_email.pool_name = "person"


def g_emails(rng, lang, heldout):
    names = rng.sample(E.pool("person", heldout), 2)
    vals = [f"{n[EN].lower()}@example.com" for n in names]
    return vals, join_list(vals, lang)


def g_path(rng, lang, heldout):
    v = rng.choice(E.DIRS)[0] + "/" + rng.choice(E.FILES)[0]
    return v, v


def g_paths(rng, lang, heldout):
    d = rng.choice(E.DIRS)[0]
    vals = [d + "/" + f[0] for f in rng.sample(E.FILES, rng.randint(2, 3))]
    return vals, join_list(vals, lang)


def g_expression(rng, lang, heldout):
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    form = rng.randrange(4)
    if form == 0:
        v = f"{a} * {b}"
    elif form == 1:
        v = f"{a} + {b} * {rng.randint(2, 9)}"
    elif form == 2:
        v = f"({a} + {b}) / {rng.choice([2, 4, 5])}"
    else:
        v = f"{a * b} - {a}"
    return v, v


def g_tracking(rng, lang, heldout):
    v = rng.choice(["1Z", "SF", "JD"]) + "".join(str(rng.randint(0, 9)) for _ in range(9))
    return v, v


# ---------------------------------------------------------------- surfaces shared by several tools
UNIT_TEMP = {"celsius": ("celsius", "摄氏度"), "fahrenheit": ("fahrenheit", "华氏度")}
CURRENCIES = {"USD": ("US dollars", "美元"), "EUR": ("euros", "欧元"), "CNY": ("Chinese yuan", "人民币"),
              "JPY": ("Japanese yen", "日元"), "GBP": ("British pounds", "英镑"), "KRW": ("Korean won", "韩元")}
UNITS = {"km": ("kilometers", "公里"), "mile": ("miles", "英里"), "kg": ("kilograms", "千克"),
         "lb": ("pounds", "磅"), "m": ("meters", "米"), "ft": ("feet", "英尺"), "l": ("liters", "升"),
         "gal": ("gallons", "加仑")}
UNIT_DIM = {"km": "len", "mile": "len", "m": "len", "ft": "len", "kg": "mass", "lb": "mass", "l": "vol", "gal": "vol"}
UNIT_SI = {"km": 1000.0, "mile": 1609.344, "m": 1.0, "ft": 0.3048, "kg": 1.0, "lb": 0.45359237, "l": 1.0,
           "gal": 3.78541}
RATES = {"USD": 1.0, "EUR": 0.92, "CNY": 7.2, "JPY": 151.0, "GBP": 0.79, "KRW": 1350.0}
ROOMS = {"living_room": ("living room", "客厅"), "bedroom": ("bedroom", "卧室"), "kitchen": ("kitchen", "厨房"),
         "office": ("office", "书房")}
CUISINES = {"italian": ("Italian", "意大利菜"), "chinese": ("Chinese", "中餐"), "japanese": ("Japanese", "日料"),
            "mexican": ("Mexican", "墨西哥菜"), "indian": ("Indian", "印度菜")}
MODES = {"driving": ("by car", "开车"), "walking": ("on foot", "步行"), "transit": ("by public transit", "坐公共交通"),
         "cycling": ("by bike", "骑车")}
PRIORITY = {"low": ("low", "低"), "medium": ("medium", "中"), "high": ("high", "高")}
NEWS = {"technology": ("technology", "科技"), "sports": ("sports", "体育"), "business": ("business", "财经"),
        "science": ("science", "科学"), "health": ("health", "健康")}
LANGS = {"english": ("English", "英语"), "chinese": ("Chinese", "中文"), "french": ("French", "法语"),
         "spanish": ("Spanish", "西班牙语"), "german": ("German", "德语"), "japanese": ("Japanese", "日语")}
TAGS = {"work": ("work", "工作"), "home": ("home", "家里"), "urgent": ("urgent", "紧急"),
        "shopping": ("shopping", "购物"), "health": ("health", "健康")}
PLACES = [("the train station", "火车站"), ("the airport", "机场"), ("City Hall", "市政厅"),
          ("the museum", "博物馆"), ("the central library", "中央图书馆"), ("the old harbor", "老港口"),
          ("the university", "大学"), ("the stadium", "体育场")]
CONDITIONS = [("sunny", "晴"), ("cloudy", "多云"), ("rainy", "有雨"), ("windy", "有风"), ("snowy", "下雪"),
              ("foggy", "有雾")]
DEFINITIONS = {
    "serendipity": "finding something good without looking for it",
    "ephemeral": "lasting for a very short time",
    "ubiquitous": "present or found everywhere",
    "resilient": "able to recover quickly from difficulties",
    "meticulous": "showing great attention to detail",
    "eloquent": "fluent and persuasive in speaking or writing",
    "pragmatic": "dealing with things in a practical way",
    "benevolent": "well meaning and kindly",
    "candid": "truthful and straightforward",
    "diligent": "showing care and effort in work",
    "frugal": "careful about spending money",
    "gregarious": "fond of company; sociable",
    "humble": "having a modest view of one's importance",
    "jovial": "cheerful and friendly",
    "lucid": "expressed clearly; easy to understand",
    "nostalgia": "a sentimental longing for the past",
    "optimistic": "hopeful about the future",
    "quixotic": "exceedingly idealistic and unrealistic",
    "perspicacious": "having a ready insight into things",
    "sesquipedalian": "given to using long words",
}
TRANSLATIONS = {  # english text -> {language: translation}
    "Good morning": {"french": "Bonjour", "spanish": "Buenos días", "german": "Guten Morgen"},
    "Thank you very much": {"french": "Merci beaucoup", "spanish": "Muchas gracias", "german": "Vielen Dank"},
    "See you tomorrow": {"french": "À demain", "spanish": "Hasta mañana", "german": "Bis morgen"},
}
BOOKS = {"Jane Austen": ("Pride and Prejudice", "傲慢与偏见"), "Mark Twain": ("The Adventures of Tom Sawyer", "汤姆·索亚历险记"),
         "Lu Xun": ("Call to Arms", "呐喊"), "Charles Dickens": ("Great Expectations", "远大前程"),
         "Leo Tolstoy": ("War and Peace", "战争与和平")}


def g_place(rng, lang, heldout):
    v = rng.choice(PLACES)[lang]
    return v, v


def g_tags(rng, lang, heldout):
    vals = [TAGS[t][lang] for t in rng.sample(sorted(TAGS), 2)]
    return vals, join_list(vals, lang)


def ident(rng, prefix, digits=4):
    return prefix + "".join(str(rng.randint(0, 9)) for _ in range(digits))


def clock(rng):
    return f"{rng.randint(6, 22):02d}:{rng.randint(0, 59):02d}"


# ---------------------------------------------------------------- data classes
@dataclass
class Param:
    name: str
    type: str  # string | integer | number | boolean | array
    desc: str
    gen: Callable
    required: bool = True
    enum: list | None = None
    items: str | None = None  # item type for arrays

    def schema(self):
        s = {"type": self.type, "description": self.desc} if self.desc else {"type": self.type}
        if self.enum:
            s["enum"] = list(self.enum)
        if self.type == "array":
            s["items"] = {"type": self.items or "string"}
        return s


@dataclass
class Tool:
    name: str
    desc: str
    params: list
    en: list
    zh: list
    result: Callable  # (rng, args, lang) -> (result dict, extra format fields)
    key: str
    ans_en: list = field(default_factory=list)
    ans_zh: list = field(default_factory=list)
    check: Callable | None = None  # (args) -> bool; resample when False
    heldout: bool = False

    def schema(self, name=None, pmap=None):
        """OpenAI-shaped schema; name/pmap rename the function and its parameters (training variants)."""
        pmap = pmap or {}
        return {"type": "function", "function": {
            "name": name or self.name, "description": self.desc,
            "parameters": {"type": "object",
                           "properties": {pmap.get(p.name, p.name): p.schema() for p in self.params},
                           "required": [pmap.get(p.name, p.name) for p in self.params if p.required]}}}

    def param(self, name):
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


VERB_SYNONYMS = {"get": ["fetch", "lookup", "query"], "search": ["find", "lookup"], "create": ["add", "new"],
                 "set": ["update", "configure"], "send": ["post", "dispatch"], "list": ["show", "enumerate"],
                 "read": ["load", "open"], "write": ["save", "store"], "convert": ["transform"], "book": ["reserve"],
                 "find": ["locate", "discover"], "play": ["start"], "track": ["trace"], "define": ["explain"]}


def camel(s: str) -> str:
    parts = s.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def name_variant(tool: Tool, rng) -> tuple:
    """A renamed copy of a tool's function and parameter names: (name, {param: new_param}).

    Training uses these for about a third of the tool appearances so that the model learns to copy names from
    the schema in the system prompt instead of memorising them (held-out tools have names it never saw)."""
    style = rng.choice(["camel", "verb", "suffix"])
    if style == "camel" and ("_" in tool.name or any("_" in p.name for p in tool.params)):
        return camel(tool.name), {p.name: camel(p.name) for p in tool.params}
    verb, _, rest = tool.name.partition("_")
    if style == "verb" and rest and verb in VERB_SYNONYMS:
        return rng.choice(VERB_SYNONYMS[verb]) + "_" + rest, {}
    return tool.name + rng.choice(["_tool", "_api", "_v2"]), {}


def has_heldout_entities(tool: Tool) -> bool:
    """True when a required parameter draws from an entity pool that has a held-out part."""
    return any(p.required and E.POOLS.get(getattr(p.gen, "pool_name", ""), ([], []))[1] for p in tool.params)


def placeholders(template: str) -> list:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def make_call(tool: Tool, rng, lang, heldout, max_tries=50):
    """Pick a phrasing, fill it; returns (user text, arguments dict in schema order, surfaces)."""
    for _ in range(max_tries):
        tpl = rng.choice(tool.en if lang == EN else tool.zh)
        names = placeholders(tpl)
        vals, surf = {}, {}
        for n in names:
            vals[n], surf[n] = tool.param(n).gen(rng, lang, heldout)
        args = {p.name: vals[p.name] for p in tool.params if p.name in vals}
        if tool.check is None or tool.check(args):
            return tpl.format(**surf), args, surf
    raise RuntimeError(f"could not generate arguments for {tool.name}")


def P(name, type_, desc, gen, required=True, enum=None, items=None):
    return Param(name, type_, desc, gen, required, enum, items)
