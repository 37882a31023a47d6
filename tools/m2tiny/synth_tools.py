"""Procedurally generated tools for training: a fresh function name, parameter names and phrasing per draw.

The 40 hand-written training tools are too few for a small model to learn *copying*: it memorises their names
and, on a schema it has never seen, writes the nearest memorised one. Here every conversation can get a tool that
exists only in that conversation (name built from a verb and a topic in one of several spellings, 1-3 parameters
whose names are drawn per tool, values that appear verbatim in the request), so the only way to get the call
right is to read the name from the system prompt's schema and the values from the user's message.

Topics deliberately avoid the held-out tools' subjects (air quality, sunrise, meeting rooms, library books,
trains, archives, buses, tips, domains) so the held-out evaluation stays unseen.
"""

from __future__ import annotations

import random
import string

from . import entities as E
from .schemas import EN, ZH, Param, Tool, join_list

# (snake name, English noun phrase, Chinese noun phrase)
TOPICS = [
    ("parking_fee", "parking fee", "停车费"), ("water_level", "water level", "水位"), ("pollen_count", "pollen count", "花粉指数"),
    ("gym_schedule", "gym schedule", "健身房课表"), ("order_status", "order status", "订单状态"),
    ("flight_status", "flight status", "航班状态"), ("tide_times", "tide times", "潮汐时间"), ("uv_index", "UV index", "紫外线指数"),
    ("electricity_bill", "electricity bill", "电费账单"), ("credit_score", "credit score", "信用分"),
    ("room_temperature", "room temperature", "室内温度"), ("traffic_report", "traffic report", "路况信息"),
    ("hotel_price", "hotel price", "酒店价格"), ("museum_hours", "museum hours", "博物馆开放时间"),
    ("ticket_price", "ticket price", "票价"), ("shipping_cost", "shipping cost", "运费"), ("gas_price", "gas price", "油价"),
    ("rent_estimate", "rent estimate", "租金估算"), ("earthquake_report", "earthquake report", "地震报告"),
    ("school_ranking", "school ranking", "学校排名"), ("bank_balance", "bank balance", "银行余额"),
    ("support_ticket", "support ticket", "工单"), ("invoice", "invoice", "发票"), ("playlist", "playlist", "播放列表"),
    ("reminder", "reminder", "提醒事项"), ("note", "note", "笔记"), ("appointment", "appointment", "预约"),
    ("dentist_appointment", "dentist appointment", "牙医预约"), ("taxi", "taxi", "出租车"), ("table", "table", "餐桌"),
    ("concert_ticket", "concert ticket", "演唱会门票"), ("car_rental", "car rental", "租车"), ("bike_rental", "bike rental", "单车租赁"),
    ("user_account", "user account", "用户账户"), ("password", "password", "密码"), ("backup", "backup", "备份"),
    ("server_status", "server status", "服务器状态"), ("disk_usage", "disk usage", "磁盘使用量"), ("cpu_load", "CPU load", "CPU负载"),
    ("build_log", "build log", "构建日志"), ("deployment", "deployment", "部署"), ("database_size", "database size", "数据库大小"),
    ("step_count", "step count", "步数"), ("heart_rate", "heart rate", "心率"), ("sleep_score", "sleep score", "睡眠评分"),
    ("calorie_intake", "calorie intake", "卡路里摄入"), ("blood_pressure", "blood pressure", "血压"),
    ("crop_yield", "crop yield", "作物产量"), ("soil_moisture", "soil moisture", "土壤湿度"), ("wind_speed", "wind speed", "风速"),
    ("snow_depth", "snow depth", "积雪深度"), ("rainfall", "rainfall", "降雨量"), ("sea_temperature", "sea temperature", "海水温度"),
    ("exam_score", "exam score", "考试成绩"), ("course_list", "course list", "课程列表"), ("homework", "homework", "作业"),
    ("library_fine", "overdue fine", "逾期罚款"), ("voucher", "voucher", "优惠券"), ("loyalty_points", "loyalty points", "积分"),
    ("gift_card", "gift card", "礼品卡"), ("subscription", "subscription", "订阅"), ("refund", "refund", "退款"),
    ("warranty", "warranty", "保修"), ("insurance_quote", "insurance quote", "保险报价"), ("loan_rate", "loan rate", "贷款利率"),
    ("tax_estimate", "tax estimate", "税费估算"), ("salary_report", "salary report", "工资单"), ("expense", "expense", "报销单"),
    ("shift", "work shift", "排班"), ("vacation_days", "vacation days", "假期天数"), ("package_locker", "package locker", "快递柜"),
    ("recycling_day", "recycling day", "垃圾回收日"), ("pet_vaccine", "pet vaccine", "宠物疫苗"), ("vet_visit", "vet visit", "宠物看诊"),
    ("plant_watering", "plant watering", "浇花计划"), ("fridge_inventory", "fridge inventory", "冰箱库存"),
    ("parking_spot", "parking spot", "停车位"), ("charging_station", "charging station", "充电桩"), ("ferry_ticket", "ferry ticket", "船票"),
    ("visa_status", "visa status", "签证状态"), ("passport_appointment", "passport appointment", "护照预约"),
    ("hiking_trail", "hiking trail", "徒步路线"), ("ski_conditions", "ski conditions", "滑雪场状况"), ("beach_report", "beach report", "海滩报告"),
    ("wifi_password", "wifi password", "无线网密码"), ("printer_queue", "printer queue", "打印队列"), ("coupon_code", "coupon code", "优惠码"),
    ("exchange_order", "exchange order", "换货单"), ("delivery_slot", "delivery slot", "配送时段"), ("menu", "menu", "菜单"),
    ("wine_pairing", "wine pairing", "配酒建议"), ("nutrition_facts", "nutrition facts", "营养成分"), ("lottery_result", "lottery result", "彩票结果"),
    ("horoscope", "horoscope", "星座运势"), ("volunteer_shift", "volunteer shift", "志愿者排班"), ("blood_donation", "blood donation", "献血预约"),
]

# verb key -> (synonyms usable in the function name, English request openers, Chinese request openers)
VERBS = {
    "get": (["get", "fetch", "query", "lookup", "check"],
            ["Get the {n}", "Show me the {n}", "What is the {n}", "Check the {n}", "Look up the {n}", "Tell me the {n}"],
            ["查询", "查一下", "帮我看看", "告诉我"]),
    "search": (["search", "find"], ["Search for the {n}", "Find the {n}"], ["搜索", "查找"]),
    "create": (["create", "add", "new"], ["Create a {n}", "Add a new {n}", "Make a {n}"], ["创建", "新建", "添加"]),
    "cancel": (["cancel"], ["Cancel the {n}", "Please cancel the {n}"], ["取消", "帮我取消"]),
    "update": (["update", "set", "modify"], ["Update the {n}", "Change the {n}"], ["更新", "修改"]),
    "delete": (["delete", "remove"], ["Delete the {n}", "Remove the {n}"], ["删除", "移除"]),
    "book": (["book", "reserve"], ["Book a {n}", "Reserve a {n}"], ["预订", "帮我订"]),
    "calculate": (["calculate", "compute", "estimate"], ["Calculate the {n}", "Estimate the {n}"], ["计算", "估算"]),
}
RESULT_KEYS = {"get": ["value", "result", "status", "level"], "search": ["top_result", "match", "result"],
               "create": ["id", "confirmation", "record_id"], "cancel": ["status", "cancellation_id"],
               "update": ["status", "new_value"], "delete": ["status", "deleted_id"],
               "book": ["confirmation", "booking_id", "reference"], "calculate": ["total", "amount", "result"]}


def _code(rng, letters=2, digits=4):
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(letters)) + \
        "".join(str(rng.randint(0, 9)) for _ in range(digits))


def _words(name):
    return name.replace("_", " ")


# A parameter kind: (name options, type, gen(rng, lang, pname) -> (value, surface), English clause, Chinese clause,
# Chinese clause position). Clauses use {v} for the surface and {w} for the parameter name in words.
def _pool_gen(pool):
    return lambda rng, lang, pname: (lambda v: (v, v))(E.draw(rng, pool, False)[lang])


ENUM_SETS = [["fast", "standard", "slow"], ["low", "medium", "high"], ["asc", "desc"], ["daily", "weekly", "monthly"],
             ["json", "csv", "text"], ["basic", "premium"], ["public", "private"], ["small", "large"], ["am", "pm"],
             ["red", "green", "blue"], ["economy", "business"], ["metric", "imperial"], ["celsius", "fahrenheit"]]
AMOUNTS = [2.5, 3.75, 10, 12.5, 18, 42, 99.9, 120, 150.25, 300, 7.2, 64]

PARAM_KINDS = {
    "place": (["city", "location", "city_name", "place", "region", "town"], "string", _pool_gen("city"),
              [" in {v}", " for {v}"], ["{v}的"], "pre"),
    "person": (["name", "person", "contact", "username", "owner", "customer"], "string", _pool_gen("person"),
               [" for {v}", " of {v}"], ["{v}的"], "pre"),
    "date": (["date", "day", "on_date", "start_date", "when"], "string",
             lambda rng, lang, p: (lambda v: (v, v))(f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"),
             [" on {v}", " for {v}"], ["{v}的"], "pre"),
    "time": (["time", "at_time", "start_time", "hour"], "string",
             lambda rng, lang, p: (lambda v: (v, v))(f"{rng.randint(6, 22):02d}:{rng.choice(['00', '15', '30', '45'])}"),
             [" at {v}"], ["，时间{v}", "，{v}开始"], "post"),
    "count": (["count", "limit", "max_results", "quantity", "num", "size"], "integer",
              lambda rng, lang, p: (lambda v: (v, str(v)))(rng.randint(1, 60)),
              [" with {w} {v}", ", {w} {v}"], ["，{w}为{v}", "，数量{v}"], "post"),
    "ident": (["id", "order_id", "code", "ticket_id", "account_id", "ref", "serial"], "string",
              lambda rng, lang, p: (lambda v: (v, v))(_code(rng, rng.randint(1, 3), rng.randint(3, 6))),
              [" with ID {v}", " number {v}", " {v}", " ({w} {v})"], ["，编号{v}", "，单号{v}", "，{w}是{v}"], "post"),
    "enum": (["mode", "level", "sort_by", "category", "priority", "format", "type", "unit", "tier"], "string", None,
             [" with {w} {v}", " in {v} {w}", ", {w}: {v}"], ["，{w}为{v}", "，选{v}"], "post"),
    "flag": (["include_details", "verbose", "urgent", "notify", "is_public", "dry_run", "express"], "boolean",
             lambda rng, lang, p: (lambda t: (t, ((" with {w}" if t else " without {w}") if lang == EN else
                                                  ("，需要{w}" if t else "，不要{w}")).format(w=_words(p))))(rng.random() < 0.5),
             ["{v}"], ["{v}"], "post"),
    "amount": (["amount", "price", "budget", "value", "weight", "distance"], "number",
               lambda rng, lang, p: (lambda v: (v, str(v)))(rng.choice(AMOUNTS)),
               [" with {w} {v}", " for {v}"], ["，{w}为{v}", "，金额{v}"], "post"),
    "items": (["items", "tags", "names", "cities", "keywords"], "array", None,
              [" for {v}", " covering {v}"], ["：{v}", "，包括{v}"], "pre_post"),
}


def _param(rng, kind, used):
    names, type_, gen, en, zh, pos = PARAM_KINDS[kind]
    pname = rng.choice([n for n in names if n not in used] or [kind + "_" + str(rng.randint(2, 9))])
    enum = None
    if kind == "enum":
        enum = list(rng.choice(ENUM_SETS))
        gen = lambda r, lang, p, e=enum: (lambda v: (v, v))(r.choice(e))  # noqa: E731
    if kind == "items":
        pool = rng.choice(["city", "item", "person"])
        gen = lambda r, lang, p, pool=pool: (lambda vs: (vs, join_list(vs, lang)))(  # noqa: E731
            [e[lang] for e in r.sample(E.pool(pool, False), r.randint(2, 3))])
    desc = rng.choice(["", f"The {_words(pname)}", f"{_words(pname).capitalize()} to use"])
    param = Param(pname, type_, desc, lambda r, lang, heldout, g=gen, p=pname: g(r, lang, p),
                  enum=enum, items="string" if type_ == "array" else None)
    return param


def _function_name(rng, verb_syn, snake):
    style = rng.random()
    if style < 0.45:
        name = f"{verb_syn}_{snake}"
    elif style < 0.65:
        parts = [verb_syn] + snake.split("_")
        name = parts[0] + "".join(p.capitalize() for p in parts[1:])
    elif style < 0.8:
        name = f"{snake}_{verb_syn}"
    elif style < 0.9:
        name = f"{snake.split('_')[0]}.{verb_syn}_{snake}"[:40] if rng.random() < 0.3 else f"{verb_syn}-{snake.replace('_', '-')}"
    else:
        name = f"{verb_syn}_{snake}_{rng.choice(['v2', 'api', 'tool', 'info', str(rng.randint(1, 99))])}"
    return name


def random_tool(rng: random.Random) -> Tool:
    """One never-seen-before tool: random topic, verb, spelling, parameters, phrasings and result key."""
    snake, noun_en, noun_zh = rng.choice(TOPICS)
    verb = rng.choice(list(VERBS))
    syns, en_open, zh_open = VERBS[verb]
    name = _function_name(rng, rng.choice(syns), snake)
    nparams = rng.choices([0, 1, 2, 3], [0.06, 0.4, 0.36, 0.18])[0]
    kinds = rng.sample(list(PARAM_KINDS), nparams)
    params, used = [], set()
    for i, k in enumerate(kinds):
        p = _param(rng, k, used)
        used.add(p.name)
        p.required = i == 0 or rng.random() < 0.5
        params.append(p)
    kind_of = dict(zip([p.name for p in params], kinds))
    by_noun = f" by {_words(params[0].name)}" if params and rng.random() < 0.5 else ""
    desc = rng.choice([f"{verb.capitalize()} the {noun_en}{by_noun}.", f"{verb.capitalize()} {noun_en}{by_noun}",
                       f"Tool to {verb} the {noun_en}.", f"{verb.capitalize()}s a {noun_en} record."])

    def render(subset, lang):
        """A request template mentioning exactly the parameters in subset, with {pname} placeholders."""
        if lang == EN:
            text = rng.choice(en_open).format(n=noun_en)
            for p in subset:
                text += rng.choice(PARAM_KINDS[kind_of[p.name]][3]).format(v="{" + p.name + "}", w=_words(p.name))
            return text + rng.choice([".", "?", "", " please."])
        pre, post = "", ""
        for p in subset:
            clause = rng.choice(PARAM_KINDS[kind_of[p.name]][4]).format(v="{" + p.name + "}", w=_words(p.name))
            if PARAM_KINDS[kind_of[p.name]][5] == "pre":
                pre += clause
            else:
                post += clause
        return rng.choice(zh_open) + pre + noun_zh + post + rng.choice(["。", "", "？"])

    required = [p for p in params if p.required]
    subsets = [params, required] + [required + [p] for p in params if not p.required]
    en = [render(s, EN) for s in subsets for _ in range(2)]
    zh = [render(s, ZH) for s in subsets for _ in range(2)]
    key = rng.choice(RESULT_KEYS[verb])

    def result(r, args, lang):
        v = rng_value(r, key)
        return {key: v, "ok": True}, {}

    ans_en = [f"The {noun_en} result is {{{key}}}.", f"Done. {key.replace('_', ' ').capitalize()}: {{{key}}}.",
              f"Here is what I found: {{{key}}}."]
    ans_zh = [f"{noun_zh}的结果是{{{key}}}。", f"已完成，{key}为{{{key}}}。", f"查询结果：{{{key}}}。"]
    return Tool(name, desc, params, en, zh, result, key, ans_en, ans_zh)


def rng_value(rng, key):
    if key in ("status",):
        return rng.choice(["confirmed", "pending", "done", "active", "closed", "shipped", "ok"])
    if key in ("value", "level", "total", "amount", "result", "new_value"):
        return rng.choice([rng.randint(1, 999), round(rng.uniform(1, 500), 1)])
    return _code(rng, rng.randint(2, 3), rng.randint(3, 6))


EXTRA_PARAMS = [("unit", {"type": "string", "enum": ["celsius", "fahrenheit"]}), ("language", {"type": "string"}),
                ("verbose", {"type": "boolean"}), ("limit", {"type": "integer"}), ("format", {"type": "string", "enum": ["json", "text"]})]


def augment_schema(schema: dict, rng: random.Random) -> dict:
    """Vary a schema's surface the way real clients do (the seed's is terse: "Get weather by city", no parameter
    descriptions, an optional enum the request does not mention) without changing which call is right."""
    fn = schema["function"]
    props = fn["parameters"]["properties"]
    if rng.random() < 0.35:
        for s in props.values():
            s.pop("description", None)
    if rng.random() < 0.25:
        name, s = rng.choice(EXTRA_PARAMS)
        if name not in props:
            props[name] = dict(s)
    if rng.random() < 0.2:
        words = fn["name"].replace("_", " ").split()
        first = next(iter(props), None)
        fn["description"] = " ".join(words).capitalize() + (f" by {first}" if first else "")
    return schema
