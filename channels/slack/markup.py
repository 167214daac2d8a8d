"""Slack `mrkdwn` ⇄ the Markdown ticketwire stores (Slack API docs, "Formatting text for app surfaces").

Slack wraps everything special in angle brackets: user mentions `<@U123>`, channel links
`<#C123|general>`, special mentions `<!here>`, user groups `<!subteam^S123|@team>`, dates
`<!date^...|fallback>` and links `<https://x|label>` or `<https://x>`. Literal `&`, `<` and `>`
typed by a user arrive escaped as `&amp;`, `&lt;` and `&gt;` (and only those three).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# A token never spans lines and never contains a raw angle bracket (those arrive escaped).
_TOKEN = re.compile(r"<([^<>\n]+)>")
_MARKDOWN_LINK = re.compile(r"\[([^\]\n]+)\]\(((?:https?|mailto):[^)\s]+)\)")
_MARKDOWN_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")


def unescape(text: str) -> str:
    """Undo Slack's escaping of the three control characters (`&amp;` last, so `&amp;lt;` stays `&lt;`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Escape the three characters Slack reserves for its `<...>` tokens."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _token_to_markdown(inner: str, user_name: Callable[[str], str | None]) -> str:
    target, _, label = inner.partition("|")
    label = unescape(label)
    if target.startswith("@"):
        user_id = target[1:]
        return "@" + (user_name(user_id) or label.lstrip("@") or user_id)
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!"):
        # `<!here>`, `<!channel>`, `<!everyone>`, `<!subteam^S123|@team>`, `<!date^…|fallback>`:
        # the label is what Slack shows to clients that cannot render the token.
        return label or "@" + target[1:].split("^", 1)[0]
    url = unescape(target)
    return f"[{label}]({url})" if label else url


def to_markdown(text: str, *, user_name: Callable[[str], str | None] = lambda _: None) -> str:
    """Convert Slack message text to Markdown; `user_name` resolves `<@U123>` to a display name."""
    out: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        out.append(unescape(text[pos : match.start()]))
        out.append(_token_to_markdown(match.group(1), user_name))
        pos = match.end()
    out.append(unescape(text[pos:]))
    return "".join(out)


def _escape_with_bold(text: str) -> str:
    return _MARKDOWN_BOLD.sub(r"*\1*", escape(text))


def to_mrkdwn(markdown: str) -> str:
    """Convert an agent's Markdown reply to Slack text.

    Escaping `&`, `<` and `>` is required by Slack and also keeps a reply from pinging a whole
    channel with a literal `<!channel>`. Markdown links become `<url|label>` and `**bold**`
    becomes Slack's `*bold*`; everything else is sent as written.
    """
    out: list[str] = []
    pos = 0
    for match in _MARKDOWN_LINK.finditer(markdown):
        out.append(_escape_with_bold(markdown[pos : match.start()]))
        label, url = match.group(1), match.group(2)
        out.append(f"<{escape(url)}|{escape(label)}>")
        pos = match.end()
    out.append(_escape_with_bold(markdown[pos:]))
    return "".join(out)
