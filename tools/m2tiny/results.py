"""Fake tool results: for each tool, (rng, arguments, lang) -> (result dict, extra answer-format fields).

Results are consistent with the arguments (a forecast for the asked city and days, a conversion computed from
the asked units) so the answer that restates them is checkable.
"""

from __future__ import annotations

from . import entities as E
from .schemas import (EN, ZH, BOOKS, CONDITIONS, CUISINES, CURRENCIES, DEFINITIONS, LANGS, NEWS, RATES, ROOMS,
    TRANSLATIONS, UNITS, UNIT_SI, clock, ident, join_list)


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
