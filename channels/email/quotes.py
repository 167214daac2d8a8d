"""Turning mail bodies into what a person reads: HTML to text, quoted history and signatures cut.

The full body is always kept (the parser's `text`); this module only decides what to *show*.

Text bodies use mail-parser-reply's multi-language header patterns ("On … wrote:",
"Am … schrieb …:", "Le … a écrit :", Outlook "From: … Sent: …" blocks,
"-----Original Message-----") to find where the quoted history starts. Its own splitting is
not used as is, because it strips every line (code samples lose their indentation), keeps the
first fragment only (an inline reply under a top attribution shrinks to "Hi,") and treats any
line starting with "Thanks," as the start of a signature. The rules here follow GitHub's
email_reply_parser instead: an attribution followed by `>` lines may be answered inline, so
only the *trailing* quoted lines, attributions, signatures and list footers are hidden; an
attribution or header block followed by unquoted text (Outlook, "wrote:" without `>`) cuts
everything below it. A forwarded message ("---------- Forwarded message ---------") is content
and is kept.

HTML-only bodies go through quotequail (`quote_html`), which knows Gmail's `gmail_quote`
blocks and the same attribution lines; what it keeps is converted to text and then passes the
text rules above (Outlook header blocks in HTML are only caught there). `<blockquote>` renders
as `> ` lines so the text rules see quotes that quotequail missed.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from functools import lru_cache

import lxml.etree
import lxml.html
import quotequail
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage as _ReplyParserMessage
from quotequail._patterns import REPLY_PATTERNS as _QUOTEQUAIL_REPLY_PATTERNS

# Languages whose reply headers we look for. Polish is left out on purpose: its Outlook block
# pattern accepts a single line ("Data: …", "Do: …"), which cuts ordinary Polish and English
# text. "david" is a vendor-specific pattern of the library, not a language.
DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "cs", "ja", "zh", "ko")

# Lines that introduce a forwarded message: what follows them is the content, not history.
_FORWARD_MARKER = re.compile(
    r"^[->\s]*(?:-{2,}\s*)?(?:begin forwarded message|forwarded message|weitergeleitete nachricht"
    r"|anfang der weitergeleiteten e-mail|message transf[ée]r[ée]|mensaje reenviado"
    r"|messaggio inoltrato|doorgestuurd bericht|vidarebefordrat meddelande)\b",
    re.IGNORECASE,
)
# A rule line left above an Outlook header block: dashes, underscores, equals signs.
_RULE_LINE = re.compile(r"^[-_=*~]{3,}$")
# Signature delimiters: RFC 3676 "-- " (stripped to "--") and underscore rules of list footers.
_SIG_DELIMITER = re.compile(r"^(?:--|_{2,})$")
# "-Name" alone on the last line, a common hand-written sign-off. A space after the hyphen
# ("- item") is a list item and is kept.
_DASH_NAME = re.compile(r"^-[^\W\d_][\w.' ]{0,40}$")
_SENT_FROM_MAX_WORDS = 8


@lru_cache(maxsize=16)
def _header_regex(languages: tuple[str, ...]) -> re.Pattern[str]:
    # The library builds one alternation of every language's attribution and header-block
    # pattern; reuse it rather than copying the patterns.
    message = _ReplyParserMessage(text="", languages=list(languages))
    return message.HEADER_REGEX


# quotequail's one-line attributions complete the library's: Portuguese "Em … escreveu:",
# Russian "… написал(а):", and Spanish "El … escribió:" with a single space (mail-parser-reply's
# Spanish pattern wants two whitespace characters before "escribió").
_ONE_LINE_ATTRIBUTIONS = [re.compile(p, re.IGNORECASE) for p in _QUOTEQUAIL_REPLY_PATTERNS]


@lru_cache(maxsize=16)
def _sent_from_regex(languages: tuple[str, ...]) -> re.Pattern[str]:
    patterns = [MAIL_LANGUAGES[lang].get("sent_from", "") for lang in languages if lang in MAIL_LANGUAGES]
    joined = "|".join(p for p in patterns if p)
    return re.compile(rf"^(?:{joined})\b", re.IGNORECASE)


# Bounds for the header patterns, several of which backtrack badly on long lines (an
# "On …" line of 60 000 characters took minutes): they only look at the start of the text and
# at lines short enough to be an attribution or header line.
_MAX_SCAN_CHARS = 100_000
_MAX_HEADER_LINE = 300


def _scan_lines(norm: list[str]) -> list[str]:
    """The lines the header patterns run on; others are blanked so line numbers still match.

    A line is kept when it is short and has a colon, or precedes one with a colon (a two-line
    "On … / wrote:"), or is a dash rule ("-----Original Message-----").
    """
    scan: list[str] = []
    total = 0
    for index, line in enumerate(norm):
        total += len(line) + 1
        if total > _MAX_SCAN_CHARS:
            scan.extend([""] * (len(norm) - index))
            break
        following = norm[index + 1] if index + 1 < len(norm) else ""
        plausible = len(line) <= _MAX_HEADER_LINE and (
            ":" in line or ":" in following[:_MAX_HEADER_LINE] or line.startswith("-----")
        )
        scan.append(line if plausible else "")
    return scan


def _header_ranges(norm: list[str], languages: tuple[str, ...]) -> list[tuple[int, int]]:
    """Line ranges (first, last) of every attribution or header block the patterns match."""
    scan = _scan_lines(norm)
    joined = "\n".join(scan)
    line_starts = [0]
    for line in scan[:-1]:
        line_starts.append(line_starts[-1] + len(line) + 1)
    ranges: list[tuple[int, int]] = []
    for match in _header_regex(languages).finditer(joined):
        start, end = match.start(), match.end()
        while start < end and joined[start] == "\n":
            start += 1
        while end > start and joined[end - 1] == "\n":
            end -= 1
        if start >= end:
            continue
        ranges.append((bisect_right(line_starts, start) - 1, bisect_right(line_starts, end - 1) - 1))
    covered = {line for first, last in ranges for line in range(first, last + 1)}
    for index, line in enumerate(scan):
        if index not in covered and line.endswith(":") and any(p.match(line) for p in _ONE_LINE_ATTRIBUTIONS):
            ranges.append((index, index))
    return sorted(ranges)


def _next_content_line(norm: list[str], after: int) -> int | None:
    for index in range(after + 1, len(norm)):
        if norm[index]:
            return index
    return None


def _is_forward_header(norm: list[str], first: int) -> bool:
    return any(_FORWARD_MARKER.match(norm[i]) for i in range(max(0, first - 3), first + 1))


def _signature_start(norm: list[str], run_start: int, last: int, sent_from: re.Pattern[str]) -> int | None:
    """Where a signature starts within the trailing unquoted lines `run_start..last`, if any."""
    for index in range(run_start, last + 1):
        line = norm[index]
        if _SIG_DELIMITER.match(line):
            return index
        if sent_from.match(line) and len(line.split()) <= _SENT_FROM_MAX_WORDS:
            remaining = [x for x in norm[index + 1 : last + 1] if x]
            if len(remaining) <= 3:
                return index
    if _DASH_NAME.match(norm[last]):
        return last
    return None


def strip_text_quotes(text: str, languages: Sequence[str] = DEFAULT_LANGUAGES) -> str:
    """The new content of a plain-text reply: quoted history, attributions and signature removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    norm = [line.strip() for line in lines]
    langs = tuple(languages)

    cut = len(lines)
    header_lines: set[int] = set()
    for first, last in _header_ranges(norm, langs):
        if first >= cut:
            break
        if norm[first].startswith(">"):
            continue  # an attribution inside the quote belongs to the quote
        if _is_forward_header(norm, first):
            break  # a forwarded message is what the sender wants us to read
        following = _next_content_line(norm, last)
        if following is not None and norm[following].startswith(">"):
            # Gmail / Apple style: the quote is marked, so replies may be interleaved with it.
            header_lines.update(range(first, last + 1))
            continue
        cut = first  # Outlook style or unmarked quote: everything below is history
        break

    sent_from = _sent_from_regex(langs)
    body = list(range(cut))
    while body:
        last = body[-1]
        line = norm[last]
        if not line or line.startswith(">") or last in header_lines or _RULE_LINE.match(line):
            body.pop()
            continue
        run_start = last
        while run_start > 0 and not norm[run_start - 1].startswith(">") and run_start - 1 not in header_lines:
            run_start -= 1
        signature = _signature_start(norm, run_start, last, sent_from)
        if signature is None:
            break
        del body[signature:]
    kept = [lines[i].rstrip() for i in body]
    while kept and not kept[0].strip():
        kept.pop(0)
    return "\n".join(kept).strip("\n")


def strip_html_quotes(html: str, languages: Sequence[str] = DEFAULT_LANGUAGES) -> str:
    """The new content of an HTML-only reply, as text."""
    try:
        parts = quotequail.quote_html(html, quote_intro_line=True)
        kept_html = "".join(part for expanded, part in parts if expanded) if len(parts) > 1 else html
    except (ValueError, TypeError, lxml.etree.LxmlError):
        kept_html = html
    return strip_text_quotes(html_to_text(kept_html), languages)


def display_text(text: str, html: str | None, *, text_from_html: bool) -> str:
    """What to show for a message whose full body is `text` (and `html` when it has one)."""
    if text_from_html and html:
        return strip_html_quotes(html)
    return strip_text_quotes(text)


# --- HTML to text -----------------------------------------------------------------------------

_SKIP_TAGS = frozenset({"head", "title", "script", "style", "template", "noscript", "xml", "svg", "object"})
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre", "dl", "figure", "address"}
)
_BLOCK_TAGS = _PARAGRAPH_TAGS | frozenset(
    {
        "div",
        "section",
        "article",
        "header",
        "footer",
        "main",
        "nav",
        "aside",
        "li",
        "tr",
        "dt",
        "dd",
        "form",
        "fieldset",
        "center",
        "figcaption",
        "hr",
        "tbody",
        "thead",
        "tfoot",
        "caption",
        "body",
        "html",
    }
)
_WHITESPACE = re.compile(r"[ \t\r\n\f\v\u00a0\u200b]+")


class _TextBuffer:
    """Accumulates rendered text with the few layout rules mail HTML needs."""

    def __init__(self) -> None:
        self.chunks: list[str] = []

    def text(self) -> str:
        return "".join(self.chunks)

    def _tail(self) -> str:
        return "".join(self.chunks[-4:])

    def add_inline(self, value: str, *, preformatted: bool) -> None:
        if not value:
            return
        if preformatted:
            self.chunks.append(value.replace("\r\n", "\n").replace("\u00a0", " "))
            return
        collapsed = _WHITESPACE.sub(" ", value)
        tail = self._tail()
        if not tail or tail.endswith(("\n", " ")):
            collapsed = collapsed.lstrip(" ")
        if collapsed:
            self.chunks.append(collapsed)

    def newlines(self, count: int) -> None:
        """Make the text end with at least `count` line breaks (none at the very start).

        Looks at the tail only: joining the whole buffer here made long documents quadratic.
        """
        while self.chunks:
            last = self.chunks[-1]
            trimmed = last.rstrip(" ")
            if trimmed == last:
                break
            if trimmed:
                self.chunks[-1] = trimmed
                break
            self.chunks.pop()
        have = 0
        for chunk in reversed(self.chunks):
            stripped = chunk.rstrip("\n")
            have += len(chunk) - len(stripped)
            if stripped:
                break
        else:
            self.chunks = []  # nothing but line breaks so far: the text starts here
            return
        if have < count:
            self.chunks.append("\n" * (count - have))


def html_to_text(html: str) -> str:
    """Readable text from mail HTML: blocks and <br> become line breaks, links keep their URL,
    lists get "- ", <blockquote> becomes "> " lines, <pre> keeps its spacing. Never raises."""
    if not html or not html.strip():
        return ""
    try:
        root = lxml.html.document_fromstring(html.encode("utf-8"), parser=_parser())
    except (lxml.etree.LxmlError, ValueError):
        return _strip_tags(html)
    stack: list[_TextBuffer] = [_TextBuffer()]
    skip_depth = 0
    pre_depth = 0
    list_counters: list[int | None] = []
    for event, element in lxml.etree.iterwalk(root, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else None
        name = tag.lower() if tag else None
        buffer = stack[-1]
        if event == "start":
            if name is None:
                continue  # comments and processing instructions: only their tail counts
            if skip_depth or name in _SKIP_TAGS:
                skip_depth += 1
                continue
            if name == "blockquote":
                buffer.newlines(2)
                stack.append(_TextBuffer())
                buffer = stack[-1]
            elif name in ("ul", "ol"):
                list_counters.append(0 if name == "ol" else None)
            if name == "pre":
                pre_depth += 1
            if name in _PARAGRAPH_TAGS:
                buffer.newlines(2)
            elif name in _BLOCK_TAGS:
                buffer.newlines(1)
            if name == "li":
                counter = list_counters[-1] if list_counters else None
                if counter is None:
                    buffer.add_inline("- ", preformatted=True)
                else:
                    list_counters[-1] = counter + 1
                    buffer.add_inline(f"{counter + 1}. ", preformatted=True)
            elif name == "img":
                alt = (element.get("alt") or "").strip()
                if alt:
                    buffer.add_inline(f"[{alt}]", preformatted=False)
            if element.text:
                buffer.add_inline(element.text, preformatted=pre_depth > 0)
            continue

        # end event
        if name is not None:
            if skip_depth:
                skip_depth -= 1
                if skip_depth:
                    continue
                # the skipped element itself ends here: fall through to its tail
            elif name == "br":
                buffer.chunks.append("\n")
            elif name == "a":
                href = (element.get("href") or "").strip()
                label = _WHITESPACE.sub(" ", element.text_content() or "").strip()
                if href.startswith(("http://", "https://")) and href != label and label:
                    buffer.add_inline(f" ({href})", preformatted=False)
            elif name == "blockquote":
                inner = stack.pop().text().strip("\n")
                buffer = stack[-1]
                quoted = "\n".join(f"> {line}".rstrip() for line in inner.split("\n")) if inner else ">"
                buffer.chunks.append(quoted)
                buffer.newlines(2)
            elif name in ("td", "th"):
                buffer.add_inline(" ", preformatted=True)
            if name in ("ul", "ol") and list_counters:
                list_counters.pop()
            if name == "pre":
                pre_depth = max(0, pre_depth - 1)
            if name in _PARAGRAPH_TAGS:
                buffer.newlines(2)
            elif name in _BLOCK_TAGS:
                buffer.newlines(1)
        if skip_depth:
            continue
        if element.tail:
            stack[-1].add_inline(element.tail, preformatted=pre_depth > 0)
    while len(stack) > 1:  # unbalanced blockquotes cannot happen with lxml, but stay safe
        inner = stack.pop().text()
        stack[-1].chunks.append(inner)
    rendered = _tidy(stack[0].text())
    if not rendered:
        return _strip_tags(html)  # lxml gave up on the markup; the bare text is better than nothing
    return rendered


@lru_cache(maxsize=1)
def _parser() -> lxml.html.HTMLParser:
    # huge_tree: libxml2 otherwise drops everything below 256 levels of nesting, and some mail
    # generators nest that deep; the walk below is iterative, so depth costs nothing.
    return lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, huge_tree=True)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\u00a0", " ").split("\n")]
    tidy = "\n".join(lines)
    tidy = re.sub(r"\n{3,}", "\n\n", tidy)
    return tidy.strip("\n")


_TAG = re.compile(r"<[^>]*>")


def _strip_tags(html: str) -> str:
    import html as html_module

    text = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", html)
    text = re.sub(r"(?i)<br\s*/?>|</p\s*>|</div\s*>", "\n", text)
    return _tidy(html_module.unescape(_TAG.sub("", text)))
