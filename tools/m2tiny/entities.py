"""Entity pools for the synthetic corpus, each split into a TRAIN part and a HELDOUT part.

Every pool entry is (english, chinese). HELDOUT entries never appear in the training corpus (checked by
tests/tools/test_m2tiny_pipeline.py); the held-out evaluation files use them. Pools without a HELDOUT part are
shared (dates, numbers, units, ...): generalisation to unseen values of those is not measured.
"""

from __future__ import annotations

import functools

CITIES_TRAIN = [
    ("Paris", "巴黎"), ("London", "伦敦"), ("Tokyo", "东京"), ("Beijing", "北京"), ("Shanghai", "上海"),
    ("New York", "纽约"), ("Berlin", "柏林"), ("Madrid", "马德里"), ("Rome", "罗马"), ("Sydney", "悉尼"),
    ("Toronto", "多伦多"), ("Seoul", "首尔"), ("Moscow", "莫斯科"), ("Cairo", "开罗"), ("Mumbai", "孟买"),
    ("Bangkok", "曼谷"), ("Singapore", "新加坡"), ("Dubai", "迪拜"), ("Istanbul", "伊斯坦布尔"),
    ("Vienna", "维也纳"), ("Prague", "布拉格"), ("Amsterdam", "阿姆斯特丹"), ("Lisbon", "里斯本"),
    ("Athens", "雅典"), ("Stockholm", "斯德哥尔摩"), ("Oslo", "奥斯陆"), ("Helsinki", "赫尔辛基"),
    ("Dublin", "都柏林"), ("Chicago", "芝加哥"), ("Boston", "波士顿"), ("Seattle", "西雅图"),
    ("Los Angeles", "洛杉矶"), ("San Francisco", "旧金山"), ("Miami", "迈阿密"), ("Vancouver", "温哥华"),
    ("Montreal", "蒙特利尔"), ("Mexico City", "墨西哥城"), ("Lima", "利马"), ("Buenos Aires", "布宜诺斯艾利斯"),
    ("Nairobi", "内罗毕"), ("Cape Town", "开普敦"), ("Hanoi", "河内"), ("Manila", "马尼拉"),
    ("Jakarta", "雅加达"), ("Kuala Lumpur", "吉隆坡"), ("Osaka", "大阪"), ("Kyoto", "京都"),
    ("Guangzhou", "广州"), ("Shenzhen", "深圳"), ("Chengdu", "成都"), ("Hangzhou", "杭州"), ("Wuhan", "武汉"),
    ("Xi'an", "西安"), ("Nanjing", "南京"), ("Tianjin", "天津"), ("Chongqing", "重庆"), ("Hong Kong", "香港"),
    ("Melbourne", "墨尔本"), ("Auckland", "奥克兰"), ("Zurich", "苏黎世"), ("Munich", "慕尼黑"),
    ("Barcelona", "巴塞罗那"), ("Milan", "米兰"), ("Warsaw", "华沙"), ("Budapest", "布达佩斯"),
    ("Copenhagen", "哥本哈根"), ("Brussels", "布鲁塞尔"), ("Edinburgh", "爱丁堡"), ("Suzhou", "苏州"),
    ("Qingdao", "青岛"), ("Dalian", "大连"), ("Changsha", "长沙"),
]
CITIES_HELDOUT = [
    ("Reykjavik", "雷克雅未克"), ("Kathmandu", "加德满都"), ("Marrakesh", "马拉喀什"), ("Tbilisi", "第比利斯"),
    ("Ulaanbaatar", "乌兰巴托"), ("Montevideo", "蒙得维的亚"), ("Windhoek", "温得和克"), ("Tallinn", "塔林"),
    ("Ljubljana", "卢布尔雅那"), ("Hobart", "霍巴特"), ("Kunming", "昆明"), ("Lhasa", "拉萨"),
    ("Harbin", "哈尔滨"), ("Xiamen", "厦门"), ("Quito", "基多"), ("Valletta", "瓦莱塔"),
]

PEOPLE_TRAIN = [
    ("Alice", "张伟"), ("Bob", "王芳"), ("Carol", "李娜"), ("David", "刘洋"), ("Emma", "陈静"), ("Frank", "杨帆"),
    ("Grace", "赵磊"), ("Henry", "黄敏"), ("Irene", "周杰"), ("Jack", "吴倩"), ("Karen", "徐明"), ("Leo", "孙丽"),
    ("Maria", "马超"), ("Nathan", "朱琳"), ("Olivia", "胡军"), ("Peter", "郭燕"), ("Rachel", "何平"),
    ("Sam", "高峰"), ("Tina", "林芳"), ("Victor", "罗勇"), ("Wendy", "梁红"), ("Natalia", "宋佳"),
    ("James", "郑浩"), ("Sophia", "谢婷"), ("Lucas", "韩雪"), ("Mia", "唐亮"), ("Ethan", "冯刚"), ("Chloe", "董梅"),
    ("Daniel", "程鹏"), ("Zoe", "曹颖"), ("Ryan", "袁博"), ("Hannah", "邓超"), ("Kevin", "许晴"), ("Laura", "傅强"),
]
PEOPLE_HELDOUT = [
    ("Thaddeus", "欧阳澜"), ("Ximena", "司徒蕾"), ("Oluwaseun", "上官翎"), ("Priyanka", "诸葛瑶"),
    ("Bartholomew", "慕容枫"), ("Svetlana", "皇甫琛"), ("Ignatius", "东方璇"), ("Wilhelmina", "夏侯霁"),
]

TICKERS_TRAIN = [(t, t) for t in [
    "AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "NFLX", "BABA", "INTC", "AMD", "IBM", "ORCL",
    "BIDU", "NIO", "UBER", "ADBE", "PYPL", "NKE", "DIS", "JPM", "TSM",
]]
TICKERS_HELDOUT = [(t, t) for t in ["ASML", "QCOM", "CSCO", "SBUX", "TXN"]]

TOPICS_TRAIN = [
    ("electric cars", "电动汽车"), ("healthy breakfast ideas", "健康早餐"), ("the history of tea", "茶的历史"),
    ("machine learning courses", "机器学习课程"), ("cheap flights to Europe", "去欧洲的便宜机票"),
    ("how to grow tomatoes", "如何种番茄"), ("the tallest mountains", "最高的山峰"), ("solar panels", "太阳能电池板"),
    ("python tutorials", "Python 教程"), ("marathon training plans", "马拉松训练计划"),
    ("the best coffee beans", "最好的咖啡豆"), ("learning to play guitar", "学吉他"),
    ("space telescopes", "太空望远镜"), ("vegetarian recipes", "素食食谱"), ("remote work tips", "远程办公技巧"),
    ("ancient Rome", "古罗马"), ("quantum computing", "量子计算"), ("bird watching", "观鸟"),
    ("home gardening", "家庭园艺"), ("electric bikes", "电动自行车"), ("the Great Wall", "长城"),
    ("ocean currents", "洋流"), ("sleep hygiene", "睡眠卫生"), ("chess openings", "国际象棋开局"),
]
TOPICS_HELDOUT = [
    ("volcano tourism", "火山旅游"), ("origami cranes", "折纸鹤"), ("beekeeping for beginners", "新手养蜂"),
    ("lighthouse photography", "灯塔摄影"), ("medieval calligraphy", "中世纪书法"),
]

DISHES_TRAIN = [
    ("fried rice", "炒饭"), ("dumplings", "饺子"), ("mapo tofu", "麻婆豆腐"), ("pancakes", "煎饼"),
    ("lasagna", "千层面"), ("tomato soup", "番茄汤"), ("beef noodles", "牛肉面"), ("kung pao chicken", "宫保鸡丁"),
    ("apple pie", "苹果派"), ("sushi rolls", "寿司卷"), ("vegetable curry", "蔬菜咖喱"), ("caesar salad", "凯撒沙拉"),
    ("hot pot", "火锅"), ("spring rolls", "春卷"), ("banana bread", "香蕉面包"), ("omelette", "煎蛋卷"),
]
DISHES_HELDOUT = [("ratatouille", "普罗旺斯炖菜"), ("goulash", "匈牙利炖牛肉"), ("paella", "西班牙海鲜饭")]

SONGS_TRAIN = [
    ("Moonlight Sonata", "月光奏鸣曲"), ("Clair de Lune", "月光"), ("Fur Elise", "致爱丽丝"),
    ("The Four Seasons", "四季"), ("Jasmine Flower", "茉莉花"), ("The Butterfly Lovers", "梁祝"),
    ("Swan Lake", "天鹅湖"), ("Ode to Joy", "欢乐颂"), ("Canon in D", "D大调卡农"),
    ("The Blue Danube", "蓝色多瑙河"), ("Spring Festival Overture", "春节序曲"), ("Ave Maria", "圣母颂"),
]
SONGS_HELDOUT = [("Gymnopedie No. 1", "裸体舞曲第一号"), ("Erhu Moon Reflection", "二泉映月")]

ARTISTS = [("Beethoven", "贝多芬"), ("Mozart", "莫扎特"), ("Chopin", "肖邦"), ("Bach", "巴赫"),
           ("Vivaldi", "维瓦尔第"), ("Debussy", "德彪西")]

RESTAURANTS_TRAIN = [
    ("Golden Dragon", "金龙酒家"), ("Blue Olive", "蓝橄榄餐厅"), ("Red Lantern", "红灯笼"), ("Green Garden", "绿园餐厅"),
    ("Silver Spoon", "银勺餐厅"), ("Lucky Noodle", "好运面馆"), ("Ocean Grill", "海洋烧烤"), ("Jade Palace", "翡翠宫"),
]
RESTAURANTS_HELDOUT = [("Crimson Fig", "绯红无花果"), ("Velvet Harbor", "丝绒港湾")]

MOVIES_TRAIN = [
    ("The Silent Harbor", "寂静的港湾"), ("Starlight Express", "星光快车"), ("River of Dreams", "梦之河"),
    ("The Last Orchard", "最后的果园"), ("Paper Moon City", "纸月亮之城"), ("Winter Garden", "冬日花园"),
]
MOVIES_HELDOUT = [("Glass Mountain", "玻璃山"), ("The Amber Compass", "琥珀罗盘")]

TEAMS_TRAIN = [("Lakers", "湖人"), ("Warriors", "勇士"), ("Real Madrid", "皇家马德里"), ("Barcelona FC", "巴塞罗那队"),
               ("Manchester United", "曼联"), ("Bayern Munich", "拜仁慕尼黑"), ("Celtics", "凯尔特人")]
TEAMS_HELDOUT = [("Mavericks", "独行侠"), ("Ajax", "阿贾克斯")]

WORDS_TRAIN = [(w, w) for w in [
    "serendipity", "ephemeral", "ubiquitous", "resilient", "meticulous", "eloquent", "pragmatic", "benevolent",
    "candid", "diligent", "frugal", "gregarious", "humble", "jovial", "lucid", "nostalgia", "optimistic",
]]
WORDS_HELDOUT = [(w, w) for w in ["quixotic", "perspicacious", "sesquipedalian"]]

FILES = [(f, f) for f in [
    "notes.txt", "report.docx", "todo.md", "data.csv", "config.yaml", "budget.xlsx", "draft.txt", "photo.jpg",
    "main.py", "readme.md", "plan.txt", "results.json", "invoice.pdf", "slides.pptx", "log.txt",
]]
DIRS = [(d, d) for d in ["/home/user", "/home/user/documents", "/tmp", "/var/log", "/home/user/projects",
                         "/home/user/downloads", "/data", "/home/user/music"]]

TASKS = [
    ("buy milk", "买牛奶"), ("call the dentist", "给牙医打电话"), ("finish the report", "完成报告"),
    ("water the plants", "给植物浇水"), ("book a haircut", "预约理发"), ("pay the electricity bill", "交电费"),
    ("clean the kitchen", "打扫厨房"), ("prepare the slides", "准备幻灯片"), ("renew my passport", "更新护照"),
    ("send the invoice", "发送发票"), ("walk the dog", "遛狗"), ("review the contract", "审阅合同"),
]
SUBJECTS = [
    ("Meeting tomorrow", "明天的会议"), ("Project update", "项目进展"), ("Dinner plans", "晚餐安排"),
    ("Quarterly report", "季度报告"), ("Happy birthday", "生日快乐"), ("Travel itinerary", "旅行行程"),
    ("Invoice attached", "附上发票"), ("Quick question", "一个小问题"),
]
MESSAGES = [
    ("I will be ten minutes late", "我会晚到十分钟"), ("See you at the station", "车站见"),
    ("Thanks for your help today", "谢谢你今天的帮助"), ("The meeting moved to Friday", "会议改到周五了"),
    ("Please call me back", "请给我回电话"), ("Dinner is ready", "晚饭做好了"), ("I have arrived", "我已经到了"),
]
EVENTS = [
    ("Team meeting", "团队会议"), ("Dentist appointment", "看牙医"), ("Lunch with Mom", "和妈妈吃午饭"),
    ("Yoga class", "瑜伽课"), ("Project review", "项目评审"), ("Flight to the conference", "飞往会议的航班"),
    ("Birthday party", "生日聚会"), ("Piano lesson", "钢琴课"),
]
ALARM_LABELS = [("wake up", "起床"), ("take medicine", "吃药"), ("gym", "健身"), ("leave for work", "出门上班")]
TEXTS_TO_TRANSLATE = [
    ("Good morning", "早上好"), ("Where is the train station?", "火车站在哪里？"), ("Thank you very much", "非常感谢"),
    ("How much does this cost?", "这个多少钱？"), ("I love this city", "我爱这座城市"),
    ("The weather is nice today", "今天天气很好"), ("See you tomorrow", "明天见"),
]
SHOPPING_ITEMS = [("apples", "苹果"), ("pencils", "铅笔"), ("stickers", "贴纸"), ("cookies", "饼干"),
                  ("marbles", "弹珠"), ("books", "书"), ("cupcakes", "纸杯蛋糕"), ("oranges", "橙子"),
                  ("balloons", "气球"), ("seashells", "贝壳"), ("cards", "卡片"), ("eggs", "鸡蛋")]
SHOPPING_ITEMS_HELDOUT = [("pinecones", "松果"), ("kites", "风筝")]
DOMAINS = [(d, d) for d in ["sunnybakery.com", "quickfox.io", "bluepeak.net", "mytinyshop.org",
                            "greenleaf.app", "starlab.dev"]]
BUS_STOPS = [(s, s) for s in ["S1024", "S2048", "S3310", "S4521", "S5876", "S6032"]]
AUTHORS = [("Jane Austen", "简·奥斯汀"), ("Mark Twain", "马克·吐温"), ("Lu Xun", "鲁迅"),
           ("Charles Dickens", "查尔斯·狄更斯"), ("Leo Tolstoy", "列夫·托尔斯泰")]
ROOM_NAMES = [(r, r) for r in ["Orion", "Lyra", "Vega", "Cygnus", "Draco"]]

POOLS: dict[str, tuple[list, list]] = {
    "city": (CITIES_TRAIN, CITIES_HELDOUT),
    "person": (PEOPLE_TRAIN, PEOPLE_HELDOUT),
    "ticker": (TICKERS_TRAIN, TICKERS_HELDOUT),
    "topic": (TOPICS_TRAIN, TOPICS_HELDOUT),
    "dish": (DISHES_TRAIN, DISHES_HELDOUT),
    "song": (SONGS_TRAIN, SONGS_HELDOUT),
    "artist": (ARTISTS, []),
    "restaurant": (RESTAURANTS_TRAIN, RESTAURANTS_HELDOUT),
    "movie": (MOVIES_TRAIN, MOVIES_HELDOUT),
    "team": (TEAMS_TRAIN, TEAMS_HELDOUT),
    "word": (WORDS_TRAIN, WORDS_HELDOUT),
    "file": (FILES, []),
    "dir": (DIRS, []),
    "task": (TASKS, []),
    "subject": (SUBJECTS, []),
    "message": (MESSAGES, []),
    "event": (EVENTS, []),
    "alarm_label": (ALARM_LABELS, []),
    "text": (TEXTS_TO_TRANSLATE, []),
    "item": (SHOPPING_ITEMS, SHOPPING_ITEMS_HELDOUT),
    "domain": (DOMAINS, []),
    "bus_stop": (BUS_STOPS, []),
    "author": (AUTHORS, []),
    "room_name": (ROOM_NAMES, []),
}


def pool(name: str, heldout: bool) -> list:
    """Entries to draw from: the held-out part for the held-out split when it has one."""
    train, held = POOLS[name]
    return held if (heldout and held) else train


def heldout_strings() -> set[str]:
    """Every held-out entity string (both languages); none may appear in the training corpus."""
    out = set()
    for _, held in POOLS.values():
        for en, zh in held:
            out.add(en)
            out.add(zh)
    return out


# ---------------------------------------------------------------- procedurally generated names
# A 28 M model memorises a pool of 70 city names instead of learning to copy them from the request. With
# RANDOM_RATE > 0 the training corpus also draws cities and people that exist only in one record, so copying is the
# only way to get them right. 0 (the default) keeps the corpus byte-identical to the builds that shipped.
RANDOMISED_POOLS = ("city", "person")
_ONSETS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "th"]
_ZH_SYLLABLES = "阿巴卡达加拉马纳帕萨塔瓦亚扎贝德格赫克莱梅内佩雷斯特维泽波多戈科罗莫诺索托沃佐布杜古胡库鲁穆努普苏图乌尔恩伦森顿"
_RANDOM_RATE = 0.0


def set_random_rate(p: float) -> None:
    global _RANDOM_RATE
    _RANDOM_RATE = float(p)


@functools.cache
def _name_material() -> tuple[frozenset, str]:
    """(held-out strings lowercased, the Chinese syllables no held-out string uses): computed once, not per name."""
    held = heldout_strings()
    held_chars = {ch for s in held if not s.isascii() for ch in s}
    return frozenset(s.lower() for s in held), "".join(c for c in _ZH_SYLLABLES if c not in held_chars)


def random_entity(rng) -> tuple:
    """A never-seen (english, chinese) proper name; never a held-out string, never a held-out character."""
    held_lower, chars = _name_material()
    while True:
        en = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 2))) + rng.choice(_CODAS)
        en = en.capitalize()
        if len(en) >= 4 and en.lower() not in held_lower:
            break
    zh = "".join(rng.choice(chars) for _ in range(rng.randint(2, 4)))
    return en, zh


def draw(rng, name: str, heldout: bool) -> tuple:
    """One (english, chinese) entry of pool `name`; for training, sometimes a random name (see set_random_rate)."""
    if _RANDOM_RATE > 0 and not heldout and name in RANDOMISED_POOLS and rng.random() < _RANDOM_RATE:
        return random_entity(rng)
    return rng.choice(pool(name, heldout))
