"""The words search matches on, English and Chinese alike: jieba cuts the text (Chinese into
words, English left whole), English words are stemmed ("headquarters" meets "headquartered"),
and words that only say what is asked (who, what, 谁, 什么...) are left out; and how much each
word weighs by its rarity in the language at large (wordfreq). Used by instant memory and the
knowledge base."""

import functools
import logging
import re

# Words that say what is asked, not about what: they match every question of the same kind.
STOP = set("""a an and are as at be but by for if in into is it its no not of on or such that the their then there
these they this to was will with who whom whose what which when where why how do does did can could would should
tell me please i you your my we our us about was were has have had is's one name named called""".split()) | set(
    "的 了 是 吗 呢 吧 啊 呀 谁 什么 哪 哪里 哪儿 哪个 哪位 哪一年 怎么 怎样 如何 为什么 多少 几 在 和 与 有 我 你 他 她 它 "
    "这 那 个 请 告诉 一下 叫 名字 是否 一个 位 年".split())
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The words retrieval matches on: lower-cased, English ones stemmed, without punctuation and
    question words."""
    return [_stem(w) for w in _cut(text)]


def weights(text: str) -> dict[str, float]:
    """Each of a text's words with its weight: 8 less its Zipf frequency (the log10 of its count
    per billion words), so "the" weighs ~0.3, "founded" 3.5, a made-up name 8."""
    from wordfreq import zipf_frequency
    return {_stem(w): max(0.5, 8.0 - zipf_frequency(w, "en" if w.isascii() else "zh")) for w in _cut(text)}


def _cut(text: str) -> list[str]:
    import jieba
    jieba.setLogLevel(logging.WARNING)  # its dictionary loads on first use, with a banner otherwise
    return [w for w in jieba.lcut_for_search(text.lower()) if _WORD.fullmatch(w) and w not in STOP]


def _stem(word: str) -> str:
    return _stemmer().stemWord(word) if word.isascii() else word


@functools.cache
def _stemmer():
    import snowballstemmer
    return snowballstemmer.stemmer("english")
