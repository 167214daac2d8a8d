"""Rule-based ticket triage for the built-in runtime (and the fallback of the HTTP one).

Category and urgency come from weighted cue phrases; the language from a stopword vote;
suggested tags from the category plus the tags of the most similar resolved tickets.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from services.agent.base import CATEGORIES, URGENCIES, URGENCY_TO_PRIORITY, Toolbox
from services.agent.text import guess_language

# (pattern, weight) per category. Patterns match whole words in lower-cased text.
CATEGORY_CUES: dict[str, list[tuple[str, float]]] = {
    "billing": [
        (r"invoices?", 2), (r"refunds?|refunded", 2), (r"charged?|charges", 2), (r"billing|billed", 2),
        (r"payments?|paid|pay", 1.5), (r"credit card|card", 1), (r"subscriptions?", 1.5), (r"pricing|price|plan", 1),
        (r"receipts?", 2), (r"vat|tax", 1.5), (r"rechnung|facture|factura", 2), (r"cancel (?:my )?(?:plan|subscription)", 2),
    ],
    "bug": [
        (r"errors?", 2), (r"bugs?", 2.5), (r"crash(?:es|ed|ing)?", 2.5), (r"broken|breaks", 2),
        (r"(?:does ?n[o']t|is ?n[o']t|not) work(?:ing)?", 2), (r"fail(?:s|ed|ing|ure)?", 1.5),
        (r"exception|stack ?trace|traceback", 2), (r"\b5\d\d\b|\b404\b", 1.5), (r"blank (?:page|screen)", 2),
        (r"fehler|erreur", 2), (r"wrong|incorrect|unexpected", 1),
    ],
    "account": [
        (r"log ?in|login|sign ?in|signin", 2), (r"passwords?", 2.5), (r"2fa|two[- ]factor|mfa|otp", 2.5),
        (r"sso|saml|okta", 2), (r"locked out|lockout|locked", 2), (r"accounts?", 1.5),
        (r"(?:change|update) (?:my )?email", 2), (r"delete (?:my )?account", 2.5), (r"invite|permissions?|role", 1),
        (r"passwort|mot de passe|contraseña", 2.5),
    ],
    "feature_request": [
        (r"feature requests?", 3), (r"would be (?:nice|great|helpful)", 2.5), (r"(?:could|can) you (?:please )?add", 2.5),
        (r"suggest(?:ion)?s?", 1.5), (r"wish(?:list)?", 1.5), (r"it would be", 1), (r"roadmap", 2),
        (r"support for", 1.5), (r"integration with", 1),
    ],
    "question": [
        (r"how (?:do|can|to|does)", 2), (r"where (?:do|can|is)", 1.5), (r"is it possible", 2),
        (r"can i", 1.5), (r"what is|what's|what are", 1), (r"\?", 0.5), (r"wie kann|comment", 1.5),
    ],
}

URGENCY_CUES: dict[str, list[tuple[str, float]]] = {
    "critical": [
        (r"outage|(?:is|are|went|all) down|down for everyone", 3), (r"production (?:is )?(?:down|broken)", 3),
        (r"data loss|lost (?:all )?(?:my |our )?data", 3), (r"security|breach|hacked|compromised", 3),
        (r"all (?:our |my )?(?:users|customers)", 1.5), (r"emergency", 3),
    ],
    "high": [
        (r"urgent(?:ly)?|asap|as soon as possible|immediately", 2.5), (r"blocked|blocking|blocker", 2),
        (r"can ?not|can't|unable to", 1), (r"dringend|urgente?", 2.5), (r"deadline|today", 1),
        (r"charged twice|double charged", 2),
    ],
    "low": [
        (r"no rush|whenever|when you (?:have|get) (?:the )?(?:time|a chance)", 3), (r"just curious|fyi", 2),
        (r"feature requests?|would be nice", 1.5), (r"minor|cosmetic|typo", 2),
    ],
}


def _score(text: str, cues: list[tuple[str, float]]) -> tuple[float, int]:
    total, hits = 0.0, 0
    for pattern, weight in cues:
        found = len(re.findall(rf"(?<![\w-])(?:{pattern})(?![\w-])" if pattern[0] not in "\\" else pattern, text))
        if found:
            total += weight * min(found, 2)
            hits += 1
    return total, hits


def classify(text: str) -> tuple[str, float]:
    """(category, confidence)."""
    lowered = text.lower()
    scores = {name: _score(lowered, cues) for name, cues in CATEGORY_CUES.items()}
    ranked = sorted(scores.items(), key=lambda item: -item[1][0])
    (best, (top, hits)), (_, (second, _)) = ranked[0], ranked[1]
    if top <= 0.5:
        return "other", 0.3
    margin = (top - second) / top
    confidence = min(0.95, 0.45 + 0.08 * min(hits, 4) + 0.3 * margin)
    # A question about billing is billing: "question" only wins when nothing else matched.
    if best == "question" and second >= 2:
        best = ranked[1][0]
        confidence = min(confidence, 0.6)
    return best, round(confidence, 2)


def urgency(text: str) -> str:
    lowered = text.lower()
    scores = {name: _score(lowered, cues)[0] for name, cues in URGENCY_CUES.items()}
    if scores["critical"] >= 3:
        return "critical"
    if scores["high"] >= 2 or scores["critical"] > 0:
        return "high"
    if scores["low"] >= 2:
        return "low"
    return "normal"


def triage_text(subject: str, text: str, *, toolbox: Toolbox | None = None) -> dict[str, Any]:
    body = f"{subject}\n{text}".strip()
    category, confidence = classify(body)
    level = urgency(body)
    language, _ = guess_language(text or subject)
    tags: list[str] = [category] if category != "other" else []
    if toolbox is not None and body:
        # Tags the team put on the most similar resolved tickets.
        counts: Counter[str] = Counter()
        for hit in toolbox.search_knowledge(body[:2000], limit=5):
            if hit.source.kind == "ticket" and hit.source.coverage >= 0.5:
                counts.update(hit.tags)
        tags += [tag for tag, _ in counts.most_common(3) if tag not in tags]
    return {
        "category": category,
        "urgency": level,
        "language": language,
        "suggested_priority": URGENCY_TO_PRIORITY[level],
        "suggested_tags": tags[:5],
        "confidence": confidence,
    }


def clean_triage(raw: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
    """Keep a model's triage values that are valid, the fallback's otherwise."""
    out = dict(fallback)
    if raw.get("category") in CATEGORIES:
        out["category"] = raw["category"]
    if raw.get("urgency") in URGENCIES:
        out["urgency"] = raw["urgency"]
        out["suggested_priority"] = URGENCY_TO_PRIORITY[raw["urgency"]]
    if isinstance(raw.get("language"), str) and re.fullmatch(r"[a-z]{2}", raw["language"]):
        out["language"] = raw["language"]
    if raw.get("suggested_priority") in ("low", "medium", "high", "critical"):
        out["suggested_priority"] = raw["suggested_priority"]
    tags = raw.get("suggested_tags")
    if isinstance(tags, list):
        out["suggested_tags"] = [str(t).strip().lower()[:50] for t in tags if str(t).strip()][:5]
    try:
        out["confidence"] = round(max(0.0, min(1.0, float(raw.get("confidence", out["confidence"])))), 2)
    except (TypeError, ValueError):
        pass
    return out
