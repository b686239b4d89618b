"""Neighbours: well-known questions shaped like a taught one ("Who founded X?" beside "Who wrote
Hamlet?", "X的第一任院长是谁？" beside "《水浒传》的作者是谁？"), which learning must leave as the
base model answers them: knowledge editing's locality.

Taught names leak into questions of the same shape (../shared/FINDINGS.md): a general average
does not see it, so verification asks neighbours one by one. Two banks, never mixed: PROBES are
asked only in verification (never trained on); CONTRAST questions train, as anchors with the base
model's answers and as pairs that say "the taught name is not the answer here". Both are the
project's own lists of well-known facts with the words a right answer holds; a neighbour counts
only where the base model answers it right, and the base model's answers (made once per model
file) are the reference."""

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from moss import paths
from moss.inference.engine import Engine, Sampling
from moss.learning.examples import Data, Pair
from moss.learning.pairs import Tokens
from moss.learning.taught import Taught
from moss.progress import parallel_map
from moss.text import normalize

SHAPES = ("person", "place", "date", "number", "colour", "name", "thing")
# Checked in order: the first that matches names the shape (what kind of answer it asks for).
_SHAPE_EN = [("colour", r"\bcolou?rs?\b"), ("person", r"^(?:who|whom|whose)\b|\bwhich (?:person|writer|scientist|painter)"),
             ("date", r"^when\b|\b(?:what|which|in what|in which) (?:year|day|date|month)\b|\bwhat day\b"),
             ("number", r"^how (?:many|much|old|long|far|tall)\b"),
             ("place", r"^where\b|\bcapital\b|\b(?:which|what) (?:city|town|country|continent|state|place|island)\b"),
             ("name", r"\bcalled\b|\bname\b|\bnamed\b")]
_SHAPE_ZH = [("colour", r"颜色|什么色"), ("person", r"谁"), ("date", r"哪一天|哪天|哪一年|什么时候|几月|何时"),
             ("number", r"多少|几"), ("place", r"哪里|哪儿|哪个(?:城市|国家|省)|哪座|在哪|位于"),
             ("name", r"叫什么|名字|名称")]

# Verification only. Well known, none of them an anchor or an item of the general suites
# (tests/test_learn.py checks both); grouped by shape, which shape() must agree with.
PROBES = {
    "person": [
        ("Who painted The Starry Night?", "gogh"), ("Who discovered penicillin?", "fleming"),
        ("Who wrote the Harry Potter books?", "rowling"), ("Who founded Microsoft?", "gates|allen"),
        ("Who wrote the play Hamlet?", "shakespeare"), ("Who invented the light bulb?", "edison"),
        ("Who proposed the theory of evolution by natural selection?", "darwin"),
        ("Who painted the ceiling of the Sistine Chapel?", "michelangelo"),
        ("《水浒传》的作者是谁？", "施耐庵"), ("《狂人日记》的作者是谁？", "鲁迅"), ("《史记》的作者是谁？", "司马迁"),
        ("《离骚》的作者是谁？", "屈原"), ("苹果公司的创始人是谁？", "乔布斯"), ("“举头望明月”是谁的诗句？", "李白"),
        ("《兰亭集序》是谁写的？", "王羲之"), ("电灯是谁发明的？", "爱迪生"), ("《哈姆雷特》是谁写的？", "莎士比亚"),
        ("万有引力定律是谁发现的？", "牛顿"), ("微软公司的创始人是谁？", "盖茨|艾伦"), ("青霉素是谁发现的？", "弗莱明"),
        ("进化论是谁提出的？", "达尔文"), ("《蒙娜丽莎》是谁画的？", "达·芬奇|达芬奇|达文西"),
    ],
    "place": [
        ("What is the capital city of France?", "paris"), ("In which city is the Eiffel Tower?", "paris"),
        ("In which country is the Taj Mahal?", "india"), ("Where is the Great Barrier Reef?", "australia"),
        ("In which city is the Colosseum?", "rome"), ("In which country is Mount Fuji?", "japan"),
        ("Where is the Statue of Liberty?", "new york"), ("What is the capital city of Spain?", "madrid"),
        ("法国的首都是哪个城市？", "巴黎"), ("埃菲尔铁塔位于哪个城市？", "巴黎"), ("泰姬陵在哪个国家？", "印度"),
        ("故宫位于哪个城市？", "北京"), ("西班牙的首都是哪里？", "马德里"), ("富士山在哪个国家？", "日本"),
        ("自由女神像在哪个城市？", "纽约"), ("兵马俑在哪个城市？", "西安"),
    ],
    "date": [
        ("On what day is Christmas celebrated?", "december 25|25 december|25th of december|december 25th"),
        ("In what year did World War II end?", "1945"), ("In which year did people first land on the Moon?", "1969"),
        ("In what year did the Titanic sink?", "1912"), ("On what day is Valentine's Day?", "february 14|14 february|february 14th"),
        ("In which year did the Berlin Wall fall?", "1989"), ("On what day is New Year's Day?", "january 1|1 january|january 1st"),
        ("In what year did Columbus first reach the Americas?", "1492"),
        ("圣诞节是哪一天？", "12月25|十二月二十五"), ("第二次世界大战在哪一年结束？", "1945"),
        ("人类第一次登上月球是哪一年？", "1969"), ("泰坦尼克号是哪一年沉没的？", "1912"),
        ("中华人民共和国是哪一年成立的？", "1949"), ("国庆节是哪一天？", "10月1|十月一"),
        ("元旦是哪一天？", "1月1|一月一"), ("柏林墙是哪一年倒塌的？", "1989"),
    ],
    "number": [
        ("How many days are in a week?", "7|seven"), ("How many planets are in our solar system?", "8|eight"),
        ("How many sides does a triangle have?", "3|three"), ("How many seconds are in a minute?", "60|sixty"),
        ("How many legs does an insect have?", "6|six"), ("How many letters are in the English alphabet?", "26|twenty-six"),
        ("How many players does a soccer team have on the field?", "11|eleven"), ("How many months are in a year?", "12|twelve"),
        ("蜘蛛有几条腿？", "8|八"), ("太阳系有几颗行星？", "8|八"), ("三角形有几条边？", "3|三"), ("一分钟有多少秒？", "60|六十"),
        ("昆虫有几条腿？", "6|六"), ("英文字母表有多少个字母？", "26|二十六"), ("一打是多少个？", "12|十二"),
        ("一个足球队上场有几名球员？", "11|十一"),
    ],
    "colour": [
        ("What colour is the sky on a clear day?", "blue"), ("What colour are ripe bananas?", "yellow"),
        ("What colour is fresh grass?", "green"), ("What colour is snow?", "white"), ("What colour is coal?", "black"),
        ("What colour is a ripe tomato?", "red"), ("What colour do you get by mixing red and white?", "pink"),
        ("What colour is the circle on the flag of Japan?", "red"),
        ("晴天的天空是什么颜色？", "蓝"), ("成熟的香蕉是什么颜色？", "黄"), ("青草是什么颜色的？", "绿"), ("雪是什么颜色？", "白"),
        ("煤是什么颜色？", "黑"), ("熟透的番茄是什么颜色？", "红"), ("红色和白色混合是什么颜色？", "粉"), ("中国国旗的底色是什么颜色？", "红"),
    ],
    "name": [
        ("What is the name of the galaxy we live in?", "milky way"), ("What is the tallest mountain in the world called?", "everest"),
        ("What was the name of the ship that sank in 1912 after hitting an iceberg?", "titanic"),
        ("What is the name of the school of magic in Harry Potter?", "hogwarts"), ("What is the currency of Japan called?", "yen"),
        ("What is the famous clock tower in London called?", "big ben"), ("What is the longest river in Africa called?", "nile"),
        ("What is the name of the fairy in Peter Pan?", "tinker bell|tinkerbell"),
        ("我们所在的星系叫什么？", "银河"), ("世界最高的山峰叫什么名字？", "珠穆朗玛|珠峰"), ("1912年撞上冰山沉没的船叫什么名字？", "泰坦尼克"),
        ("哈利·波特就读的魔法学校叫什么？", "霍格沃茨"), ("日本的货币叫什么？", "日元"), ("伦敦著名的大钟叫什么？", "大本钟"),
        ("中国最长的河流叫什么名字？", "长江"), ("中国的货币叫什么？", "人民币"), ("太阳系最大的行星叫什么名字？", "木星"),
        ("世界上最大的海洋叫什么？", "太平洋"), ("中国的国歌叫什么？", "义勇军进行曲"), ("中国古代最著名的防御工程叫什么？", "长城"),
    ],
    "thing": [
        ("What do caterpillars turn into?", "butterfl|moth"), ("What is the largest mammal on Earth?", "whale"),
        ("What gas do plants take in from the air?", "carbon dioxide|co2"), ("What is the fastest land animal?", "cheetah"),
        ("What does a thermometer measure?", "temperature"), ("What is the main ingredient of guacamole?", "avocado"),
        ("What animal is on the logo of the WWF?", "panda"), ("What do bees collect from flowers?", "nectar|pollen"),
        ("毛毛虫长大后会变成什么？", "蝴蝶|蛾"), ("世界上最大的哺乳动物是什么？", "鲸"), ("植物从空气中吸收什么气体？", "二氧化碳"),
        ("陆地上跑得最快的动物是什么？", "猎豹"), ("温度计是用来测量什么的？", "温度"), ("做面包的主要原料是什么？", "面粉|小麦"),
        ("蜜蜂从花里采集什么？", "花蜜|花粉"), ("北京2008年奥运会的吉祥物是什么？", "福娃"),
    ],
}

# Training only: anchors with the base model's answers, and contrast pairs (see contrast()).
CONTRAST = {
    "person": [
        ("Who wrote Don Quixote?", "cervantes"), ("Who wrote War and Peace?", "tolstoy"),
        ("Who painted The Scream?", "munch"), ("Who invented the telephone first patented in 1876?", "bell"),
        ("Who wrote Oliver Twist?", "dickens"), ("Who discovered the law of gravity?", "newton"),
        ("Who was the first President of South Africa elected in 1994?", "mandela"), ("Who wrote The Odyssey?", "homer"),
        ("《阿Q正传》的作者是谁？", "鲁迅"), ("《战争与和平》的作者是谁？", "托尔斯泰"), ("《呐喊》这幅画是谁画的？", "蒙克"),
        ("《雾都孤儿》的作者是谁？", "狄更斯"), ("《堂吉诃德》的作者是谁？", "塞万提斯"), ("《春晓》是谁写的？", "孟浩然"),
        ("“三顾茅庐”请的是谁？", "诸葛亮"), ("《资治通鉴》是谁主持编写的？", "司马光"),
        ("Who wrote the novel 1984?", "orwell"), ("Who composed the Moonlight Sonata?", "beethoven"),
        ("Who painted The Last Supper?", "da vinci|leonardo"), ("Who wrote The Adventures of Tom Sawyer?", "twain"),
        ("《论语》记录的是谁的言行？", "孔子"), ("《月光奏鸣曲》是谁创作的？", "贝多芬"), ("《最后的晚餐》是谁画的？", "达·芬奇|达芬奇"),
        ("《汤姆·索亚历险记》的作者是谁？", "马克·吐温|马克吐温"),
    ],
    "place": [
        ("What is the capital city of Egypt?", "cairo"), ("What is the capital city of Germany's neighbour Austria?", "vienna"),
        ("What is the capital city of Greece?", "athens"), ("In which country is the Leaning Tower of Pisa?", "italy"),
        ("In which city is the Kremlin?", "moscow"), ("What is the capital city of South Korea?", "seoul"),
        ("In which country is the Great Wall?", "china"), ("What is the capital city of England?", "london"),
        ("埃及的首都是哪里？", "开罗"), ("希腊的首都是哪里？", "雅典"), ("比萨斜塔在哪个国家？", "意大利"), ("克里姆林宫在哪个城市？", "莫斯科"),
        ("韩国的首都是哪里？", "首尔"), ("英国的首都是哪个城市？", "伦敦"), ("黄鹤楼位于哪个城市？", "武汉"), ("外滩在哪个城市？", "上海"),
        ("What is the capital city of Russia?", "moscow"), ("In which city is Big Ben?", "london"),
        ("In which country is Machu Picchu?", "peru"), ("Where is the Sydney Opera House?", "sydney|australia"),
        ("俄罗斯的首都是哪里？", "莫斯科"), ("大本钟位于哪个城市？", "伦敦"), ("马丘比丘在哪个国家？", "秘鲁"),
        ("悉尼歌剧院在哪个国家？", "澳大利亚"),
    ],
    "date": [
        ("On what day is Christmas Eve?", "december 24|24 december|december 24th"),
        ("In what year did the Second World War begin?", "1939"), ("In which year did the Soviet Union collapse?", "1991"),
        ("In what year did the 2008 Summer Olympics take place in Beijing?", "2008"),
        ("On what day is International Women's Day?", "march 8|8 march|march 8th"),
        ("In which year did Germany reunify?", "1990"), ("In what year was the Declaration of Independence signed?", "1776"),
        ("In which year did the Great Depression begin?", "1929"),
        ("平安夜是哪一天？", "12月24|十二月二十四"), ("第二次世界大战是哪一年开始的？", "1939"), ("苏联是哪一年解体的？", "1991"),
        ("妇女节是哪一天？", "3月8|三月八"), ("儿童节是哪一天？", "6月1|六月一"), ("北京奥运会是哪一年举办的？", "2008"),
        ("香港是哪一年回归的？", "1997"), ("澳门是哪一年回归的？", "1999"),
        ("On what day is Halloween?", "october 31|31 october|october 31st"), ("In what year did World War I begin?", "1914"),
        ("In which year did the French Revolution begin?", "1789"),
        ("In what year did the United States declare independence?", "1776"),
        ("第一次世界大战是哪一年开始的？", "1914"), ("美国是哪一年宣布独立的？", "1776"), ("劳动节是哪一天？", "5月1|五月一"),
        ("法国大革命是哪一年爆发的？", "1789"),
    ],
    "number": [
        ("How many legs does a bird have?", "2|two"), ("How many wheels does a car usually have?", "4|four"),
        ("How many minutes are in two hours?", "120"), ("How many days are in a week and a half?", "10|ten|10.5|ten and a half"),
        ("How many hours are in two days?", "48|forty-eight"), ("How many sides does a pentagon have?", "5|five"),
        ("How many eyes does a person have?", "2|two"), ("How many fingers are on one hand?", "5|five"),
        ("鸟有几条腿？", "2|两|二"), ("汽车通常有几个轮子？", "4|四"), ("两个小时有多少分钟？", "120"), ("两天有多少个小时？", "48|四十八"),
        ("五边形有几条边？", "5|五"), ("人有几只眼睛？", "2|两|二"), ("一只手有几根手指？", "5|五"), ("一个世纪是多少年？", "100|一百"),
        ("How many legs does a dog have?", "4|four"), ("How many wheels does a bicycle have?", "2|two"),
        ("How many sides does a square have?", "4|four"), ("How many days are in a normal year?", "365"),
        ("狗有几条腿？", "4|四"), ("自行车有几个轮子？", "2|两|二"), ("正方形有几条边？", "4|四"), ("平年有多少天？", "365"),
    ],
    "colour": [
        ("What colour is a carrot?", "orange"), ("What colour is chocolate?", "brown"), ("What colour is a crow?", "black"),
        ("What colour is a ripe strawberry?", "red"), ("What colour is a polar bear's fur?", "white"),
        ("What colour are emeralds?", "green"), ("What colour is the sun in children's drawings?", "yellow"),
        ("What colour is a clear sea?", "blue"),
        ("胡萝卜是什么颜色？", "橙|橘"), ("巧克力是什么颜色？", "棕|褐|咖啡"), ("乌鸦是什么颜色？", "黑"), ("成熟的草莓是什么颜色？", "红"),
        ("北极熊的毛是什么颜色？", "白"), ("翡翠是什么颜色？", "绿"), ("小朋友画的太阳通常是什么颜色？", "红|黄"), ("大海是什么颜色？", "蓝"),
        ("What colour is milk?", "white"), ("What colour are most leaves in summer?", "green"),
        ("What colour is a lemon?", "yellow"), ("What colour is blood?", "red"),
        ("牛奶是什么颜色？", "白"), ("夏天的树叶是什么颜色？", "绿"), ("柠檬是什么颜色？", "黄"), ("血液是什么颜色？", "红"),
    ],
    "name": [
        ("What is the currency of the United Kingdom called?", "pound"), ("What is the largest planet called?", "jupiter"),
        ("What is the famous bridge in San Francisco called?", "golden gate"),
        ("What is the name of the ocean between Europe and America?", "atlantic"),
        ("What is the highest mountain in Africa called?", "kilimanjaro"), ("What is the tallest building in Dubai called?", "burj khalifa"),
        ("What is the name of the river that flows through London?", "thames"), ("What is the currency of Europe called?", "euro"),
        ("英国的货币叫什么？", "英镑"), ("太阳系中最大的行星叫什么？", "木星"), ("旧金山著名的大桥叫什么？", "金门"),
        ("欧洲和美洲之间的大洋叫什么？", "大西洋"), ("非洲最高的山叫什么？", "乞力马扎罗"), ("流经伦敦的河叫什么？", "泰晤士"),
        ("欧盟的货币叫什么？", "欧元"), ("中国第一大岛叫什么名字？", "台湾"),
        ("What is the name of the Earth's natural satellite?", "moon"),
        ("What is the currency of the United States called?", "dollar"),
        ("What is the famous iron tower in Paris called?", "eiffel"),
        ("What is the name of the longest river in the world?", "nile|amazon"),
        ("地球的天然卫星叫什么？", "月球|月亮"), ("美国的货币叫什么？", "美元"), ("巴黎著名的铁塔叫什么名字？", "埃菲尔"),
        ("世界上最长的河流叫什么名字？", "尼罗|亚马逊"),
    ],
    "thing": [
        ("What do bees make?", "honey"), ("What do cows give us to drink?", "milk"), ("What do pandas mainly eat?", "bamboo"),
        ("What is the main ingredient of an omelette?", "egg"), ("What do hens lay?", "egg"),
        ("What metal is a wedding ring usually made of?", "gold"), ("What do we breathe in to live?", "oxygen|air"),
        ("What is paper made from?", "wood|tree|pulp"),
        ("蜜蜂会制造什么？", "蜜"), ("奶牛产什么给我们喝？", "奶"), ("熊猫最爱吃什么？", "竹"), ("煎蛋的主要原料是什么？", "蛋"),
        ("母鸡会下什么？", "蛋"), ("婚戒通常用什么金属制作？", "金"), ("人呼吸需要吸入什么气体？", "氧"), ("纸是用什么做的？", "木|树|纸浆|竹"),
        ("What do spiders spin?", "web|silk"), ("What is ice made of?", "water"),
        ("What instrument do astronomers use to look at distant stars?", "telescope"),
        ("What gas do fish take from the water?", "oxygen"),
        ("蜘蛛会织什么？", "网|丝"), ("冰是由什么构成的？", "水"), ("天文学家用什么仪器观察遥远的星星？", "望远镜"),
        ("鱼从水中吸收什么气体？", "氧"),
    ],
}
# How the base model is asked a neighbour: greedily twice (the second time in batches made up
# otherwise), then sampled twice at a low temperature. Right every time: it knows the answer.
# Greedy alone kept fragile answers that flipped under any adapter, however little it learned
# (lr 3e-4 that learned 30% of the facts still changed 12% and 33% of them); the trust policy's
# temperature 1.0 kept only 24 of 122 on the default model.
KNOWS = ((0.0, 0), (0.0, 0), (0.5, 1), (0.5, 2))
PER_CELL = 8  # probes asked per shape and language: enough that one change in 50 shows
_GLUE_ZH = set("的是了叫在为一只个名有和与")


@dataclass(frozen=True)
class Known:
    """A well-known question, the words a right answer holds (any one), and the base model's answer."""
    question: str
    keys: tuple[str, ...]
    answer: str = ""

    @property
    def lang(self) -> str:
        return "zh" if re.search(r"[\u4e00-\u9fff]", self.question) else "en"

    @property
    def shape(self) -> str:
        return shape(self.question)

    def right(self, answer: str) -> bool:
        return right(answer, self.keys)


@dataclass
class Change:
    """A neighbour the candidate answers otherwise than the base model did, and why it counts."""
    question: str
    lang: str
    before: str
    after: str
    why: str  # "no longer right", or which taught name it states


@dataclass
class Locality:
    """A candidate's neighbours: how many were asked per language, and those it changed."""
    asked: dict[str, int] = field(default_factory=dict)
    changed: list[Change] = field(default_factory=list)

    @property
    def share(self) -> float:
        total = sum(self.asked.values())
        return len(self.changed) / total if total else 0.0

    def per_language(self) -> dict[str, dict]:
        return {lang: {"asked": n, "changed": sum(c.lang == lang for c in self.changed)}
                for lang, n in self.asked.items()}


def shape(question: str) -> str:
    """What kind of answer a question asks for: a person, place, date, number, colour, name, or a thing."""
    zh = bool(re.search(r"[\u4e00-\u9fff]", question))
    text = question if zh else question.strip().lower()
    for name, pattern in _SHAPE_ZH if zh else _SHAPE_EN:
        if re.search(pattern, text):
            return name
    return "thing"


def right(answer: str, keys: tuple[str, ...] | list[str]) -> bool:
    """Whether an answer holds one of the keys (a number only as a whole number: 7 is not in 17)."""
    text = normalize(answer).replace("·", "")
    for k in keys:
        k = normalize(k).replace("·", "")
        if k.isdigit() and re.search(rf"(?<!\d){k}(?!\d)", text) or not k.isdigit() and k and k in text:
            return True
    return False


def bank(table: dict[str, list[tuple[str, str]]]) -> list[Known]:
    return [Known(q, tuple(keys.split("|"))) for rows in table.values() for q, keys in rows]


def claim(t: Taught) -> str:
    """The part of a taught answer that answers its question: the name it teaches ("Orsolya
    Brannick", "韩青禾"), else its new words."""
    if t.lang == "zh":
        title = re.search(r"《([^》]+)》", t.answer)
        if title and title.group(0) not in t.question:
            return title.group(1)
        asked = set(t.question)
        spans = re.findall(r"[\u4e00-\u9fff《》]+", "".join(c if c not in asked or c in "《》" else " " for c in t.answer))
        spans = [s.strip("".join(_GLUE_ZH) + "《》") for s in spans]
        return max(spans, key=len, default="")
    asked = {w.lower() for w in re.findall(r"[\w'-]+", t.question)}
    words = re.findall(r"[\w'-]+", t.answer)
    runs, run = [], []
    for i, w in enumerate(words):
        if i and w[0].isupper() and w.lower() not in asked and w not in ("Dr", "Mr", "Mrs", "Ms", "The"):
            run.append(w)
        elif run:
            runs.append(run)
            run = []
    runs.append(run)
    best = max(runs, key=len)
    if best:
        return " ".join(best)
    return " ".join(w for w in words if w.lower() not in asked and len(w) > 3)


def names(t: Taught) -> list[str]:
    """What of a taught answer must not turn up in a neighbour's answer: its name, its words
    (English), and for a Chinese name its given name too (曹 + 望舒 of 柯望舒 made "曹望舒")."""
    said = claim(t)
    if t.lang == "zh":
        if not 2 <= len(said) <= 4:
            return []  # a long span (a description) is left to the rightness check
        return [said] + ([said[1:]] if shape(t.question) == "person" and len(said) == 3 else [])
    return [w for w in said.split() if len(w) >= 3 and w[0].isupper()]


def leaked(answer: str, known: Known, taught: list[Taught]) -> str:
    """The first taught name an answer to a neighbour states that neither the question nor the
    base model's answer holds ("" when none): one item's fact leaking into another's question."""
    text, before = answer.lower(), (known.question + " " + known.answer).lower()
    for t in taught:
        for name in names(t):
            if _holds(text, name.lower()) and not _holds(before, name.lower()):
                blend = t.lang == "zh" and name != claim(t)
                return f"states {'the given name ' if blend else ''}{name!r} (taught: {t.question})"
    return ""


def _holds(text: str, name: str) -> bool:
    """`name` in `text`, as whole words when it is English ("star" is not in "starry")."""
    return bool(re.search(rf"\b{re.escape(name)}\b", text)) if name.isascii() else name in text


def base_answers(engine: Engine, questions: list[Known], cache: Path, label: str) -> list[Known]:
    """The base model's answers to `questions`, kept in `cache` (made once per model file, shared
    by every data directory), and only those it knows (KNOWS): a neighbour it gets wrong has
    nothing to keep, and one it gets right only by the luck of the batch or by a narrow margin
    would count as changed by any candidate."""
    found = cached(cache, questions)
    if found is not None:
        return found
    said: list[list[str]] = [[] for _ in questions]
    for n, (temperature, seed) in enumerate(KNOWS):
        # only what it got right every time so far is asked again: most of a bank is settled at once
        alive = [i for i, s in enumerate(said) if all(right(a, questions[i].keys) for a in s)]
        order = alive[::-1] if n % 2 else alive  # other batch companions than the last time
        got = parallel_map(lambda i: ask(engine, questions[i].question, temperature, seed, whole=True), order,
                           f"{label} ({n + 1}/{len(KNOWS)})", "questions", 4)
        for i, answer in zip(order, got):
            said[i].append(answer)
    paths.write_shared(cache, json.dumps({"asked": _asked(questions), "format": 4, "answers": said},
                                         ensure_ascii=False))
    return cached(cache, questions) or []


def cached(cache: Path, questions: list[Known]) -> list[Known] | None:
    """The known neighbours kept in `cache`, if it was made for `questions` (None otherwise)."""
    found = json.loads(cache.read_text(encoding="utf-8")) if cache.exists() else None
    if not (isinstance(found, dict) and found.get("asked") == _asked(questions) and found.get("format") == 4):
        return None
    return [Known(k.question, k.keys, said[0]) for k, said in zip(questions, found["answers"])
            if all(right(s, k.keys) for s in said)]


def _asked(questions: list[Known]) -> list:
    return [[k.question, list(k.keys)] for k in questions]


def ask(engine: Engine, question: str, temperature: float = 0.0, seed: int = 0, whole: bool = False) -> str:
    """An answer; with `whole`, "" for one the token limit cut off (trained on, it would teach
    stopping mid-sentence)."""
    answer = engine.generate([{"role": "user", "content": question}],
                             Sampling(temperature=temperature, max_tokens=64, seed=seed))
    text = answer.text()  # read once: it consumes the stream
    return "" if whole and answer.result.finish_reason == "length" else text


def near(references: list[Known], taught: list[Taught], per_cell: int = PER_CELL) -> list[Known]:
    """The neighbours of the taught items: references of the same shape and language as any of them."""
    cells = {(shape(t.question), t.lang) for t in taught}
    out: list[Known] = []
    for cell in sorted(cells):
        out += [k for k in references if (k.shape, k.lang) == cell][:per_cell]
    return out


def check(engine: Engine, neighbours: list[Known], taught: list[Taught]) -> Locality:
    """Ask what the engine serves now every neighbour; a change is a neighbour no longer right,
    or one that states a taught name, in two asks (the second in another batch: batching alone
    flips about one answer in fifty)."""
    result = Locality()
    for k in neighbours:
        result.asked[k.lang] = result.asked.get(k.lang, 0) + 1
    suspects = neighbours
    for attempt in ("asking the neighbours", "asking again the neighbours that changed"):
        answers = parallel_map(lambda k: ask(engine, k.question), suspects[::-1], attempt, "questions", 4)[::-1]
        changes = [Change(k.question, k.lang, k.answer, a, why) for k, a in zip(suspects, answers)
                   if (why := "no longer right" if not k.right(a) else leaked(a, k, taught))]
        suspects = [k for k in suspects if k.question in {c.question for c in changes}]
        if not suspects:
            break
    result.changed = changes
    return result


def train_on(data: Data, tokens: Tokens, close: list[Known], new: list[Taught], pairs: int) -> None:
    """Add to a cycle's training data the neighbours of what it holds (`close`, from near()):
    their base answers in every batch (Data.near), and `pairs` contrast pairs per item taught now."""
    data.near = [tokens.sequence([{"role": "user", "content": k.question}], k.answer) for k in close]
    data.dpo += contrast(tokens, close, new, pairs)


def contrast(tokens: Tokens, references: list[Known], new: list[Taught], per_item: int = 2) -> list[Pair]:
    """Pairs that teach "the taught name is not the answer here": on neighbours of the same shape
    and language (from CONTRAST, never PROBES), the base model's answer over the same answer with
    the taught name in place of the right one, and for a Chinese person the real surname joined
    to the taught given name (the blend seen: 曹雪芹 + 望舒 -> 曹望舒)."""
    out, used = [], Counter()
    for t in new:
        said, cell = claim(t), (shape(t.question), t.lang)
        mine = [k for k in references if (k.shape, k.lang) == cell]
        turn, used[cell] = used[cell], used[cell] + per_item  # items of one shape take neighbours in turn
        for k in (mine[(turn + j) % len(mine)] for j in range(min(per_item, len(mine)))):
            wrong = _swap(k, said, t)
            if said and wrong:
                prompt = [{"role": "user", "content": k.question}]
                out.append(Pair(tokens.sequence(prompt, k.answer), tokens.sequence(prompt, wrong)))
    return out


def _swap(k: Known, said: str, t: Taught) -> str:
    """The base model's answer with its key replaced by `said` ("" when no key is in it)."""
    for key in k.keys:
        at = k.answer.lower().find(key.lower())
        if at >= 0:
            instead = said
            if t.lang == "zh" and shape(t.question) == "person" and len(said) == 3 and len(key) == 3:
                instead = key[0] + said[1:]  # the blend
            return k.answer[:at] + instead + k.answer[at + len(key):]
    return ""
