"""A team reply's files really reach the SMTP server (aiosmtpd) as MIME attachments: names
(non-ASCII ones RFC 2231-encoded, or raw UTF-8 under SMTPUTF8), types and bytes intact, inside
multipart/mixed around the text and HTML parts; private notes send nothing; the replay rule
still sends one mail."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.email_outbound.conftest import Smtp, drain
from tests.email_outbound.sink import smtp_server
from tests.factories import make_ticket

PDF = b"%PDF-1.7\n\x00\x01\x02\xff\xfe binary\r\n\r\n.\r\n trailer \x00"
EML = b"From: ann@customer.test\r\nSubject: the original\r\n\r\nforwarded text\r\n"
NOTES = "Grüße – 日本語\r\nline two\n".encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def email_ticket(tenant: Any, config_id: str, customer: str = "ann@customer.test") -> str:
    made = make_ticket(
        tenant.project_id, message=None, channel_source="email", channel_detail=None, status="open",
        customer_email=customer.lower(), customer_name="Ann", email_subject="Invoice question",
        email_from=customer, email_to=customer, email_config_id=uuid.UUID(config_id), cc_participants=[],
    )
    return str(made["id"])


FILES = [
    {"filename": "Käse – Rechnung März.pdf", "content_type": "application/pdf", "content_base64": b64(PDF)},
    {"filename": "日本語のメモ.txt", "content_type": "text/plain", "content_base64": b64(NOTES)},
    {"filename": "original.eml", "content_type": "message/rfc822", "content_base64": b64(EML)},
]


def post_reply(client: Any, tenant: Any, ticket_id: str, **body: Any) -> Any:
    response = client.post(tenant.url(f"tickets/{ticket_id}/reply"), headers=tenant.headers,
                           json={"message": "Your **invoice** is attached.", "attachments": FILES, **body})
    assert response.status_code in (200, 201), response.text
    return response


def test_a_reply_carries_its_files_as_real_mime_attachments(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    ticket_id = email_ticket(tenant, email_config["id"])
    sent = post_reply(client, tenant, ticket_id).json()
    drain(worker)
    (mail,) = smtp.sink.mails
    got = mail.message
    assert got.get_content_type() == "multipart/mixed"
    body, *files = got.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
    assert "Your **invoice** is attached." in got.get_body(("plain",)).get_content()
    assert [(f.get_filename(), f.get_content_type(), f.get_content_disposition()) for f in files] == [
        ("Käse – Rechnung März.pdf", "application/pdf", "attachment"),
        ("日本語のメモ.txt", "text/plain", "attachment"),
        # message/* cannot be base64-encoded (RFC 2046 §5.2.1): it travels as bytes.
        ("original.eml", "application/octet-stream", "attachment"),
    ]
    assert [f.get_payload(decode=True) for f in files] == [PDF, NOTES, EML]
    assert all(f["Content-Transfer-Encoding"] == "base64" for f in files)
    # No SMTPUTF8 here: the names travel as RFC 2231 parameters, the mail is 7-bit.
    assert b"filename*=utf-8''K%C3%A4se%20%E2%80%93%20Rechnung%20M%C3%A4rz.pdf" in mail.raw
    assert b"filename*=utf-8''%E6%97%A5%E6%9C%AC%E8%AA%9E%E3%81%AE%E3%83%A1%E3%83%A2.txt" in mail.raw
    assert mail.raw.isascii() and "SMTPUTF8" not in mail.mail_options
    listed = client.get(tenant.url(f"tickets/{ticket_id}/messages"), headers=tenant.headers).json()["results"]
    assert listed[-1]["id"] == sent["id"] and listed[-1]["delivery_status"] == "sent"
    assert [a["filename"] for a in listed[-1]["attachments"]] == [f["filename"] for f in FILES]


def test_files_sent_by_multipart_upload_arrive_the_same(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    ticket_id = email_ticket(tenant, email_config["id"])
    response = client.post(tenant.url(f"tickets/{ticket_id}/reply"), headers=tenant.headers,
                           data={"message": "Uploaded."},
                           files=[("attachments", ("Käse.pdf", PDF, "application/pdf")),
                                  ("attachments", ("photo.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 64, ""))])
    assert response.status_code == 201, response.text
    drain(worker)
    (mail,) = smtp.sink.mails
    files = list(mail.message.iter_attachments())
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [
        ("Käse.pdf", "application/pdf"), ("photo.jpg", "image/jpeg")]
    assert files[0].get_payload(decode=True) == PDF


def test_a_private_note_with_files_sends_no_mail(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    ticket_id = email_ticket(tenant, email_config["id"])
    note = post_reply(client, tenant, ticket_id, is_private=True).json()
    drain(worker)
    assert smtp.sink.mails == [] and len(note["attachments"]) == 3


def test_a_replayed_reply_with_files_is_mailed_once(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    ticket_id = email_ticket(tenant, email_config["id"])
    first = post_reply(client, tenant, ticket_id)
    again = post_reply(client, tenant, ticket_id)
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
    drain(worker)
    assert len(smtp.sink.mails) == 1


@pytest.fixture
def smtputf8_server() -> Iterator[Smtp]:
    with smtp_server(smtputf8=True) as (sink, port):
        yield Smtp(sink, port)


def test_under_smtputf8_the_file_names_travel_as_raw_utf8(
    client: Any, tenant: Any, smtputf8_server: Smtp, worker: Any
) -> None:
    config = client.post(tenant.url("email_configs"), json=smtputf8_server.settings(), headers=tenant.headers).json()
    ticket_id = email_ticket(tenant, config["id"], customer="用户@例子.广告")
    post_reply(client, tenant, ticket_id)
    drain(worker)
    (mail,) = smtputf8_server.sink.mails
    assert "SMTPUTF8" in mail.mail_options and mail.rcpt_tos == ["用户@例子.广告"]
    assert 'filename="Käse – Rechnung März.pdf"'.encode() in mail.raw  # RFC 6532
    files = list(mail.message.iter_attachments())
    assert [f.get_filename() for f in files] == [f["filename"] for f in FILES]
    assert [f.get_payload(decode=True) for f in files] == [PDF, NOTES, EML]
