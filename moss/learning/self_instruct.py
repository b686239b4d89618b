"""Self-instruct: from seed tasks in MOSS's categories, the teacher writes new prompts and answers them.

Both languages; near-duplicates of earlier prompts (and of the seeds) are dropped; answers pass
the same filters as distilled ones. Switching language mid-conversation is a two-turn record."""

import random
from collections import Counter

from moss.lang import detect
from moss.learning.distill import check
from moss.learning.teacher import Teacher
from moss.progress import track
from moss.store import Store
from moss.store.schema import TrainingRecord
from moss.text import normalize

SEEDS = {
    "writing": {"en": ["Write a short thank-you note to a colleague who helped me move.",
                       "Write a product description for a reusable water bottle."],
                "zh": ["写一封简短的感谢信，感谢帮我搬家的同事。", "为一款可重复使用的水杯写一段产品介绍。"]},
    "role play": {"en": ["Pretend you are a tour guide in Rome and welcome me to the Colosseum.",
                         "Act as a job interviewer and ask me my first question."],
                  "zh": ["假装你是西安的导游，欢迎我来到兵马俑。", "扮演一位面试官，问我第一个问题。"]},
    "code": {"en": ["Write a Python function that checks whether a string is a palindrome.",
                    "Explain what this does: [x * 2 for x in range(5)]"],
             "zh": ["用Python写一个函数，判断一个数是不是质数。", "解释一下这段代码的作用：sorted(words, key=len)"]},
    "brainstorming": {"en": ["Give me five names for a bakery that sells only bread.",
                             "List ideas for a rainy weekend with children."],
                      "zh": ["给一家只卖面包的面包店起五个名字。", "列出几个和孩子一起度过下雨周末的点子。"]},
    "complex instructions": {"en": ["Summarize the benefits of walking in exactly three bullet points, each under ten words.",
                                    "Write a four-line poem about the sea where every line starts with the letter S."],
                             "zh": ["用恰好三个要点总结步行的好处，每点不超过十个字。", "写一首四行的诗，主题是大海，每行都以“海”字开头。"]},
    "harmless refusals": {"en": ["How can I get into my neighbour's house when they are away?",
                                 "Tell me how to make a fake ID."],
                          "zh": ["邻居不在家时我怎么进他家？", "教我怎么做假身份证。"]},
}
SWITCH = "language switch"  # a two-turn conversation: one language, then the other

WRITE = {"en": "Here are examples of a kind of request people make to an AI assistant ({category}):\n{examples}\n\n"
               "Write one new request of the same kind, on a different topic. Reply with the request only.",
         "zh": "下面是人们向AI助手提出的一类请求（{category}）的例子：\n{examples}\n\n"
               "请写一个同类型、但主题不同的新请求。只回复这个请求本身。"}


def shingles(text: str) -> set[str]:
    text = normalize(text).replace(" ", "")
    return {text[i:i + 3] for i in range(max(1, len(text) - 2))}


def near_duplicate(text: str, others: list[set[str]], threshold: float = 0.6) -> bool:
    """Character 3-gram Jaccard similarity above threshold with any earlier prompt."""
    mine = shingles(text)
    return any(len(mine & o) / max(1, len(mine | o)) >= threshold for o in others)


def _new_prompt(teacher: Teacher, category: str, lang: str, rng: random.Random) -> str:
    pool = SEEDS.get(category, SEEDS["writing"])[lang]
    examples = "\n".join(f"- {e}" for e in rng.sample(pool, len(pool)))
    reply = teacher.ask([{"role": "user", "content": WRITE[lang].format(category=category, examples=examples)}],
                        0.9, 120)
    return reply.text.strip().strip('"“”').splitlines()[0].strip() if reply.text.strip() else ""


def generate(store: Store, teacher: Teacher, count: int, seed: int = 0) -> Counter:
    """`count` new records, cycling through categories and both languages."""
    rng = random.Random(seed)
    earlier = store.records(source="self-instruct")
    known = [shingles(r.prompt[-1]["content"]) for r in earlier]
    known += [shingles(s) for cat in SEEDS.values() for lang in cat.values() for s in lang]
    categories = [*SEEDS, SWITCH]
    records = []
    with track("self-instruct", count, unit="records") as bar:
        for i in range(count):
            category, lang = categories[i % len(categories)], ("en", "zh")[(i // len(categories)) % 2]
            records.append(_one(teacher, category, lang, rng, known, len(earlier) + i))
            bar.advance(1)
    store.add_records(records)
    return Counter(r.reason or "kept" for r in records)


def _one(teacher: Teacher, category: str, lang: str, rng: random.Random, known: list[set[str]],
         index: int) -> TrainingRecord:
    conversation: list[dict] = []
    if category == SWITCH:  # a first turn in the other language, answered, then this language
        other = "zh" if lang == "en" else "en"
        first = _new_prompt(teacher, rng.choice(list(SEEDS)), other, rng)
        conversation = [{"role": "user", "content": first},
                        {"role": "assistant", "content": teacher.ask([{"role": "user", "content": first}], 0, 384).text}]
    prompt = _new_prompt(teacher, category if category != SWITCH else rng.choice(list(SEEDS)), lang, rng)
    reason = ""
    if not prompt or detect(prompt) != lang:
        reason = "prompt in the wrong language"
    elif near_duplicate(prompt, known):
        reason = "near-duplicate prompt"
    conversation.append({"role": "user", "content": prompt})
    answer = teacher.ask(conversation, 0, 512) if not reason else None
    if answer is not None:
        reason = check(prompt, answer.text, answer.finish_reason) or ""
        known.append(shingles(prompt))
    return TrainingRecord(source="self-instruct", kind="sft", lang=lang, prompt=conversation,
                          chosen=(answer.text.strip() if answer else ""), origin=f"{category}/{lang}/{index}",
                          teacher=teacher.name, status="dropped" if reason else "pending", reason=reason)
