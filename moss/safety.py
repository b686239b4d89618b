"""A first safety screen for what people teach: whether a text gives harmful instructions or
content, by category, in English and Chinese. Pure patterns, no model: it runs on every piece
of feedback before training. The bilingual guard of the safety issue (a trained classifier or
a guard model) is meant to replace it behind the same function."""

import re

# Each category: phrases that state or instruct harm, not words that merely name it ("how to
# kill a process", "the history of the atomic bomb" pass).
_CATEGORIES = {
    "weapons": [
        r"\b(?:make|build|assemble|making|building)\b.{0,40}\b(?:bomb|explosive|detonator|grenade|napalm)s?\b",
        r"\b(?:pipe bomb|nail bomb|molotov|pack(?:ed)? (?:it|the pipe) with (?:gun ?powder|explosive))",
        r"\b(?:nerve agent|sarin|ricin|anthrax)\b.{0,40}\b(?:make|produce|synthesi[sz]e|release)",
        r"(?:制作|制造|自制|组装).{0,10}(?:炸弹|炸药|爆炸物|雷管|燃烧弹)", r"(?:炸弹|炸药).{0,10}(?:的做法|做法是|配方)",
    ],
    "self-harm": [
        r"\b(?:you should|go) (?:kill|hurt|harm) yourself\b", r"\bkill yourself\b",
        r"\b(?:best|easiest|painless) (?:way|method)s? (?:to|of) (?:die|suicide|kill(?:ing)? (?:your|one)self)",
        r"(?:你应该|你去|去)(?:死|自杀)", r"自杀(?:的)?(?:方法|办法)(?:是|有)", r"(?:割腕|上吊)(?:的方法|最)",
    ],
    "malware": [
        r"\b(?:ransomware|keylogger|botnet)\b.{0,60}\b(?:code|script|here is|step)", r"\bencrypt (?:all )?(?:the )?victim'?s files\b",
        r"(?:勒索病毒|木马|键盘记录器).{0,10}(?:代码|程序|步骤)",
    ],
    "crime and fraud": [
        r"\b(?:launder(?:ing)? money|steal (?:credit card|someone's identity)|phishing (?:email|page) (?:that|to))",
        r"\b(?:synthesi[sz]e|cook|make) (?:meth|methamphetamine|fentanyl|heroin)\b",
        r"(?<!反)(?:洗钱|盗刷信用卡|制毒|提炼冰毒|合成冰毒)(?:的)?(?:方法|步骤|流程|办法)", r"(?:合成|提炼|制作)冰毒",
    ],
    "sexual content involving minors": [r"\b(?:child|minor|underage)\b.{0,20}\b(?:porn|sexual|nude)", r"(?:儿童|未成年人?).{0,6}(?:色情|裸)"],
    "hate": [r"\b(?:all|those) \w+ (?:people )?(?:should be|must be|deserve to be) (?:killed|exterminated|wiped out)\b",
             r"(?:应该|都该)(?:被)?(?:杀光|消灭|灭绝)"],
}
_COMPILED = {category: re.compile("|".join(patterns), re.IGNORECASE) for category, patterns in _CATEGORIES.items()}
CATEGORIES = tuple(_CATEGORIES)


def unsafe(text: str) -> str | None:
    """The first harm category the text falls in, or None when it looks safe."""
    for category, pattern in _COMPILED.items():
        if pattern.search(text):
            return category
    return None
