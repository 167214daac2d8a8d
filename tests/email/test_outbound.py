"""The reply's MIME message: threading headers, subject, text + rendered HTML, attachments."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from channels.base import Attachment, OutboundReply
from channels.email import EmailAdapter, EmailConfig
from channels.email.outbound import build_reply_mime, make_message_id, render_markdown, reply_subject
from channels.errors import PermanentDeliveryError


def build(**overrides: object) -> EmailMessage:
    arguments: dict[str, object] = {
        "from_email": "support@acme.test",
        "from_name": "Acme Support",
        "to": "ann@customer.test",
        "subject": "Printer on fire",
        "text": "Hello **Ann**,\n\nplease see [the guide](https://acme.test/guide).",
        "message_id": "<d-1@acme.test>",
        "in_reply_to": "<c-2@customer.test>",
        "references": ["<c-1@customer.test>"],
        "date": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    arguments.update(overrides)
    return build_reply_mime(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Printer on fire", "Re: Printer on fire"),
        ("Re: Printer on fire", "Re: Printer on fire"),
        ("RE: Re: re:Printer", "Re: Printer"),
        ("AW: Drucker", "Re: Drucker"),
        ("Re[2]: x", "Re: x"),
        ("Regarding the invoice", "Re: Regarding the invoice"),
        ("", "Re: (no subject)"),
        (None, "Re: (no subject)"),
        ("line\r\nbreak", "Re: line break"),
    ],
)
def test_the_subject_gets_one_re_prefix(subject: str | None, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_our_message_id_is_the_delivery_id_at_the_from_domain() -> None:
    assert make_message_id("7f1c-42", "Support@Acme.Test") == "<7f1c-42@acme.test>"


def test_the_reply_carries_threading_headers_and_our_identity() -> None:
    message = build(cc=["bob@customer.test", "support@acme.test", "ann@customer.test"])
    assert message["From"] == "Acme Support <support@acme.test>"
    assert message["To"] == "ann@customer.test"
    assert message["Cc"] == "bob@customer.test"  # never ourselves, never the To again
    assert message["Subject"] == "Re: Printer on fire"
    assert message["Message-ID"] == "<d-1@acme.test>"
    assert message["In-Reply-To"] == "<c-2@customer.test>"
    assert message["References"] == "<c-1@customer.test> <c-2@customer.test>"
    assert message["Date"] == "Tue, 02 Jan 2024 03:04:05 +0000"
    assert message["X-Ticketwire-Delivery"] == "<d-1@acme.test>"


def test_the_body_is_text_plus_html_rendered_from_markdown() -> None:
    message = build()
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert plain.get_content() == "Hello **Ann**,\n\nplease see [the guide](https://acme.test/guide).\n"
    assert html.get_content_type() == "text/html"
    rendered = html.get_content()
    assert "<p>Hello <strong>Ann</strong>,</p>" in rendered
    assert '<a href="https://acme.test/guide">the guide</a>' in rendered


def test_markdown_rendering_escapes_html_and_refuses_script_links() -> None:
    rendered = render_markdown("<script>alert(1)</script>\n\n[x](javascript:alert(1)) `a<b` *i*\nline two")
    assert "<script>" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert 'href="javascript' not in rendered
    assert "<code>a&lt;b</code>" in rendered
    assert "<em>i</em><br />\nline two" in rendered


def test_attachments_make_a_mixed_message() -> None:
    message = build(
        attachments=[
            Attachment(filename="log.txt", content_type="text/plain", content=b"boom"),
            Attachment(filename="shot.png", content_type="image/png", content=b"\x89PNG", content_id="img1"),
            Attachment(filename="remote.pdf", url="https://files.test/remote.pdf"),  # no bytes: skipped
        ]
    )
    assert message.get_content_type() == "multipart/mixed"
    body, log, shot = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert (log.get_filename(), log.get_content()) == ("log.txt", "boom")
    assert (shot.get_filename(), shot["Content-ID"], shot.get_content_disposition()) == (
        "shot.png",
        "<img1>",
        "inline",
    )


def test_a_long_reference_chain_is_trimmed_keeping_root_and_recent() -> None:
    chain = [f"<m{i}@x.test>" for i in range(30)]
    message = build(references=chain, in_reply_to="<m29@x.test>")
    kept = str(message["References"]).split()
    assert len(kept) == 20
    assert kept[0] == "<m0@x.test>" and kept[-1] == "<m29@x.test>"


def test_no_recipient_is_a_permanent_error() -> None:
    with pytest.raises(PermanentDeliveryError):
        build(to="")


def test_the_message_survives_the_wire() -> None:
    message = build(from_name="Équipe Support", subject="Überweisung")
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes(policy=policy.SMTP))
    assert parsed["Subject"] == "Re: Überweisung"
    assert parsed["From"].addresses[0].display_name == "Équipe Support"


def test_the_adapter_builds_the_reply_from_the_ticket_thread() -> None:
    adapter = EmailAdapter(
        EmailConfig(from_email="support@acme.test", from_name="Acme", smtp_security="none")
    )
    reply = OutboundReply(
        delivery_id="dlv-9",
        ticket_id="t-1",
        ticket_number=12,
        text="Fixed.",
        thread={
            "email_to": "ann@customer.test",
            "email_subject": "Re: Printer",
            "in_reply_to": "<c-2@customer.test>",
            "references": "<c-1@customer.test> <c-2@customer.test>",
            "cc_participants": ["bob@customer.test"],
        },
        attachments=(Attachment(filename="big.zip", url="https://files.test/big.zip"),),
    )
    message = adapter.build_reply(reply)
    assert message["Message-ID"] == "<dlv-9@acme.test>"  # stable across retries of this delivery
    assert message["Subject"] == "Re: Printer"
    assert message["Cc"] == "bob@customer.test"
    assert message["References"] == "<c-1@customer.test> <c-2@customer.test>"
    plain = next(iter(message.iter_parts()))
    assert plain.get_content() == "Fixed.\n\nbig.zip: https://files.test/big.zip\n"
    explicit = adapter.build_reply(
        OutboundReply(
            delivery_id="dlv-9",
            ticket_id="t-1",
            ticket_number=12,
            text="x",
            thread={"email_to": "ann@customer.test", "email_message_id": "<stored@acme.test>"},
        )
    )
    assert explicit["Message-ID"] == "<stored@acme.test>"
