"""Slack mrkdwn → Markdown for inbound text, Markdown → Slack text for replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.slack.markup import to_markdown, to_mrkdwn

NAMES = {"U123": "Dana Scully"}


@pytest.mark.parametrize(
    ("slack", "markdown"),
    [
        ("hello <@U123>", "hello @Dana Scully"),
        ("<@U999|legacy-name> hi", "@legacy-name hi"),
        ("<@U999> hi", "@U999 hi"),
        ("see <#C123|support>", "see #support"),
        ("see <#C123>", "see #C123"),
        ("<https://example.com/a?b=1&amp;c=2|the docs>", "[the docs](https://example.com/a?b=1&c=2)"),
        ("<https://example.com>", "https://example.com"),
        ("<mailto:dana@example.com|dana@example.com>", "[dana@example.com](mailto:dana@example.com)"),
        ("<!here> <!channel> <!everyone>", "@here @channel @everyone"),
        ("<!subteam^S123|@support-team> look", "@support-team look"),
        ("<!date^1392734382^{date_num}|Feb 18, 2014>", "Feb 18, 2014"),
        ("a &lt;b&gt; &amp; c", "a <b> & c"),
        ("&amp;lt; stays literal", "&lt; stays literal"),
        ("5 &lt; 6 and <https://x.example|x &amp; y>", "5 < 6 and [x & y](https://x.example)"),
        ("", ""),
    ],
)
def test_slack_markup_becomes_markdown(slack: str, markdown: str) -> None:
    assert to_markdown(slack, user_name=NAMES.get) == markdown


@pytest.mark.parametrize(
    ("markdown", "slack"),
    [
        ("a <b> & c", "a &lt;b&gt; &amp; c"),
        ("do not ping <!channel>", "do not ping &lt;!channel&gt;"),
        (
            "read [the docs](https://example.com/a?b=1&c=2)",
            "read <https://example.com/a?b=1&amp;c=2|the docs>",
        ),
        ("this is **important**", "this is *important*"),
        ("keep *this* and `code`", "keep *this* and `code`"),
    ],
)
def test_a_markdown_reply_becomes_slack_text(markdown: str, slack: str) -> None:
    assert to_mrkdwn(markdown) == slack


@given(st.text(alphabet=st.characters(blacklist_characters="*[]")))
def test_any_plain_text_survives_the_way_out_and_back(text: str) -> None:
    assert to_markdown(to_mrkdwn(text)) == text
