"""Quoted history and signatures are cut for display; the new content stays, indentation too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from channels.email.parse import parse_email
from channels.email.quotes import html_to_text, strip_html_quotes, strip_text_quotes

BODIES = Path(__file__).parent / "fixtures" / "reply-bodies"
FIXTURES = Path(__file__).parent / "fixtures"


def body(name: str) -> str:
    return (BODIES / name).read_text(encoding="utf-8")


EMAIL_1_2 = """Hi,
On Tue, 2011-03-01 at 18:02 +0530, Abhishek Kona wrote:
> Hi folks
>
> What is the best way to clear a Riak bucket of all key, values after
> running a test?
> I am currently using the Java HTTP API.

You can list the keys for the bucket and call delete for each. Or if you
put the keys (and kept track of them in your test) you can delete them
one at a time (without incurring the cost of calling list first.)

Something like:

        String bucket = "my_bucket";
        BucketResponse bucketResponse = riakClient.listBucket(bucket);
        RiakBucketInfo bucketInfo = bucketResponse.getBucketInfo();

        for(String key : bucketInfo.getKeys()) {
            riakClient.delete(bucket, key);
        }


would do it.

See also

http://wiki.basho.com/REST-API.html#Bucket-operations

which says

"At the moment there is no straightforward way to delete an entire
Bucket. There is, however, an open ticket for the feature. To delete all
the keys in a bucket, you\u2019ll need to delete them all individually.\""""

EMAIL_1_8 = """On Tue, Apr 29, 2014 at 4:22 PM, Example Dev <sugar@example.com>wrote:

> okay.  Well, here's some stuff I can write.
>
> And if I write a 2 second line you and maybe reply under this?
>
> Or if you didn't really feel like it, you could reply under this line.Or
> if you didn't really feel like it, you could reply under this line. Or if
> you didn't really feel like it, you could reply under this line. Or if you
> didn't really feel like it, you could reply under this line.
>

I will reply under this one

>
> okay?
>

and under this."""

# The display text of each reply body. Inline answers under a `>` quote keep the quote they
# answer (interleaved replies make no sense without it); trailing quotes, attributions,
# signatures and list footers go; an attribution or header block over *unquoted* history
# (Outlook, Gmail without `>`) cuts everything below it.
EXPECTED_BODIES = {
    # bottom-posted inline reply: the answer and the question it answers, no list footer
    "email_1_2.txt": EMAIL_1_2,
    # top-posted: "-Abhishek Kona" sign-off, attribution, nested quote and footer removed
    "email_1_3.txt": "Oh thanks.\n\nHaving the function would be great.",
    # answers interleaved with the quote; trailing quote and "--" signature removed
    "email_1_8.txt": EMAIL_1_8,
    # Outlook *From:*/*Sent:* block under a dash rule
    "email_2_1.txt": "Outlook with a reply",
    # Outlook block under a line of underscores right below the reply
    "email_2_2.txt": "Outlook with a reply directly above line",
    # Gmail attribution folded over two lines, history not quoted with ">"
    "email_gmail.txt": "This is a test for inbox replying to a github message.",
    # Outlook block without a separator line
    "email_headers_no_delimiter.txt": "And another reply!",
    "email_iPhone.txt": "Here is another email",
    # "One outstanding question" is not an "On … wrote:" attribution
    "email_one_is_not_on.txt": "Thank, this is really helpful.\n\nOne outstanding question I had:\n\n"
    "Locally (on development), when I run...",
    # "--" inside a line is not a signature delimiter
    "email_sig_delimiter_in_middle_of_line.txt": "Hi there!\n\nStuff happened.\n\n"
    "And here is a fix -- this is not a signature.\n\nkthxbai",
    "pathological.txt": "I think you're onto something. I will try to fix the problem as soon as I\n"
    "get back to a computer.",
}


def test_every_reply_body_has_an_expectation() -> None:
    assert sorted(EXPECTED_BODIES) == sorted(p.name for p in BODIES.glob("*.txt"))


@pytest.mark.parametrize("name", sorted(EXPECTED_BODIES))
def test_reply_bodies_show_only_the_new_content(name: str) -> None:
    assert strip_text_quotes(body(name)) == EXPECTED_BODIES[name]


def test_inline_code_keeps_its_indentation() -> None:
    shown = strip_text_quotes(body("email_1_2.txt"))
    assert '        String bucket = "my_bucket";' in shown
    assert "riak-users mailing list" not in shown


def test_the_pathological_body_parses_fast() -> None:
    started = time.monotonic()
    strip_text_quotes(body("pathological.txt") * 5)
    assert time.monotonic() - started < 2.0  # upstream's catastrophic-backtracking guard


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("reply-gmail-multipart-alternative.eml", "Hello"),
        ("reply-outlook-header-block-iso-8859-1.eml", "Hello"),
        ("reply-apple-mail-in-reply-to-references.eml", "Hello"),
        ("reply-iphone-qp-soft-line-break-in-attribution.eml", "Hello"),
        ("reply-thunderbird-references-format-flowed.eml", "Message body"),
    ],
)
def test_reply_emails_display_only_the_new_content(name: str, shown: str) -> None:
    parsed = parse_email((FIXTURES / name).read_bytes())
    assert parsed.display_text == shown
    assert len(parsed.text) >= len(shown)  # the full body is kept beside it


def test_html_only_gmail_reply_is_cut_by_quotequail() -> None:
    parsed = parse_email((FIXTURES / "reply-gmail-multipart-alternative.eml").read_bytes())
    assert parsed.html is not None
    assert strip_html_quotes(parsed.html) == "Hello"


def test_html_only_outlook_reply_is_cut_at_its_header_block() -> None:
    parsed = parse_email((FIXTURES / "reply-outlook-header-block-iso-8859-1.eml").read_bytes())
    assert parsed.html is not None
    assert strip_html_quotes(parsed.html) == "Allo! Follow up MIME!"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "Hallo,\n\ndas Problem besteht weiterhin.\n\nAm 01.02.2024 um 10:00 schrieb Support "
            "<support@example.com>:\n> Bitte starten Sie neu.\n",
            "Hallo,\n\ndas Problem besteht weiterhin.",
        ),
        ("Danke!\n\n-----Original Message-----\nFrom: Support\nSent: Monday\nSubject: x\n\nold", "Danke!"),
        (
            "Passt.\n\nVon: Support <s@example.com>\nGesendet: Montag, 1. Februar 2024 10:00\n"
            "An: Max\nBetreff: Re: Frage\n\nalter Text",
            "Passt.",
        ),
        ("Merci !\n\nLe lun. 1 janv. 2024 à 10:00, Support <s@x.com> a écrit :\n> salut", "Merci !"),
        ("Gracias\n\nEl lun, 1 ene 2024 a las 10:00, Soporte (<s@x.com>) escribió:\n> hola", "Gracias"),
        (
            "Steps:\n- open the app\n- click save\n\nOn Mon, Jan 1, 2024 at 10:00 AM Support <s@x.com> wrote:\n> hi",
            "Steps:\n- open the app\n- click save",
        ),
        ("Done.\n\nGesendet von meinem iPhone", "Done."),
        ("Thanks, but it still fails.\nHere is the log.", "Thanks, but it still fails.\nHere is the log."),
    ],
)
def test_other_languages_and_clients_are_cut_too(text: str, shown: str) -> None:
    assert strip_text_quotes(text) == shown


def test_a_forwarded_message_is_content_not_history() -> None:
    text = (
        "FYI, see below.\n\n---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\n"
        "Date: Mon, 1 Jan 2024\nSubject: broken\nTo: me@example.com\n\nThe app crashes."
    )
    assert strip_text_quotes(text) == text


def test_html_to_text_keeps_structure_links_and_quotes() -> None:
    html = (
        "<html><head><style>p{color:red}</style><title>t</title></head><body>"
        "<p>Hello <b>there</b>,</p><p>see <a href='https://example.com/x'>the docs</a><br>thanks</p>"
        "<ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>"
        "<blockquote>old <i>text</i><br>more</blockquote><pre>  code\n    indented</pre>"
        "<script>alert(1)</script>&amp; done&nbsp;!</body></html>"
    )
    assert html_to_text(html) == (
        "Hello there,\n\nsee the docs (https://example.com/x)\nthanks\n\n- one\n- two\n\n1. first\n\n"
        "> old text\n> more\n\n  code\n    indented\n\n& done !"
    )


def test_html_to_text_survives_junk() -> None:
    assert html_to_text("") == ""
    assert html_to_text("<<<>>>") in ("<<<>>>", "<<>>>", ">>>", "")
    assert html_to_text("<?xml version='1.0' encoding='utf-8'?><p>x</p>") == "x"
    assert html_to_text("<div>" * 5000 + "deep" + "</div>" * 5000) == "deep"
