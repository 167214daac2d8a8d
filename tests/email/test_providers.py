"""Provider inbound webhooks (SendGrid Inbound Parse, Postmark) become raw RFC 822 bytes."""

from __future__ import annotations

import base64
import json
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from channels.email import parse_email, raw_from_postmark, raw_from_sendgrid
from channels.errors import MalformedPayloadError

WEBHOOKS = Path(__file__).parent / "fixtures" / "provider-webhooks"


def form_fields(body: bytes, boundary: str = "xYzZY") -> dict[str, str | bytes]:
    """Read a multipart/form-data body with the stdlib email parser, as the fixtures are bodies
    without their HTTP headers."""
    envelope = f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode() + body
    message = BytesParser(policy=policy.default).parsebytes(envelope)
    fields: dict[str, str | bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        fields[name] = payload
    return fields


def test_sendgrid_raw_mode_returns_the_email_field_unchanged() -> None:
    fields = form_fields((WEBHOOKS / "sendgrid-inbound-parse-raw-multipart-form.txt").read_bytes())
    raw = raw_from_sendgrid(fields)
    assert raw == fields["email"]
    parsed = parse_email(raw)
    assert parsed.subject == "Inbound Parse Test Raw Data"  # the header, not the `subject` field
    assert (parsed.from_name, parsed.from_email) == ("Example User", "test@example.com")
    assert parsed.to == ["inbound@inbound.inbound.com"]
    assert parsed.text == "Hello Twilio SendGrid!"
    assert parsed.html is not None and "<strong>Hello Twilio SendGrid!" in parsed.html


def test_sendgrid_default_mode_is_rebuilt_under_the_original_headers() -> None:
    fields = form_fields((WEBHOOKS / "sendgrid-inbound-parse-default-multipart-form.txt").read_bytes())
    assert fields["subject"] == b"Testing non-raw"
    parsed = parse_email(raw_from_sendgrid(fields))
    assert parsed.subject == "Inbound Parse Test Data"
    assert parsed.from_email == "test@example.com"
    assert parsed.to == ["inbound@inbound.example.com"]
    assert parsed.date is not None and parsed.date.isoformat() == "2016-08-10T18:10:13-07:00"
    assert parsed.text == "Hello Twilio SendGrid!"
    assert parsed.html is not None and "Hello Twilio SendGrid!" in parsed.html
    assert parsed.attachments == []
    assert parsed.parse_warnings == []


def test_sendgrid_default_mode_keeps_attachments_and_charsets() -> None:
    headers = b"From: Ann <ann@example.net>\nTo: support@example.com\nSubject: =?UTF-8?Q?Caf=C3=A9?=\n"
    headers += b"Message-ID: <sg@example.net>\nContent-Type: multipart/mixed; boundary=zzz\n"
    fields: dict[str, str | bytes] = {
        "headers": headers,
        "text": "Ol\xe9".encode("latin-1"),
        "charsets": json.dumps({"text": "iso-8859-1"}),
        "attachments": "1",
        "attachment-info": json.dumps({"attachment1": {"filename": "a.txt", "type": "text/plain"}}),
        "attachment1": b"file body",
    }
    parsed = parse_email(raw_from_sendgrid(fields))
    assert parsed.message_id == "<sg@example.net>"
    assert parsed.subject == "Café"
    assert parsed.text == "Olé"
    assert [(a.filename, a.content) for a in parsed.attachments] == [("a.txt", b"file body")]


def test_sendgrid_form_without_email_or_headers_is_malformed() -> None:
    with pytest.raises(MalformedPayloadError):
        raw_from_sendgrid({"to": "x@example.com"})


def test_postmark_parsed_fields_are_rebuilt_into_a_message() -> None:
    # Postmark's documented sample has no RawEmail: only parsed fields.
    payload = json.loads((WEBHOOKS / "postmark-inbound-webhook.json").read_text())
    assert "RawEmail" not in payload
    parsed = parse_email(raw_from_postmark(payload))
    assert parsed.message_id == "<CAGXpo2WKfxHWZ5UFYCR3H_J9SNMG+5AXUovfEFL6DjWBJSyZaA@mail.gmail.com>"
    assert parsed.subject == "Hi There"
    assert (parsed.from_name, parsed.from_email) == ("Bob Bobson", "bob@bob.com")
    assert parsed.to == ["api-hash@inbound.postmarkapp.com"]
    assert parsed.cc == ["sample.cc@emailDomain.com", "another.cc@emailDomain.com"]
    assert parsed.reply_to == "new-comment+sometoken@yeah.com"
    assert parsed.date is not None and parsed.date.isoformat() == "2012-04-05T16:59:01+02:00"
    assert parsed.text == "This is awesome!"
    assert parsed.html == "<p>We no speak americano</p>\n"
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("chart.png", "image/png"),
        ("chart2.png", "image/png"),
    ]
    first = parsed.attachments[0].content
    assert first == base64.b64decode(payload["Attachments"][0]["Content"])
    assert parsed.headers["x-spam-status"] == ["No"]
    assert parsed.parse_warnings == []


def test_postmark_raw_email_is_used_when_present() -> None:
    raw = "From: a@example.net\r\nSubject: raw\r\nMessage-ID: <r@example.net>\r\n\r\nbody\r\n"
    assert raw_from_postmark({"RawEmail": raw, "Subject": "ignored"}) == raw.encode()


def test_postmark_without_an_rfc_message_id_uses_postmarks_id() -> None:
    payload = {
        "FromFull": {"Email": "ann@example.net", "Name": "Ann"},
        "To": "support@example.com",
        "Subject": "Hi",
        "TextBody": "hello",
        "MessageID": "a8c1040e-db1c-4e18-ac79-bc5f64c7ce2c",
        "Headers": [
            {"Name": "In-Reply-To", "Value": "<d-1@example.com>"},
            {"Name": "Bad Name", "Value": "x"},
        ],
    }
    parsed = parse_email(raw_from_postmark(payload))
    assert parsed.message_id == "<a8c1040e-db1c-4e18-ac79-bc5f64c7ce2c@inbound.postmarkapp.com>"
    assert parsed.in_reply_to == "<d-1@example.com>"
    assert parsed.text == "hello"


def test_a_payload_that_is_not_postmarks_is_malformed() -> None:
    with pytest.raises(MalformedPayloadError):
        raw_from_postmark({"hello": "world"})
