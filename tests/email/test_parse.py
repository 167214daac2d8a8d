"""Every stored email through `parse_email`: the decoded fields each fixture must produce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from channels.email.parse import (
    MAX_ATTACHMENT_BYTES,
    SYNTHETIC_ID_DOMAIN,
    decode_bytes,
    decode_encoded_words,
    message_id_of,
    parse_email,
)

FIXTURES = Path(__file__).parent / "fixtures"
ALL_EML = sorted(p.name for p in FIXTURES.glob("*.eml"))


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def tz(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


# What each fixture must parse to. `text` / `display_text` are exact unless the key ends in
# `_startswith` / `_contains`. A synthesised Message-ID is checked by shape, not value.
EXPECTED: dict[str, dict[str, Any]] = {
    "plain-text-apple-mail.eml": {
        "message_id": "<6B7EC235-5B17-4CA8-B2B8-39290DEB43A3@test.lindsaar.net>",
        "subject": "Testing 123",
        "from_name": "Mikel Lindsaar",
        "from_email": "test@lindsaar.net",
        "to": ["raasdnil@gmail.com"],
        "date": datetime(2008, 11, 22, 15, 4, 59, tzinfo=tz(11)),
        "text": "Plain email.\n\nHope it works well!\n\nMikel",
        "display_text": "Plain email.\n\nHope it works well!\n\nMikel",
        "parse_warnings": [],
        "headers_ok": True,
    },
    "reply-gmail-multipart-alternative.eml": {
        "message_id": "<CAKsfaBW4hj0Gek6TwbR3erng4P1y0CZzJ0d=pXtCNnYnbe7PLg@mail.gmail.com>",
        "subject": "Re: Test",
        "from_name": "Megan One",
        "from_email": "xxx@gmail.com",
        "to": ["bob@example.com"],
        "text": "Hello\n\nOn Mon, Apr 2, 2012 at 6:26 PM, Megan One <xxx@gmail.com> wrote:\n\n> Hi",
        "display_text": "Hello",
        "html_contains": 'class="gmail_quote"',
        "text_from_html": False,
    },
    "reply-outlook-header-block-iso-8859-1.eml": {
        "message_id_synthesized": True,
        "subject": "Test",
        "from_name": None,
        "from_email": "me@example.com",
        "to": ["you@example.com"],
        "date": None,
        "text_startswith": "Hello\n\nFrom: xxx@xxx.mailgun.org [mailto:xxx@xxx.mailgun.org]\nSent: March-09-12 4:22 PM",
        "text_contains": "Your Loop is here<http://dev.xxx.com/loop/view/",
        "display_text": "Hello",
        "html_contains": "Allo! Follow up MIME!",
    },
    "reply-apple-mail-in-reply-to-references.eml": {
        "message_id": "<68001B29-8EA4-444C-A894-0537D2CA5208@tictail.com>",
        "in_reply_to": "<CABzQGhkMXDxUt_tSVQcg=43aniUhtsVfCZVzu-PG0kwS_uzqMw@mail.gmail.com>",
        "references": ["<CABzQGhkMXDxUt_tSVQcg=43aniUhtsVfCZVzu-PG0kwS_uzqMw@mail.gmail.com>"],
        "subject": "Re: Hello there",
        "from_name": "Adam Renberg",
        "from_email": "adam@tictail.com",
        "to": ["tgwizard@gmail.com"],
        "date": datetime(2015, 8, 22, 19, 22, 20, tzinfo=tz(2)),
        "text": "Hello\n> On 22 Aug 2015, at 19:21, Adam Renberg <tgwizard@gmail.com> wrote:\n>\n> Hi there!",
        "display_text": "Hello",
    },
    "reply-iphone-qp-soft-line-break-in-attribution.eml": {
        "message_id": "<06C90B12-13B9-4C5F-A9EF-4A809D94C078@gmail.com>",
        "subject": "Re: Test",
        "from_name": "xxx",
        "from_email": "xxx@gmail.com",
        "to": ["bob@example.com"],
        # the attribution is whole again after quoted-printable decoding
        "text": "Hello\n\nSent from my iPhone\n\nOn Apr 3, 2012, at 4:19 PM, bob <bob@example.com> wrote:\n\n> Hi",
        "display_text": "Hello",
    },
    "reply-thunderbird-references-format-flowed.eml": {
        "message_id": "<473FFE27.20003@xxx.org>",
        "in_reply_to": "<348F04F142D69C21-291E56D292BC@xxxx.net>",
        "references": ["<473FF3B8.9020707@xxx.org>", "<348F04F142D69C21-291E56D292BC@xxxx.net>"],
        "subject": "Re: Test reply email",
        "from_name": "Testing",
        "from_email": "xxxxxxxx@xxx.org",
        "to": ["mikel@xxxx.net"],
        "date": datetime(2007, 11, 18, 19, 56, 7, tzinfo=tz(11)),
        "text": "Message body",
        "display_text": "Message body",
    },
    "attachment-pdf.eml": {
        "message_id": "<xxxx@xxxx.com>",
        # RFC 6532: raw UTF-8 in the Subject is legal and decodes without a warning
        "subject": "Another PDF with \U0001f389 Unicode chars in it \U0001f37f",
        "from_name": "Test Tester",
        "from_email": "xxxx@xxxx.com",
        "reply_to": "xxxx@xxxx.com",
        "to": ["xxxx@xxxx.com"],
        "text": "Just attaching another PDF, here, to see what the message looks like,\n"
        "and to see if I can figure out what is going wrong here.",
        "attachments": [("broken.pdf", "application/pdf", None)],
        "parse_warnings": [],
        "headers_ok": True,
    },
    "attachment-rfc2231-filename-iso-8859-1-encoded-word-subject.eml": {
        "message_id": "<E0F9311D-F469-4E7B-81BC-F240BD473566@37signals.com>",
        "subject": "Eelanalüüsi päring",
        "from_name": "Jeffrey Hardy",
        "from_email": "jeff@37signals.com",
        "text": "",
        "attachments": [("Eelanalüüsi päring.jpg", "image/jpeg", None)],
        "parse_warnings": [],
    },
    "html-only-multipart-related-inline-image.eml": {
        "message_id": "<4E2E5A48-1A2C-4450-8663-D41B451DA93E@makita.skynet>",
        "subject": "MIME test 1",
        "from_name": "James Hillyerd",
        "from_email": "james@makita.skynet",
        "to": ["greg@nobody.com"],
        "text": "Test of HTML section",
        "display_text": "Test of HTML section",
        "text_from_html": True,
        "html_contains": "Test of HTML section",
        "attachments": [("favicon.png", "image/png", "8B8481A2-25CA-4886-9B5A-8EB9115DD064@skynet")],
    },
    "charset-iso-2022-jp-body-utf8-encoded-word-subject.eml": {
        "message_id_synthesized": True,
        "subject": "まみむめも",
        "from_name": "Mikel Lindsaar",
        "from_email": "raasdnil@gmail.com",
        "to": ["raasdnil@gmail.com"],
        "text": "すみません。",
        "parse_warnings": [],
    },
    "charset-gb2312-declared-but-utf8-body.eml": {
        "subject": "代开各地增值税发票",
        "from_name": "张先生",
        "from_email": "baoguan@hotmail.com",
        "to": ["danglüe@email.com"],
        "text_startswith": "你好！我公司可代开各类增值税发票，17%专用发票",
        "parse_warnings": ["text/plain: charset GB2312 does not match the bytes, decoded as utf-8"],
        "headers_ok": True,
    },
    "autoreply-auto-submitted-auto-replied.eml": {
        "message_id": "<200503142138.j3QNaaaa222222@neko.example.org>",
        "subject": "Away until May 5",
        "from_email": "kijitora@example.net",
        "text_startswith": "I am currently away returning to the office on May 5th.",
    },
    "autoreply-exchange-out-of-office-windows-1252-qp.eml": {
        "message_id": "<8415797d5564f6c279db9815ab2819ca@mailserver1.com.neko.example.com>",
        "subject": "Automatic reply: Nyaan",
        "from_name": "Kijitora",
        "from_email": "kijitora@example.org",
        # quoted-printable soft breaks joined: "i=" + "ntermittent"
        "text_contains": "I will have intermittent access to email and phone",
    },
    "autoreply-apple-vacation-in-reply-to.eml": {
        "message_id": "<7e23258d-247f-479e-996d-e01f0f30af85-vac@apple.example.com>",
        "in_reply_to": "<25203A4E-F90F-4A14-BF51-3E7B9D39BE8E@libsisimai.org>",
        "subject": "Auto reply: Nyaan",
        "from_email": "kijitora@apple.example.com",
        "to": ["neko@libsisimai.org"],
        "text": "I'm only sleeping.",
    },
    "bounce-dsn-postfix-multipart-report.eml": {
        "subject": "Undelivered Mail Returned to Sender",
        "from_email": "MAILER-DAEMON@p351355.pool.example.ne.jp",
        "text_startswith": "This is the mail system at host p351355.pool.example.ne.jp.",
        "text_contains": "No such user",
        "parse_warnings": ["missing closing boundary"],
        "attachments": [],
    },
    "bounce-dsn-office365-windows-1252.eml": {
        "subject": "Undeliverable: Nyaan",
        "from_email": "postmaster@example.com",
        # =92 is a right single quote in Windows-1252
        "text_contains": "The email address wasn\u2019t found at the destination domain.",
    },
    "bounce-gmail-plain-text-not-dsn.eml": {
        "subject": "Delivery Status Notification (Failure)",
        "from_name": "Mail Delivery Subsystem",
        "from_email": "mailer-daemon@googlemail.com",
        "text_startswith": "Delivery to the following recipient failed permanently:",
    },
    "bounce-dsn-mailbox-full-rfc822-headers.eml": {
        "subject": "Delivery failure (abh@netpar.com.br)",
        "from_email": "postmaster@netpar.com.br",
        "text_contains": "User's mailbox quota exceeded",
        "attachments": [],  # the delivery-status "attachment" is a report part, not a file
    },
    "malformed-raw-8bit-headers-broken-boundary.eml": {
        "message_id_synthesized": True,
        "from_name_startswith": "Юникод запрещен",
        "from_email": "headers@gmail.com",
        "text": "Hello",
        "headers_ok": False,
        "warnings_contain": [
            "raw 8-bit bytes in the From header, decoded best-effort",
            "multipart boundary not found in the body",
            "text part declared base64 is not base64; kept its raw text",
        ],
    },
    "malformed-raw-cp1251-subject-blank-line-in-headers.eml": {
        "subject": "Узнай как зарабатывать от 1000$ в неделю!",
        "from_name": "test test",
        "from_email": "mr.test32@mail.ru",
        "to": ["mr.test32@yandex.ru"],
        "text_from_html": True,
        "html_contains": "nemetica.pl",
        "headers_ok": False,
        "warnings_contain": [
            "blank line inside the header block; the headers after it were recovered",
            "raw 8-bit bytes in the Subject header, decoded best-effort",
        ],
    },
    "malformed-bogus-charset-name.eml": {
        "subject": "Apply For Loans @ 2% Per Annum",
        "from_name": "Refinance",
        "from_email": "finance@khas.edu.tr",
        "reply_to": "private00@qq.com",
        "text_startswith": "We offer loans to private individuals",
        "parse_warnings": ["text/plain: unknown charset _iso-2022-jp$ESC, decoded as iso2022_jp"],
    },
    "malformed-missing-closing-boundary.eml": {
        "message_id": "<07B7061D-2676-487E-942E-C341CE4D13DC@makita.skynet>",
        "subject": "Attachment",
        "text": "A text section",
        "attachments": [("foo_9E5D72.zip", "application/x-zip-compressed", None)],
        "parse_warnings": ["missing closing boundary"],
    },
    "malformed-multipart-without-boundary-param.eml": {
        "subject": "64423",
        "from_name": "Allison Dunlap",
        "from_email": "xxx@example.com",
        "text": "Blah blah blah",
        "warnings_contain": ["multipart without boundary parameter"],
    },
    "malformed-nested-multipart-reused-boundary.eml": {
        "message_id": "<xxxx>",
        "subject": "XX",
        "from_email": "xx@xx.dk",
        "to": [],  # "To: XX" is not an address
        "text": "Some removed test.",
        "attachments": [("xx.gif", "image/gif", None)],
        "warnings_contain": ["parts after the closing boundary were recovered"],
    },
}


def test_every_fixture_has_expectations() -> None:
    assert sorted(EXPECTED) == ALL_EML


@pytest.mark.parametrize("name", ALL_EML)
def test_every_fixture_parses_to_its_expected_fields(name: str) -> None:
    parsed = parse_email(load(name))
    for key, expected in EXPECTED[name].items():
        if key == "message_id_synthesized":
            assert parsed.message_id_synthesized is expected
            if expected:
                assert parsed.message_id.endswith(f"@{SYNTHETIC_ID_DOMAIN}>")
        elif key.endswith("_startswith"):
            assert getattr(parsed, key.removesuffix("_startswith")).startswith(expected)
        elif key.endswith("_contains") and key != "warnings_contain":
            assert expected in (getattr(parsed, key.removesuffix("_contains")) or "")
        elif key == "warnings_contain":
            for warning in expected:
                assert warning in parsed.parse_warnings
        elif key == "attachments":
            assert [(a.filename, a.content_type, a.content_id) for a in parsed.attachments] == expected
        else:
            assert getattr(parsed, key) == expected, key


@pytest.mark.parametrize("name", ALL_EML)
def test_no_fixture_leaves_undecodable_characters_or_nul_in_text(name: str) -> None:
    parsed = parse_email(load(name))
    for value in (parsed.text, parsed.display_text, parsed.subject, parsed.from_name or ""):
        assert "\x00" not in value
        assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
        value.encode("utf-8")  # storable


@pytest.mark.parametrize("name", ALL_EML)
def test_every_fixture_with_a_body_has_text(name: str) -> None:
    parsed = parse_email(load(name))
    has_no_text = {
        "attachment-rfc2231-filename-iso-8859-1-encoded-word-subject.eml",  # one JPEG, nothing else
        "malformed-raw-cp1251-subject-blank-line-in-headers.eml",  # an image link, no words
    }
    if name in has_no_text:
        assert parsed.text.strip() == ""
    else:
        assert parsed.text.strip()
        assert parsed.display_text.strip()


def test_attachment_bytes_are_decoded() -> None:
    parsed = parse_email(load("attachment-pdf.eml"))
    (pdf,) = parsed.attachments
    assert pdf.content is not None and pdf.content.startswith(b"%PDF-1.4")
    assert pdf.size == len(pdf.content)
    zipped = parse_email(load("malformed-missing-closing-boundary.eml")).attachments[0]
    assert zipped.content == b"<html>\n"


def test_an_inline_image_keeps_its_content_id_and_png_bytes() -> None:
    (image,) = parse_email(load("html-only-multipart-related-inline-image.eml")).attachments
    assert image.content is not None and image.content.startswith(b"\x89PNG")


def test_the_message_id_is_the_same_from_the_header_block_alone() -> None:
    for name in ALL_EML:
        raw = load(name)
        assert message_id_of(raw)[0] == parse_email(raw).message_id


def test_a_missing_message_id_is_synthesised_from_content_stable_across_relays() -> None:
    raw = load("charset-iso-2022-jp-body-utf8-encoded-word-subject.eml")
    relayed = b"Received: from relay.example (relay.example [192.0.2.1])\r\n" + raw
    assert parse_email(raw).message_id == parse_email(relayed).message_id
    changed = raw.replace(b"Subject: ", b"Subject: x")
    assert parse_email(changed).message_id != parse_email(raw).message_id


def test_attachments_beyond_twenty_are_listed_as_skipped() -> None:
    parts = []
    for i in range(22):
        parts.append(
            f"--b\r\nContent-Type: application/octet-stream\r\n"
            f'Content-Disposition: attachment; filename="f{i}.bin"\r\n\r\nx{i}\r\n'
        )
    raw = (
        "From: a@example.com\r\nSubject: many\r\nMessage-ID: <m@example.com>\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nsee files\r\n" + "".join(parts) + "--b--\r\n"
    ).encode()
    parsed = parse_email(raw)
    assert len(parsed.attachments) == 20
    assert [s["filename"] for s in parsed.skipped_attachments] == ["f20.bin", "f21.bin"]
    assert parsed.skipped_attachments[0]["reason"] == "more than 20 attachments"
    assert any("2 attachment(s) skipped" in w for w in parsed.parse_warnings)


def test_an_attachment_over_the_size_limit_is_skipped_not_kept() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"--b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=big.zip\r\n\r\n"
        + b"A" * 2048
        + b"\r\n--b--\r\n"
    )
    parsed = parse_email(raw, max_attachment_bytes=1024)
    assert parsed.attachments == []
    assert parsed.skipped_attachments == [
        {
            "filename": "big.zip",
            "content_type": "application/zip",
            "size": 2048,
            "reason": "larger than 1024 bytes",
        }
    ]
    assert MAX_ATTACHMENT_BYTES == 10 * 1024 * 1024


def test_an_unknown_charset_falls_back_with_a_warning() -> None:
    raw = b'From: a@example.com\nSubject: x\nContent-Type: text/plain; charset="x-bogus"\n\ncaf\xe9 ol\xe9\n'
    parsed = parse_email(raw)
    assert parsed.text == "café olé"
    assert any(w.startswith("text/plain: unknown charset x-bogus, decoded as") for w in parsed.parse_warnings)


def test_iso_8859_1_is_read_as_windows_1252() -> None:
    assert decode_bytes(b"it\x92s \x80 5", "iso-8859-1", lambda _: None) == "it\u2019s \u20ac 5"


def test_mixed_line_endings_become_newlines() -> None:
    raw = b"From: a@example.com\r\nSubject: mixed\nContent-Type: text/plain\r\n\r\none\r\ntwo\nthree\rfour\n"
    assert parse_email(raw).text == "one\ntwo\nthree\nfour"


def test_format_flowed_lines_are_joined() -> None:
    raw = (
        b"From: a@example.com\nSubject: f\nContent-Type: text/plain; charset=utf-8; format=flowed\n\n"
        b"This is a long \nparagraph.\n\n> quoted \n> line\n-- \nsig\n"
    )
    assert parse_email(raw).text == "This is a long paragraph.\n\n> quoted line\n-- \nsig"


def test_encoded_words_split_inside_a_character_are_joined() -> None:
    # "é" (c3 a9) split across two adjacent B-words of one charset
    value = "=?UTF-8?B?Y2Fmw6k=?= =?UTF-8?Q?_cr=C3?= =?UTF-8?Q?=A8me?="
    assert decode_encoded_words(value, lambda _: None) == "café crème"


def test_garbage_never_raises_and_keeps_the_body_as_text() -> None:
    for raw in (b"", b"\x00\xff\xfe garbage", b"Subject: only headers", b"\n\nbody without headers"):
        parsed = parse_email(raw)
        assert isinstance(parsed.text, str)
    assert parse_email(b"\n\nbody without headers").text == "body without headers"


def test_a_naive_date_is_taken_as_utc() -> None:
    raw = b"From: a@example.com\nDate: Mon, 1 Jan 2024 10:00:00 -0000\nSubject: d\n\nx\n"
    assert parse_email(raw).date == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)


def test_an_unparseable_date_is_none_with_a_warning() -> None:
    parsed = parse_email(b"From: a@example.com\nDate: yesterday-ish\nSubject: d\n\nx\n")
    assert parsed.date is None
    assert "unparseable Date header" in parsed.parse_warnings
    assert parsed.headers_ok is False
