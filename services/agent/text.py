"""Text helpers for the built-in runtime: tokenising with a light stemmer, stopwords, sentences,
and a stopword-vote language guess. Pure functions, no database."""

from __future__ import annotations

import re
from functools import lru_cache

WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n{2,}|\n(?=\s*(?:[-*•]|\d+[.)])\s)")

# Function words of English: they carry no topic, so they neither rank a document nor count
# towards how much of a question a document covers.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are aren't as at be because been before being below
    between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
    few for from further get gets got had hadn't has hasn't have haven't having he her here hers herself him
    himself his how i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most my myself
    no nor not now of off on once only or other ought our ours ourselves out over own please same shall she
    should shouldn't so some such than that that's the their theirs them themselves then there there's these
    they this those through to too under until up us very was wasn't we we're were weren't what what's when
    where which while who whom why will with won't would wouldn't you you're your yours yourself yourselves
    hi hello hey thanks thank regards dear team anyone someone something anything also still really need
    want wants wanted like know tell help able way use using used
    """.split()
)

# Frequent function words per language, for a language guess by vote (ISO 639-1 codes).
LANGUAGE_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are you i my to of it not have with this that for can how what please".split()),
    "de": frozenset("der die das und ist ich nicht ein eine mit sie es zu wie bitte kann mein meine habe auf".split()),
    "fr": frozenset("le la les et est je ne pas un une avec vous il pour comment mon ma mes ai sur merci".split()),
    "es": frozenset("el la los las y es yo no un una con usted para como mi mis tengo por favor gracias que".split()),
    "pt": frozenset("o a os as e é eu não um uma com você para como meu minha tenho por favor obrigado que".split()),
    "it": frozenset("il lo la gli le e è io non un una con lei per come mio mia ho grazie che sono".split()),
    "nl": frozenset("de het een en is ik niet met u je voor hoe mijn heb op dank alstublieft wat".split()),
}

_SUFFIXES = (
    ("ational", "ate"), ("ization", "ize"), ("fulness", "ful"), ("ousness", "ous"), ("iveness", "ive"),
    ("ations", "ate"), ("ation", "ate"), ("ments", ""), ("ment", ""), ("ingly", ""), ("edly", ""), ("ings", ""),
    ("ing", ""), ("ies", "y"), ("ied", "y"), ("sses", "ss"), ("ed", ""), ("es", ""), ("ly", ""), ("s", ""),
)


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light suffix stripper (Porter-like, English): "resetting" and "resets" both give "reset".

    Errors are symmetric (documents and questions go through the same function), which is
    all ranking needs."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("ches", "shes", "xes", "zes", "sses")):
                suffix, replacement = "s", ""
            base = word[: len(word) - len(suffix)] + replacement
            # "resetting" → "resett" → "reset": undo the doubled consonant of -ing/-ed.
            if suffix in ("ing", "ed", "ings") and len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]
            return base
    return word


def words(text: str) -> list[str]:
    """Lower-cased words in order (apostrophes kept inside words)."""
    return [w.replace("’", "'") for w in WORD_RE.findall(text.lower())]


def terms(text: str) -> list[str]:
    """Index terms: words without stopwords, stemmed."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1]


def sentences(text: str) -> list[str]:
    parts = [p.strip() for p in SENTENCE_RE.split(text or "")]
    return [p for p in parts if p]


def guess_language(text: str) -> tuple[str, float]:
    """The language whose function words appear most, with a share-of-votes confidence."""
    tokens = words(text)
    if not tokens:
        return "en", 0.0
    votes = {lang: sum(1 for t in tokens if t in vocab) for lang, vocab in LANGUAGE_WORDS.items()}
    best = max(votes, key=lambda lang: (votes[lang], lang == "en"))
    total = sum(votes.values())
    if votes[best] == 0:
        return "en", 0.2
    return best, round(votes[best] / total, 2)
