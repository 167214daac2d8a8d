"""The HTTP inbound paths: the signed raw endpoint and the provider webhooks, through the
worker into tickets; the original and the attachments read back."""

from __future__ import annotations

import base64
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from channels.email.signature import SIGNATURE_HEADER, sign
from tests.email_inbound.conftest import (
    INBOUND,
    Mailroom,
    create_config,
    deliver,
    drain,
    mail,
    messages,
    post_mail,
    raw_events,
    ticket_row,
    tickets,
    unique_id,
)

WEBHOOKS = Path(__file__).resolve().parent.parent / "email" / "fixtures" / "provider-webhooks"


def test_a_signed_raw_mail_becomes_an_email_ticket_with_its_fields(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    raw = mail(sender="Carla Customer <Carla@Customer.test>", cc="Dan <dan@customer.test>, help@inbound.acme.test",
               subject="Printer on fire", body="It is on fire.\n\nCarla")
    response = post_mail(client, mailroom, raw)
    assert response.status_code == 200 and response.json() == {"ok": True, "duplicate": False}
    drain(worker)
    [ticket] = tickets(client, mailroom)
    assert ticket["channel_source"] == "email" and ticket["channel_detail"] is None
    assert ticket["status"] == "new" and ticket["unread_team_count"] == 1
    detail = client.get(mailroom.tenant.url(f"tickets/{ticket['id']}"), headers=mailroom.tenant.headers).json()
    assert detail["email_subject"] == "Printer on fire"
    assert detail["email_from"] == "carla@customer.test" and detail["email_to"] == "Carla@Customer.test"
    assert detail["cc_participants"] == ["dan@customer.test"]
    assert detail["person"]["properties"]["email"] == "carla@customer.test"
    row = ticket_row(ticket["id"])
    assert (row["customer_email"], row["customer_name"]) == ("carla@customer.test", "Carla Customer")
    assert str(row["email_config_id"]) == mailroom.config_id
    [message] = messages(client, mailroom, ticket["id"])
    assert message["author_type"] == "customer" and message["content"].startswith("It is on fire.")


def test_the_same_mail_posted_twice_is_stored_once(client: Any, mailroom: Mailroom, worker: Any) -> None:
    raw = mail(message_id=unique_id())
    assert post_mail(client, mailroom, raw).json()["duplicate"] is False
    assert post_mail(client, mailroom, raw).json()["duplicate"] is True
    drain(worker)
    assert len(tickets(client, mailroom)) == 1
    assert len(raw_events(client, mailroom)) == 1


def test_a_mail_without_message_id_gets_a_stable_synthetic_one(client: Any, mailroom: Mailroom, worker: Any) -> None:
    raw = b"From: Carla <carla@customer.test>\r\nTo: help@inbound.acme.test\r\nSubject: no id\r\n\r\nHello there\r\n"
    assert post_mail(client, mailroom, raw).json()["duplicate"] is False
    assert post_mail(client, mailroom, raw).json()["duplicate"] is True
    drain(worker)
    [event] = raw_events(client, mailroom)
    assert event["event_id"].endswith("@ticketwire.invalid>") and event["status"] == "processed"
    assert len(tickets(client, mailroom)) == 1


def test_a_bad_or_missing_signature_is_refused_and_nothing_is_stored(client: Any, mailroom: Mailroom) -> None:
    raw = mail()
    url = f"/webhooks/email/{mailroom.project_id}/inbound"
    assert client.post(url, content=raw, headers={SIGNATURE_HEADER: sign(raw, "wrong")}).status_code == 401
    assert client.post(url, content=raw).status_code == 401
    tampered = client.post(url, content=raw + b"x", headers={SIGNATURE_HEADER: sign(raw, mailroom.inbound_secret)})
    assert tampered.status_code == 401 and tampered.json()["code"] == "invalid_signature"
    assert raw_events(client, mailroom) == []


def test_a_project_without_email_config_answers_404(client: Any, tenant: Any) -> None:
    raw = mail()
    response = client.post(f"/webhooks/email/{tenant.project_id}/inbound", content=raw,
                            headers={SIGNATURE_HEADER: sign(raw, "anything")})
    assert response.status_code == 404


def test_an_empty_body_is_malformed(client: Any, mailroom: Mailroom) -> None:
    assert post_mail(client, mailroom, b"  \r\n").status_code == 400


def test_any_config_secret_of_the_project_is_accepted_and_names_the_receiving_config(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    second = create_config(client, mailroom.tenant, from_email="sales@acme.test",
                           inbound_address="sales@inbound.acme.test")
    deliver_raw = mail(to="sales@acme.test", subject="Quote please")
    response = post_mail(client, mailroom, deliver_raw, secret=second["inbound_secret"])
    assert response.status_code == 200
    drain(worker)
    [ticket] = tickets(client, mailroom)
    assert str(ticket_row(ticket["id"])["email_config_id"]) == second["id"]


def test_the_full_original_and_the_attachments_can_be_downloaded(client: Any, mailroom: Mailroom, worker: Any) -> None:
    pdf = b"%PDF-1.4 not really a pdf\n" * 10
    raw = mail(body="See attached.", attachments=[("report.pdf", "application/pdf", pdf),
                                                   ("café.txt", "text/plain", "crème".encode())])
    deliver(client, mailroom, worker, raw)
    [ticket] = tickets(client, mailroom)
    [message] = messages(client, mailroom, ticket["id"])
    listed = message["attachments"]
    assert [(a["filename"], a["content_type"], a["size"]) for a in listed] == [
        ("report.pdf", "application/pdf", len(pdf)), ("café.txt", "text/plain", len("crème".encode()))]
    base = mailroom.tenant.url(f"tickets/{ticket['id']}/messages/{message['id']}")
    full = client.get(f"{base}/full_email", headers=mailroom.tenant.headers)
    assert full.status_code == 200 and full.headers["content-type"].startswith("message/rfc822")
    assert full.content == raw
    first = client.get(f"{base}/attachments/0", headers=mailroom.tenant.headers)
    assert first.status_code == 200 and first.content == pdf
    assert first.headers["content-type"] == "application/pdf"
    assert 'filename="report.pdf"' in first.headers["content-disposition"]
    assert client.get(listed[1]["url"], headers=mailroom.tenant.headers).content == "crème".encode()
    assert client.get(f"{base}/attachments/2", headers=mailroom.tenant.headers).status_code == 404


def test_the_original_is_not_served_to_another_project(
    client: Any, mailroom: Mailroom, worker: Any, other_tenant: Any
) -> None:
    deliver(client, mailroom, worker, mail())
    [ticket] = tickets(client, mailroom)
    [message] = messages(client, mailroom, ticket["id"])
    path = f"tickets/{ticket['id']}/messages/{message['id']}/full_email"
    assert client.get(other_tenant.url(path), headers=other_tenant.headers).status_code == 404
    assert client.get(mailroom.tenant.url(path), headers=other_tenant.headers).status_code == 404


def _multipart(path: Path) -> tuple[bytes, dict[str, str]]:
    # SendGrid's published samples are saved with LF line endings; on the wire multipart
    # framing uses CRLF (RFC 7578 / RFC 2046), which python-multipart insists on.
    body = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return body, {"Content-Type": "multipart/form-data; boundary=xYzZY"}


def test_sendgrid_raw_mode_posts_become_tickets_with_the_secret_as_basic_auth(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    body, headers = _multipart(WEBHOOKS / "sendgrid-inbound-parse-raw-multipart-form.txt")
    token = base64.b64encode(f"sendgrid:{mailroom.inbound_secret}".encode()).decode()
    url = f"/webhooks/email/{mailroom.project_id}/inbound/sendgrid"
    response = client.post(url, content=body, headers={**headers, "Authorization": f"Basic {token}"})
    assert response.status_code == 200, response.text
    drain(worker)
    [ticket] = tickets(client, mailroom)
    [message] = messages(client, mailroom, ticket["id"])
    assert message["content"] == "Hello Twilio SendGrid!"
    detail = client.get(mailroom.tenant.url(f"tickets/{ticket['id']}"), headers=mailroom.tenant.headers).json()
    assert detail["email_subject"] == "Inbound Parse Test Raw Data"


def test_sendgrid_parsed_mode_posts_are_rebuilt_with_the_secret_as_query_parameter(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    body, headers = _multipart(WEBHOOKS / "sendgrid-inbound-parse-default-multipart-form.txt")
    url = f"/webhooks/email/{mailroom.project_id}/inbound/sendgrid?secret={mailroom.inbound_secret}"
    assert client.post(url, content=body, headers=headers).status_code == 200
    drain(worker)
    [ticket] = tickets(client, mailroom)
    [message] = messages(client, mailroom, ticket["id"])
    assert message["content"] == "Hello Twilio SendGrid!"


def test_postmark_posts_become_tickets_with_their_attachments(client: Any, mailroom: Mailroom, worker: Any) -> None:
    body = (WEBHOOKS / "postmark-inbound-webhook.json").read_bytes()
    url = f"/webhooks/email/{mailroom.project_id}/inbound/postmark?secret={mailroom.inbound_secret}"
    response = client.post(url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    drain(worker)
    [ticket] = tickets(client, mailroom)
    [message] = messages(client, mailroom, ticket["id"])
    assert message["content"].strip()
    assert [a["filename"] for a in message["attachments"]]
    full = client.get(mailroom.tenant.url(f"tickets/{ticket['id']}/messages/{message['id']}/full_email"),
                      headers=mailroom.tenant.headers)
    rebuilt = BytesParser(policy=policy.default).parsebytes(full.content)
    assert rebuilt["Message-ID"]


def test_provider_posts_without_the_secret_are_refused(client: Any, mailroom: Mailroom) -> None:
    body, headers = _multipart(WEBHOOKS / "sendgrid-inbound-parse-raw-multipart-form.txt")
    base = f"/webhooks/email/{mailroom.project_id}/inbound"
    assert client.post(f"{base}/sendgrid", content=body, headers=headers).status_code == 401
    assert client.post(f"{base}/sendgrid?secret=nope", content=body, headers=headers).status_code == 401
    assert client.post(f"{base}/postmark", content=b"{}", headers={"Content-Type": "application/json"}).status_code == 401
    assert raw_events(client, mailroom) == []


def test_malformed_provider_bodies_answer_400(client: Any, mailroom: Mailroom) -> None:
    base = f"/webhooks/email/{mailroom.project_id}/inbound"
    query = f"?secret={mailroom.inbound_secret}"
    assert client.post(f"{base}/postmark{query}", content=b"not json").status_code == 400
    assert client.post(f"{base}/postmark{query}", content=b'{"Nothing": 1}').status_code == 400
    empty_form = b"--xYzZY\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n" + INBOUND.encode() + b"\r\n--xYzZY--\r\n"
    response = client.post(f"{base}/sendgrid{query}", content=empty_form,
                           headers={"Content-Type": "multipart/form-data; boundary=xYzZY"})
    assert response.status_code == 400
