"""Tool schemas for the synthetic corpus: 40 training tools and 9 held-out tools.

Each tool carries its OpenAI-shaped JSON schema, user phrasings in English and Chinese (a phrasing's
placeholders decide which parameters the call has), a fake result generator, the result's key field (the value a
follow-up answer must contain) and answer phrasings. Held-out tools (HELDOUT_TOOLS) never appear in training.
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
        v = rng.choice(E.pool(name, heldout))[lang]
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


# ---------------------------------------------------------------- result generators
def r_weather(rng, a, lang):
    c = rng.choice(CONDITIONS)
    return {"city": a["city"], "temperature": rng.randint(-8, 38), "condition": c[lang],
            "humidity": rng.randint(20, 95)}, {}


def r_forecast(rng, a, lang):
    lo = rng.randint(-5, 25)
    days = a.get("days", 3)
    return {"city": a["city"], "days": days, "high": lo + rng.randint(3, 12), "low": lo,
            "summary": rng.choice(CONDITIONS)[lang]}, {"days": days}


def r_search(rng, a, lang):
    url = f"https://www.{rng.choice(['example.com', 'wiki.example.org', 'news.example.net'])}/article/{rng.randint(1000, 9999)}"
    title = (a["query"].capitalize() + ": a complete guide") if lang == EN else (a["query"] + "完全指南")
    return {"results": [{"title": title, "url": url}], "top_url": url}, {"title": title}


def r_calc(rng, a, lang):
    v = eval(a["expression"], {"__builtins__": {}})  # noqa: S307 (our own generated arithmetic)
    v = int(v) if float(v).is_integer() else round(v, 2)
    return {"result": v}, {}


def r_event(rng, a, lang):
    return {"event_id": ident(rng, "evt_"), "status": "created"}, {"time": a.get("time", "")}


def r_list_events(rng, a, lang):
    evs = rng.sample(E.EVENTS, rng.randint(1, 3))
    items = [{"title": e[lang], "time": clock(rng)} for e in evs]
    return {"date": a["date"], "count": len(items), "events": items}, {
        "first": items[0]["title"], "first_time": items[0]["time"]}


def r_read(rng, a, lang):
    text = rng.choice(E.MESSAGES + E.TASKS)[lang]
    return {"path": a["path"], "content": text, "size_bytes": len(text.encode())}, {}


def r_write(rng, a, lang):
    return {"status": "ok", "bytes_written": len(a["content"].encode("utf-8"))}, {}


def r_listdir(rng, a, lang):
    files = [f[0] for f in rng.sample(E.FILES, rng.randint(2, 4))]
    return {"path": a["path"], "count": len(files), "files": files}, {"files_str": join_list(files, lang)}


def r_units(rng, a, lang):
    v = a["value"] * UNIT_SI[a["from_unit"]] / UNIT_SI[a["to_unit"]]
    return {"result": round(v, 2) if abs(v) >= 1 else round(v, 5)}, {"from_s": UNITS[a["from_unit"]][lang], "to_s": UNITS[a["to_unit"]][lang]}


def r_currency(rng, a, lang):
    v = a["amount"] * RATES[a["to_currency"]] / RATES[a["from_currency"]]
    return {"converted": round(v, 2), "currency": a["to_currency"]}, {
        "from_s": CURRENCIES[a["from_currency"]][lang], "to_s": CURRENCIES[a["to_currency"]][lang]}


def r_stock(rng, a, lang):
    return {"symbol": a["symbol"], "price": round(rng.uniform(10, 900), 2), "currency": "USD",
            "change_percent": round(rng.uniform(-5, 5), 2)}, {}


def r_email(rng, a, lang):
    return {"status": "sent", "message_id": ident(rng, "msg_", 5)}, {}


def r_translate(rng, a, lang):
    src = a["text"]
    tgt = a["target_language"]
    out = None
    for en, zh in E.TEXTS_TO_TRANSLATE:
        if src in (en, zh):
            out = zh if tgt == "chinese" else (en if tgt == "english" else TRANSLATIONS[en][tgt])
    return {"translation": out, "target_language": tgt}, {"lang_s": LANGS[tgt][lang]}


def r_time(rng, a, lang):
    return {"city": a["city"], "local_time": clock(rng), "timezone": f"UTC{rng.choice(['+', '-'])}{rng.randint(0, 11)}"}, {}


def r_alarm(rng, a, lang):
    return {"alarm_id": ident(rng, "alarm_", 3), "time": a["time"]}, {}


def r_timer(rng, a, lang):
    return {"timer_id": ident(rng, "t", 3), "ends_at": clock(rng)}, {}


def r_music(rng, a, lang):
    return {"status": "playing", "track": a["song"], "duration": f"{rng.randint(2, 9)}:{rng.randint(0, 59):02d}"}, {}


def r_news(rng, a, lang):
    city = rng.choice(E.CITIES_TRAIN)[lang]
    if lang == EN:
        h = rng.choice([f"{city} opens a new research center", f"Record crowds gather in {city}",
                        f"{city} announces a green energy plan", f"New study from {city} surprises experts"])
    else:
        h = rng.choice([f"{city}新建研究中心", f"{city}迎来创纪录的人流", f"{city}发布绿色能源计划", f"{city}的新研究令专家惊讶"])
    return {"topic": a["topic"], "headline": h}, {"topic_s": NEWS[a["topic"]][lang]}


def r_book_rest(rng, a, lang):
    return {"status": "confirmed", "confirmation": ident(rng, "R", 5)}, {}


def r_find_rest(rng, a, lang):
    return {"name": rng.choice(E.RESTAURANTS_TRAIN)[lang], "rating": round(rng.uniform(3.5, 5.0), 1)}, {
        "cuisine_s": CUISINES[a["cuisine"]][lang]}


def r_rate(rng, a, lang):
    return {"rate": round(RATES[a["target"]] / RATES[a["base"]] * rng.uniform(0.98, 1.02), 4)}, {
        "base_s": CURRENCIES[a["base"]][lang], "target_s": CURRENCIES[a["target"]][lang]}


def r_flights(rng, a, lang):
    return {"flight": rng.choice(["CA", "MU", "BA", "LH", "UA", "AF"]) + str(rng.randint(100, 9999)),
            "price": rng.randint(80, 1500), "departure": clock(rng)}, {}


def r_hotel(rng, a, lang):
    return {"booking_id": ident(rng, "H", 6), "total_price": a["nights"] * rng.randint(60, 300)}, {}


def r_directions(rng, a, lang):
    return {"distance_km": round(rng.uniform(0.5, 30), 1), "duration_minutes": rng.randint(5, 90)}, {}


def r_todo(rng, a, lang):
    return {"todo_id": ident(rng, "todo_", 3), "status": "added"}, {}


def r_contact(rng, a, lang):
    return {"name": a["name"], "phone": f"+1-555-{rng.randint(1000, 9999)}"}, {}


def r_message(rng, a, lang):
    return {"status": "delivered", "delivered_at": clock(rng)}, {}


def r_population(rng, a, lang):
    return {"city": a["city"], "population": rng.randint(200_000, 25_000_000), "year": 2024}, {}


def r_define(rng, a, lang):
    return {"word": a["word"], "definition": DEFINITIONS[a["word"]]}, {}


def r_recipe(rng, a, lang):
    return {"dish": a["dish"], "cook_time_minutes": rng.randint(10, 90), "servings": a.get("servings", 2)}, {}


def r_package(rng, a, lang):
    st = rng.choice([("in transit", "运输中"), ("out for delivery", "派送中"), ("at the sorting center", "在分拣中心")])
    return {"status": st[lang], "eta": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}, {}


def r_thermo(rng, a, lang):
    return {"status": "ok", "target": a["temperature"], "current": round(rng.uniform(15, 27), 1)}, {
        "room_s": ROOMS[a.get("room", "living_room")][lang]}


def r_lights(rng, a, lang):
    return {"room": a["room"], "state": "on" if a["on"] else "off", "power_watts": rng.randint(0, 60) if a["on"] else 0}, {
        "room_s": ROOMS[a["room"]][lang]}


def r_showtimes(rng, a, lang):
    return {"movie": a["movie"], "next_showtime": clock(rng), "cinema": rng.choice(E.RESTAURANTS_TRAIN)[lang] + (" Cinema" if lang == EN else "影院")}, {}


def r_score(rng, a, lang):
    x, y = rng.randint(70, 120), rng.randint(70, 120)
    return {"team": a["team"], "score": f"{max(x, y)}-{min(x, y)}", "result": "won" if rng.random() < 0.5 else "lost"}, {}


def r_random(rng, a, lang):
    return {"number": rng.randint(a["min"], a["max"])}, {}


def r_battery(rng, a, lang):
    return {"battery_percent": rng.randint(3, 100), "charging": rng.random() < 0.3}, {}


def r_date(rng, a, lang):
    wd = rng.choice([("Monday", "星期一"), ("Tuesday", "星期二"), ("Wednesday", "星期三"), ("Thursday", "星期四"),
                     ("Friday", "星期五"), ("Saturday", "星期六"), ("Sunday", "星期日")])
    return {"date": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", "weekday": wd[lang]}, {}


def r_ip(rng, a, lang):
    return {"ip": f"203.0.113.{rng.randint(1, 254)}"}, {}


# held-out results
def r_air(rng, a, lang):
    return {"city": a["city"], "aqi": rng.randint(5, 300), "level": rng.choice(["good", "moderate", "unhealthy"])}, {}


def r_sun(rng, a, lang):
    return {"city": a["city"], "sunrise": f"0{rng.randint(4, 7)}:{rng.randint(10, 59)}", "sunset": f"{rng.randint(17, 20)}:{rng.randint(10, 59)}"}, {}


def r_room(rng, a, lang):
    return {"reservation_id": ident(rng, "MR", 4), "status": "reserved"}, {}


def r_library(rng, a, lang):
    return {"title": BOOKS[E.AUTHORS[[x[lang] for x in E.AUTHORS].index(a["author"])][0]][lang], "copies": rng.randint(1, 9)}, {}


def r_train(rng, a, lang):
    return {"train": rng.choice(["G", "D", "K"]) + str(rng.randint(10, 9999)), "departure": clock(rng)}, {}


def r_compress(rng, a, lang):
    return {"archive": f"archive_{rng.randint(100, 999)}.{a.get('format', 'zip')}", "size_kb": rng.randint(10, 9000)}, {}


def r_bus(rng, a, lang):
    return {"stop_id": a["stop_id"], "line": f"Bus {rng.randint(1, 99)}", "next_bus_minutes": rng.randint(1, 30)}, {}


def r_tip(rng, a, lang):
    tip = round(a["bill"] * a["percent"] / 100, 2)
    return {"tip": tip, "total": round(a["bill"] + tip, 2)}, {}


def r_domain(rng, a, lang):
    return {"domain": a["domain"], "available": rng.random() < 0.5, "price": round(rng.uniform(5, 60), 2)}, {}


# ---------------------------------------------------------------- the tools
CITY = g_pool("city")
_temp_nums = [16, 17.5, 18, 19.5, 20, 20.5, 21, 22, 22.5, 23, 24, 25.5, 26]
_value_nums = [1, 2.5, 3, 5, 7.5, 10, 12, 15.5, 20, 26.2, 42, 50, 100, 180.5]
_amounts = [5, 10, 20, 25.5, 50, 75, 99.9, 100, 250, 500, 1200]

TRAIN_TOOLS = [
    Tool("get_current_weather", "Get the current weather in a given city.",
         [P("city", "string", "The city name, e.g. Beijing", CITY)],
         ["What's the weather like in {city}?", "How is the weather in {city} right now?",
          "Can you check the current weather in {city}?", "Is it cold in {city} today?",
          "Tell me the weather in {city}.", "weather in {city}?", "I'm heading to {city}. What's the weather there now?"],
         ["请查询{city}的天气", "{city}现在天气怎么样？", "帮我看看{city}的天气。", "{city}今天冷吗？",
          "查一下{city}当前的天气", "我想知道{city}的天气情况。", "请问{city}现在是什么天气？"],
         r_weather, "temperature",
         ["It is currently {temperature}°C and {condition} in {city}, with {humidity}% humidity.",
          "Right now {city} is {condition} at {temperature}°C (humidity {humidity}%).",
          "The current temperature in {city} is {temperature}°C and the sky is {condition}."],
         ["{city}现在{condition}，气温{temperature}°C，湿度{humidity}%。", "{city}当前气温为{temperature}°C，天气{condition}。",
          "现在{city}的温度是{temperature}°C，{condition}，湿度{humidity}%。"]),
    Tool("get_weather_forecast", "Get a multi-day weather forecast for a city.",
         [P("city", "string", "City name", CITY), P("days", "integer", "Number of days (1-7)", g_int(1, 7), False),
          P("unit", "string", "Temperature unit", g_enum(UNIT_TEMP), False, enum=list(UNIT_TEMP))],
         ["What's the forecast for {city}?", "Give me the {days}-day forecast for {city}.",
          "Show the weather forecast for {city} for the next {days} days in {unit}.",
          "Forecast for {city} in {unit}, please."],
         ["{city}未来{days}天的天气预报是什么？", "给我看看{city}的天气预报，用{unit}。", "查询{city}的天气预报",
          "{city}接下来{days}天天气如何？请用{unit}显示。"],
         r_forecast, "high",
         ["Over the next {days} days in {city} expect {summary} weather, with a high of {high}° and a low of {low}°.",
          "{city} forecast: mostly {summary}, highs up to {high}° and lows around {low}°."],
         ["{city}未来{days}天以{summary}为主，最高{high}°，最低{low}°。", "{city}的预报：最高气温{high}°，最低{low}°，天气{summary}。"]),
    Tool("web_search", "Search the web and return the top results.",
         [P("query", "string", "Search query", g_pool("topic")),
          P("num_results", "integer", "How many results to return", g_int(1, 10), False)],
         ["Search the web for {query}.", "Find {num_results} results about {query}.", "Look up {query} online.",
          "Can you search for {query}?"],
         ["帮我搜索一下{query}。", "在网上搜{query}，给我{num_results}条结果。", "搜索{query}的相关信息", "查一下关于{query}的资料"],
         r_search, "top_url",
         ["The top result is \"{title}\": {top_url}", "I found \"{title}\" at {top_url}."],
         ["搜索结果第一条是“{title}”：{top_url}", "我找到了“{title}”，链接是{top_url}。"]),
    Tool("calculator", "Evaluate an arithmetic expression.",
         [P("expression", "string", "The expression to evaluate, e.g. 2 + 3 * 4", g_expression)],
         ["Use the calculator to compute {expression}.", "What is {expression}? Please use the calculator.",
          "Calculate {expression}."],
         ["用计算器算一下{expression}", "{expression}等于多少？请用计算器。", "计算{expression}"],
         r_calc, "result",
         ["{expression} = {result}.", "The result of {expression} is {result}."],
         ["{expression} = {result}。", "{expression}的结果是{result}。"]),
    Tool("create_calendar_event", "Create an event in the user's calendar.",
         [P("title", "string", "Event title", g_pool("event")), P("date", "string", "Date, YYYY-MM-DD", g_date),
          P("time", "string", "Start time, HH:MM", g_time, False)],
         ["Add \"{title}\" to my calendar on {date}.", "Create a calendar event called \"{title}\" on {date} at {time}.",
          "Schedule \"{title}\" for {date} at {time}."],
         ["在{date}的日历上添加“{title}”", "帮我创建一个日程：“{title}”，时间{date} {time}", "把“{title}”安排在{date} {time}"],
         r_event, "event_id",
         ["Done! \"{title}\" is on your calendar for {date} (event ID {event_id}).",
          "I created the event \"{title}\" on {date}. Its ID is {event_id}."],
         ["好的，已在{date}添加“{title}”，事件编号{event_id}。", "日程“{title}”已创建（{date}），编号是{event_id}。"]),
    Tool("list_calendar_events", "List the events on a given date.",
         [P("date", "string", "Date, YYYY-MM-DD", g_date)],
         ["What's on my calendar on {date}?", "List my events for {date}.", "Do I have anything scheduled on {date}?"],
         ["我{date}有什么安排？", "列出我{date}的日程", "查看{date}的日历"],
         r_list_events, "count",
         ["You have {count} event(s) on {date}. The first is \"{first}\" at {first_time}.",
          "On {date} there are {count} events, starting with \"{first}\" at {first_time}."],
         ["你{date}有{count}个日程，第一个是{first_time}的“{first}”。", "{date}共有{count}项安排，最早的是{first_time}的“{first}”。"]),
    Tool("read_file", "Read a text file and return its contents.",
         [P("path", "string", "Absolute file path", g_path)],
         ["Read the file {path}.", "Show me what's in {path}.", "Open {path} and tell me what it says."],
         ["读取文件{path}", "打开{path}看看里面写了什么", "显示{path}的内容"],
         r_read, "content",
         ["The file {path} says: \"{content}\"", "{path} contains: {content}"],
         ["文件{path}的内容是：“{content}”", "{path}里写着：{content}"]),
    Tool("write_file", "Write text to a file.",
         [P("path", "string", "Absolute file path", g_path), P("content", "string", "Text to write", g_pool("message")),
          P("append", "boolean", "Append instead of overwriting", g_bool((" by appending it to the end", "，追加到末尾"),
                                                                         (" and overwrite the old content", "，覆盖原内容")), False)],
         ["Write \"{content}\" to {path}.", "Save the text \"{content}\" into {path}{append}."],
         ["把“{content}”写入{path}", "将文本“{content}”保存到{path}{append}"],
         r_write, "bytes_written",
         ["Saved: {bytes_written} bytes were written to {path}.", "Done, {path} now has the text ({bytes_written} bytes written)."],
         ["已保存，向{path}写入了{bytes_written}字节。", "完成，{path}写入了{bytes_written}字节。"]),
    Tool("list_directory", "List the files in a directory.",
         [P("path", "string", "Directory path", g_pool("dir")),
          P("show_hidden", "boolean", "Include hidden files", g_bool((", including hidden files", "，包括隐藏文件"),
                                                                     (", without hidden files", "，不显示隐藏文件")), False)],
         ["List the files in {path}.", "What's inside {path}{show_hidden}?", "Show me the directory {path}{show_hidden}."],
         ["列出{path}里的文件", "{path}里有什么{show_hidden}？", "显示目录{path}{show_hidden}"],
         r_listdir, "count",
         ["{path} contains {count} files: {files_str}.", "I found {count} files in {path}: {files_str}."],
         ["{path}中有{count}个文件：{files_str}。", "{path}里共有{count}个文件：{files_str}。"]),
    Tool("convert_units", "Convert a value between units of length, mass or volume.",
         [P("value", "number", "The value to convert", g_num(_value_nums)),
          P("from_unit", "string", "Source unit", g_enum(UNITS), enum=list(UNITS)),
          P("to_unit", "string", "Target unit", g_enum(UNITS), enum=list(UNITS))],
         ["Convert {value} {from_unit} to {to_unit}.", "How many {to_unit} is {value} {from_unit}?",
          "Please change {value} {from_unit} into {to_unit}."],
         ["把{value}{from_unit}换算成{to_unit}", "{value}{from_unit}等于多少{to_unit}？", "请将{value}{from_unit}转换为{to_unit}"],
         r_units, "result",
         ["{value} {from_s} is about {result} {to_s}.", "That is {result} {to_s}."],
         ["{value}{from_s}约等于{result}{to_s}。", "换算结果是{result}{to_s}。"],
         check=lambda a: a["from_unit"] != a["to_unit"] and UNIT_DIM[a["from_unit"]] == UNIT_DIM[a["to_unit"]]),
    Tool("convert_currency", "Convert an amount of money from one currency to another.",
         [P("amount", "number", "Amount of money", g_num(_amounts)),
          P("from_currency", "string", "Source currency code", g_enum(CURRENCIES), enum=list(CURRENCIES)),
          P("to_currency", "string", "Target currency code", g_enum(CURRENCIES), enum=list(CURRENCIES))],
         ["Convert {amount} {from_currency} to {to_currency}.", "How much is {amount} {from_currency} in {to_currency}?"],
         ["把{amount}{from_currency}换成{to_currency}", "{amount}{from_currency}是多少{to_currency}？"],
         r_currency, "converted",
         ["{amount} {from_s} is {converted} {to_s}.", "That comes to {converted} {to_s}."],
         ["{amount}{from_s}等于{converted}{to_s}。", "换算后是{converted}{to_s}。"],
         check=lambda a: a["from_currency"] != a["to_currency"]),
    Tool("get_stock_price", "Get the latest stock price for a ticker symbol.",
         [P("symbol", "string", "Ticker symbol, e.g. AAPL", g_pool("ticker"))],
         ["What's the stock price of {symbol}?", "How is {symbol} trading today?", "Get me the latest price for {symbol}."],
         ["{symbol}的股价是多少？", "查一下{symbol}今天的股价", "帮我看看{symbol}现在的价格"],
         r_stock, "price",
         ["{symbol} is trading at {price} USD ({change_percent}% today).", "The latest price of {symbol} is ${price}."],
         ["{symbol}现价{price}美元，今日涨跌{change_percent}%。", "{symbol}的最新股价是{price}美元。"]),
    Tool("send_email", "Send an email.",
         [P("to", "string", "Recipient email address", g_email), P("subject", "string", "Subject line", g_pool("subject")),
          P("body", "string", "Message body", g_pool("message"), False),
          P("cc", "array", "Addresses to copy", g_emails, False, items="string")],
         ["Send an email to {to} with the subject \"{subject}\".", "Email {to} about \"{subject}\" and say \"{body}\".",
          "Send {to} an email titled \"{subject}\" and cc {cc}."],
         ["给{to}发一封邮件，主题是“{subject}”", "发邮件给{to}，主题“{subject}”，内容写“{body}”", "给{to}发邮件，主题“{subject}”，抄送{cc}"],
         r_email, "message_id",
         ["The email to {to} was sent (message ID {message_id}).", "Sent! Message ID: {message_id}."],
         ["邮件已发送给{to}，邮件编号{message_id}。", "发送成功，编号{message_id}。"]),
    Tool("translate_text", "Translate text into another language.",
         [P("text", "string", "Text to translate", g_pool("text")),
          P("target_language", "string", "Target language", g_enum(LANGS), enum=list(LANGS))],
         ["Translate \"{text}\" into {target_language}.", "How do you say \"{text}\" in {target_language}?"],
         ["把“{text}”翻译成{target_language}", "“{text}”用{target_language}怎么说？"],
         r_translate, "translation",
         ["In {lang_s}, \"{text}\" is \"{translation}\".", "The translation is: {translation}"],
         ["“{text}”的{lang_s}是“{translation}”。", "翻译结果：{translation}"],
         check=lambda a: any((a["text"] == en and (a["target_language"] == "chinese" or a["target_language"] in TRANSLATIONS.get(en, {})))
                             or (a["text"] == zh and a["target_language"] == "english") for en, zh in E.TEXTS_TO_TRANSLATE)),
    Tool("get_local_time", "Get the current local time in a city.",
         [P("city", "string", "City name", CITY)],
         ["What time is it in {city}?", "Tell me the local time in {city}.", "What's the current time in {city}?"],
         ["{city}现在几点？", "查一下{city}的当地时间", "{city}现在是什么时间？"],
         r_time, "local_time",
         ["It is {local_time} in {city} ({timezone}).", "The local time in {city} is {local_time}."],
         ["{city}现在是{local_time}（{timezone}）。", "{city}当地时间{local_time}。"]),
    Tool("set_alarm", "Set an alarm.",
         [P("time", "string", "Alarm time, HH:MM", g_time), P("label", "string", "Alarm label", g_pool("alarm_label"), False)],
         ["Set an alarm for {time}.", "Wake me up at {time}.", "Set an alarm at {time} labeled \"{label}\"."],
         ["设置一个{time}的闹钟", "{time}叫我起床", "设一个{time}的闹钟，标签是“{label}”"],
         r_alarm, "alarm_id",
         ["Your alarm for {time} is set (ID {alarm_id}).", "Alarm {alarm_id} will ring at {time}."],
         ["已设置{time}的闹钟，编号{alarm_id}。", "闹钟{alarm_id}会在{time}响。"]),
    Tool("set_timer", "Start a countdown timer.",
         [P("minutes", "integer", "Duration in minutes", g_int(1, 120))],
         ["Set a timer for {minutes} minutes.", "Start a {minutes}-minute timer.", "Remind me in {minutes} minutes."],
         ["设一个{minutes}分钟的计时器", "开始倒计时{minutes}分钟", "{minutes}分钟后提醒我"],
         r_timer, "ends_at",
         ["Timer started: it will go off at {ends_at}.", "Your {minutes}-minute timer ends at {ends_at}."],
         ["计时器已开始，将在{ends_at}结束。", "{minutes}分钟计时器会在{ends_at}响。"]),
    Tool("play_music", "Play a song.",
         [P("song", "string", "Song title", g_pool("song")), P("artist", "string", "Artist name", g_pool("artist"), False),
          P("shuffle", "boolean", "Shuffle the queue", g_bool((" on shuffle", "，随机播放"), (" without shuffle", "，顺序播放")), False)],
         ["Play {song}.", "Play {song} by {artist}.", "Put on {song}{shuffle}."],
         ["播放{song}", "播放{artist}的{song}", "放一下{song}{shuffle}"],
         r_music, "duration",
         ["Now playing {song} ({duration}).", "{song} is playing now; it lasts {duration}."],
         ["正在播放{song}，时长{duration}。", "开始播放{song}，时长{duration}。"]),
    Tool("get_news", "Get the latest news headline on a topic.",
         [P("topic", "string", "News topic", g_enum(NEWS), enum=list(NEWS)),
          P("count", "integer", "Number of headlines", g_int(1, 5), False)],
         ["What's the latest {topic} news?", "Give me {count} {topic} headlines.", "Any news about {topic} today?"],
         ["最近有什么{topic}新闻？", "给我{count}条{topic}新闻", "今天{topic}方面有什么消息？"],
         r_news, "headline",
         ["Top {topic_s} headline: \"{headline}\".", "The latest {topic_s} story is: {headline}."],
         ["{topic_s}头条：“{headline}”。", "最新的{topic_s}新闻是：{headline}。"]),
    Tool("book_restaurant", "Book a table at a restaurant.",
         [P("restaurant", "string", "Restaurant name", g_pool("restaurant")),
          P("party_size", "integer", "Number of people", g_int(1, 12)), P("time", "string", "Time, HH:MM", g_time)],
         ["Book a table for {party_size} at {restaurant} at {time}.", "Reserve {restaurant} for {party_size} people at {time}."],
         ["帮我在{restaurant}订一个{party_size}人的位子，时间{time}", "预订{restaurant}，{party_size}位，{time}"],
         r_book_rest, "confirmation",
         ["Your table for {party_size} at {restaurant} is confirmed for {time}. Confirmation number: {confirmation}.",
          "Booked! Confirmation {confirmation}."],
         ["已为您预订{restaurant}，{party_size}位，{time}，确认号{confirmation}。", "预订成功，确认号{confirmation}。"]),
    Tool("find_restaurants", "Find a restaurant in a city by cuisine.",
         [P("city", "string", "City name", CITY), P("cuisine", "string", "Cuisine type", g_enum(CUISINES), enum=list(CUISINES)),
          P("max_price", "integer", "Maximum price per person", g_int(10, 100), False)],
         ["Find a {cuisine} restaurant in {city}.", "Recommend {cuisine} food in {city} under {max_price} dollars per person."],
         ["在{city}找一家{cuisine}餐厅", "推荐{city}人均{max_price}元以内的{cuisine}"],
         r_find_rest, "name",
         ["Try {name}, a {cuisine_s} place in {city} rated {rating}.", "I recommend {name} (rating {rating})."],
         ["推荐{city}的{name}，{cuisine_s}，评分{rating}。", "可以试试{name}，评分{rating}。"]),
    Tool("get_exchange_rate", "Get the exchange rate between two currencies.",
         [P("base", "string", "Base currency code", g_enum(CURRENCIES), enum=list(CURRENCIES)),
          P("target", "string", "Target currency code", g_enum(CURRENCIES), enum=list(CURRENCIES))],
         ["What's the exchange rate from {base} to {target}?", "How many {target} for one {base}?"],
         ["{base}兑{target}的汇率是多少？", "1{base}能换多少{target}？"],
         r_rate, "rate",
         ["1 {base} = {rate} {target}.", "The rate is {rate} {target_s} per {base_s}."],
         ["1{base} = {rate}{target}。", "汇率是1{base_s}兑{rate}{target_s}。"],
         check=lambda a: a["base"] != a["target"]),
    Tool("search_flights", "Search for flights between two cities on a date.",
         [P("origin", "string", "Departure city", CITY), P("destination", "string", "Arrival city", CITY),
          P("date", "string", "Date, YYYY-MM-DD", g_date)],
         ["Find flights from {origin} to {destination} on {date}.", "I need to fly from {origin} to {destination} on {date}."],
         ["查一下{date}从{origin}到{destination}的航班", "我想在{date}从{origin}飞{destination}"],
         r_flights, "flight",
         ["Flight {flight} leaves {origin} for {destination} at {departure} on {date}, for {price} dollars.",
          "The best option is {flight} at {departure}, costing {price}."],
         ["{date}有航班{flight}，{departure}从{origin}飞往{destination}，票价{price}。", "推荐航班{flight}，{departure}起飞，价格{price}。"],
         check=lambda a: a["origin"] != a["destination"]),
    Tool("book_hotel", "Book a hotel room.",
         [P("city", "string", "City name", CITY), P("nights", "integer", "Number of nights", g_int(1, 14)),
          P("guests", "integer", "Number of guests", g_int(1, 6), False)],
         ["Book a hotel in {city} for {nights} nights.", "I need a hotel room in {city} for {nights} nights for {guests} guests."],
         ["帮我在{city}订{nights}晚的酒店", "在{city}订酒店，住{nights}晚，{guests}个人"],
         r_hotel, "booking_id",
         ["Your hotel in {city} is booked for {nights} nights. Booking ID: {booking_id}, total {total_price}.",
          "Booked! Reference {booking_id}."],
         ["已为您预订{city}的酒店，{nights}晚，订单号{booking_id}，总价{total_price}。", "预订成功，订单号{booking_id}。"]),
    Tool("get_directions", "Get travel directions between two places.",
         [P("origin", "string", "Starting point", g_place), P("destination", "string", "Destination", g_place),
          P("mode", "string", "Travel mode", g_enum(MODES), False, enum=list(MODES))],
         ["How do I get from {origin} to {destination}?", "Directions from {origin} to {destination} {mode}, please."],
         ["从{origin}到{destination}怎么走？", "{mode}从{origin}去{destination}怎么走？"],
         r_directions, "duration_minutes",
         ["It takes about {duration_minutes} minutes ({distance_km} km) from {origin} to {destination}.",
          "The trip is {distance_km} km and takes {duration_minutes} minutes."],
         ["从{origin}到{destination}约{distance_km}公里，需要{duration_minutes}分钟。", "全程{distance_km}公里，大约{duration_minutes}分钟。"],
         check=lambda a: a["origin"] != a["destination"]),
    Tool("create_todo", "Add an item to the to-do list.",
         [P("task", "string", "What needs to be done", g_pool("task")),
          P("priority", "string", "Priority", g_enum(PRIORITY), False, enum=list(PRIORITY)),
          P("tags", "array", "Tags", g_tags, False, items="string")],
         ["Add \"{task}\" to my to-do list.", "Remind me to {task} with {priority} priority.",
          "Add a to-do: {task}, tagged {tags}."],
         ["把“{task}”加到待办清单", "提醒我{task}，优先级{priority}", "添加待办：{task}，标签{tags}"],
         r_todo, "todo_id",
         ["Added \"{task}\" to your list (ID {todo_id}).", "Done, to-do {todo_id} created."],
         ["已添加待办“{task}”，编号{todo_id}。", "好的，待办{todo_id}已创建。"]),
    Tool("get_contact", "Look up a contact's phone number.",
         [P("name", "string", "Contact name", g_pool("person"))],
         ["What's {name}'s phone number?", "Look up {name} in my contacts.", "Find the number for {name}."],
         ["{name}的电话是多少？", "在通讯录里查一下{name}", "帮我找{name}的电话号码"],
         r_contact, "phone",
         ["{name}'s number is {phone}.", "You can reach {name} at {phone}."],
         ["{name}的电话是{phone}。", "{name}的号码：{phone}。"]),
    Tool("send_message", "Send a text message to a contact.",
         [P("recipient", "string", "Contact name", g_pool("person")), P("text", "string", "Message text", g_pool("message"))],
         ["Text {recipient}: \"{text}\".", "Send a message to {recipient} saying \"{text}\"."],
         ["给{recipient}发消息：“{text}”", "发短信告诉{recipient}“{text}”"],
         r_message, "delivered_at",
         ["Your message to {recipient} was delivered at {delivered_at}.", "Delivered to {recipient} at {delivered_at}."],
         ["消息已在{delivered_at}送达{recipient}。", "已发送给{recipient}，送达时间{delivered_at}。"]),
    Tool("get_population", "Get the population of a city.",
         [P("city", "string", "City name", CITY)],
         ["What is the population of {city}?", "How many people live in {city}?"],
         ["{city}有多少人口？", "查询{city}的人口"],
         r_population, "population",
         ["{city} has a population of {population} ({year}).", "About {population} people live in {city}."],
         ["{city}的人口为{population}（{year}年）。", "{city}大约有{population}人。"]),
    Tool("define_word", "Look up the definition of an English word.",
         [P("word", "string", "The word", g_pool("word"))],
         ["What does \"{word}\" mean?", "Define {word}.", "Look up the meaning of {word}."],
         ["“{word}”是什么意思？", "查一下单词{word}的意思", "解释一下{word}这个词"],
         r_define, "definition",
         ["\"{word}\" means {definition}.", "Definition of {word}: {definition}."],
         ["{word}的意思是：{definition}。", "“{word}”：{definition}。"]),
    Tool("get_recipe", "Get a recipe for a dish.",
         [P("dish", "string", "Dish name", g_pool("dish")), P("servings", "integer", "Number of servings", g_int(1, 8), False)],
         ["How do I make {dish}?", "Give me a recipe for {dish} for {servings} people.", "Find a {dish} recipe."],
         ["{dish}怎么做？", "给我一个{servings}人份的{dish}做法", "找一个{dish}的菜谱"],
         r_recipe, "cook_time_minutes",
         ["Here is a {dish} recipe; it takes about {cook_time_minutes} minutes.", "{dish} needs {cook_time_minutes} minutes to cook."],
         ["{dish}大约需要{cook_time_minutes}分钟。", "这道{dish}需要烹饪{cook_time_minutes}分钟。"]),
    Tool("track_package", "Track a package by its tracking number.",
         [P("tracking_number", "string", "Tracking number", g_tracking)],
         ["Where is my package {tracking_number}?", "Track the parcel {tracking_number}."],
         ["我的快递{tracking_number}到哪了？", "查一下快递单号{tracking_number}"],
         r_package, "eta",
         ["Package {tracking_number} is {status} and should arrive on {eta}.", "Expected delivery: {eta} ({status})."],
         ["快递{tracking_number}目前{status}，预计{eta}送达。", "预计送达日期：{eta}（{status}）。"]),
    Tool("set_thermostat", "Set the thermostat temperature in Celsius.",
         [P("temperature", "number", "Target temperature in Celsius", g_num(_temp_nums)),
          P("room", "string", "Room", g_enum(ROOMS), False, enum=list(ROOMS))],
         ["Set the thermostat to {temperature} degrees.", "Make the {room} {temperature} degrees."],
         ["把温度调到{temperature}度", "把{room}的温度设成{temperature}度"],
         r_thermo, "current",
         ["The thermostat is set to {temperature}°C; it is {current}°C right now.", "Set! Current temperature: {current}°C."],
         ["已把温度设为{temperature}°C，当前{current}°C。", "设置完成，现在室温{current}°C。"]),
    Tool("set_lights", "Turn the lights in a room on or off.",
         [P("room", "string", "Room", g_enum(ROOMS), enum=list(ROOMS)),
          P("on", "boolean", "true to turn on, false to turn off", g_bool(("on", "打开"), ("off", "关掉"))),
          P("brightness", "integer", "Brightness percent", g_int(10, 100), False)],
         ["Turn {on} the lights in the {room}.", "Switch the {room} lights {on}.", "Turn {on} the {room} lights at {brightness}% brightness."],
         ["{on}{room}的灯", "请把{room}的灯{on}", "{on}{room}的灯，亮度{brightness}%"],
         r_lights, "power_watts",
         ["The {room_s} lights are now {state}, drawing {power_watts} W.", "Done: {state}, {power_watts} W."],
         ["{room_s}的灯现在是{state}状态，功率{power_watts}瓦。", "好了，功率{power_watts}瓦。"]),
    Tool("get_movie_showtimes", "Get showtimes for a movie in a city.",
         [P("movie", "string", "Movie title", g_pool("movie")), P("city", "string", "City name", CITY),
          P("date", "string", "Date, YYYY-MM-DD", g_date, False)],
         ["When is {movie} playing in {city}?", "Showtimes for {movie} in {city} on {date}."],
         ["{movie}在{city}什么时候上映？", "查{city}{date}的《{movie}》场次"],
         r_showtimes, "next_showtime",
         ["The next showing of {movie} in {city} is at {next_showtime} at {cinema}.", "Next show: {next_showtime}."],
         ["{movie}在{city}的下一场是{next_showtime}，地点{cinema}。", "下一场：{next_showtime}。"]),
    Tool("get_sports_score", "Get the latest game score for a team.",
         [P("team", "string", "Team name", g_pool("team"))],
         ["How did the {team} do in their last game?", "What was the score of the last {team} game?"],
         ["{team}上一场比赛结果如何？", "{team}最近一场比分是多少？"],
         r_score, "score",
         ["The {team} {result} their last game {score}.", "Final score: {score} ({result})."],
         ["{team}上一场比分{score}。", "最终比分：{score}。"]),
    Tool("random_number", "Generate a random integer in a range.",
         [P("min", "integer", "Lower bound", g_int(0, 50)), P("max", "integer", "Upper bound", g_int(51, 1000))],
         ["Give me a random number between {min} and {max}.", "Pick a random integer from {min} to {max}."],
         ["给我一个{min}到{max}之间的随机数", "在{min}和{max}之间随机选一个整数"],
         r_random, "number",
         ["Your random number is {number}.", "I picked {number}."],
         ["随机数是{number}。", "选中的数字是{number}。"]),
    Tool("get_battery_status", "Get the device battery level.", [],
         ["How much battery do I have left?", "Check my battery level.", "What's my battery at?"],
         ["我的电量还剩多少？", "查看电池电量", "手机还有多少电？"],
         r_battery, "battery_percent",
         ["Your battery is at {battery_percent}%.", "Battery: {battery_percent}%."],
         ["电量还剩{battery_percent}%。", "当前电量{battery_percent}%。"]),
    Tool("get_current_date", "Get today's date.", [],
         ["What's the date today?", "What day is it today?", "Tell me today's date."],
         ["今天几号？", "今天是几月几号？", "告诉我今天的日期"],
         r_date, "date",
         ["Today is {weekday}, {date}.", "The date is {date}."],
         ["今天是{date}，{weekday}。", "今天的日期是{date}。"]),
    Tool("get_public_ip", "Get the device's public IP address.", [],
         ["What's my IP address?", "Show my public IP."],
         ["我的IP地址是什么？", "查一下我的公网IP"],
         r_ip, "ip",
         ["Your public IP address is {ip}.", "IP: {ip}."],
         ["你的公网IP是{ip}。", "IP地址：{ip}。"]),
]

HELDOUT_TOOLS = [
    Tool("get_air_quality", "Get the current air quality index of a city.",
         [P("city", "string", "City name", CITY)],
         ["What's the air quality in {city}?", "Is the air clean in {city} today?", "Check the AQI for {city}."],
         ["{city}的空气质量怎么样？", "查一下{city}的空气质量指数", "{city}今天空气好吗？"],
         r_air, "aqi", heldout=True),
    Tool("get_sunrise_time", "Get sunrise and sunset times for a city.",
         [P("city", "string", "City name", CITY), P("date", "string", "Date, YYYY-MM-DD", g_date, False)],
         ["When is sunrise in {city}?", "What time does the sun rise in {city} on {date}?"],
         ["{city}几点日出？", "{city}{date}的日出时间是几点？"],
         r_sun, "sunrise", heldout=True),
    Tool("reserve_meeting_room", "Reserve a meeting room.",
         [P("room", "string", "Room name", g_pool("room_name")), P("hour", "integer", "Start hour (0-23)", g_int(8, 18)),
          P("attendees", "integer", "Number of attendees", g_int(2, 20), False)],
         ["Reserve the {room} room at {hour} o'clock.", "Book meeting room {room} at hour {hour} for {attendees} people."],
         ["预订{room}会议室，{hour}点开始", "帮我订{room}会议室，{hour}点，{attendees}个人"],
         r_room, "reservation_id", heldout=True),
    Tool("search_library_books", "Search the library catalog by author.",
         [P("author", "string", "Author name", g_pool("author")),
          P("available_only", "boolean", "Only books on the shelf", g_bool((" that are available now", "，只看可借的"), (" including borrowed ones", "，包括已借出的")), False)],
         ["Find books by {author} in the library.", "Search the library for {author}{available_only}."],
         ["在图书馆查找{author}的书", "搜索{author}的书{available_only}"],
         r_library, "title", heldout=True),
    Tool("get_train_schedule", "Get the next train between two cities.",
         [P("origin", "string", "Departure city", CITY), P("destination", "string", "Arrival city", CITY)],
         ["When is the next train from {origin} to {destination}?", "Train schedule from {origin} to {destination}."],
         ["从{origin}到{destination}的下一班火车是几点？", "查一下{origin}到{destination}的火车时刻"],
         r_train, "train", check=lambda a: a["origin"] != a["destination"], heldout=True),
    Tool("compress_files", "Compress files into an archive.",
         [P("paths", "array", "Files to compress", g_paths, items="string"),
          P("format", "string", "Archive format", g_enum({"zip": ("zip", "zip"), "tar": ("tar", "tar")}), False, enum=["zip", "tar"])],
         ["Compress {paths}.", "Zip up {paths} as {format}."],
         ["把{paths}压缩一下", "将{paths}打包成{format}"],
         r_compress, "archive", heldout=True),
    Tool("get_bus_arrival", "Get the next bus arrival at a stop.",
         [P("stop_id", "string", "Bus stop ID", g_pool("bus_stop"))],
         ["When is the next bus at stop {stop_id}?", "How long until a bus comes to {stop_id}?"],
         ["{stop_id}站下一班公交车什么时候到？", "查一下{stop_id}站的公交到站时间"],
         r_bus, "next_bus_minutes", heldout=True),
    Tool("calculate_tip", "Calculate the tip for a bill.",
         [P("bill", "number", "Bill amount", g_num(_amounts)), P("percent", "integer", "Tip percentage", g_int(5, 25))],
         ["What's a {percent}% tip on {bill}?", "Calculate a {percent} percent tip for a bill of {bill}."],
         ["{bill}元的账单给{percent}%小费是多少？", "帮我算一下{bill}的{percent}%小费"],
         r_tip, "tip", heldout=True),
    Tool("check_domain_availability", "Check whether a domain name is available to register.",
         [P("domain", "string", "Domain name", g_pool("domain"))],
         ["Is the domain {domain} available?", "Can I register {domain}?"],
         ["{domain}这个域名还能注册吗？", "查一下域名{domain}是否可用"],
         r_domain, "price", heldout=True),
]

TOOLS_BY_NAME = {t.name: t for t in TRAIN_TOOLS + HELDOUT_TOOLS}
SEED_TOOL = TOOLS_BY_NAME["get_current_weather"]
