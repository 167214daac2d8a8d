"""Our mail's Reply-To carries the ticket's token address when the inbound domain is routable,
and an answer to it that lost every threading header still lands on that ticket."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from channels.email.signature import sign
from tests.email_outbound.conftest import Smtp, drain
from tests.email_outbound.test_sending import email_ticket


@pytest.fixture
def routable_domain(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TICKETWIRE_INBOUND_DOMAIN", "in.acme.test")
    return "in.acme.test"


def test_a_reply_without_headers_to_the_reply_to_address_threads_onto_its_ticket(
    routable_domain: str, client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    assert email_config["inbound_address"].endswith("@" + routable_domain)
    ticket_id = email_ticket(tenant, email_config["id"])
    client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "Does it still burn?"},
                headers=tenant.headers)
    drain(worker)
    (mail,) = smtp.sink.mails
    reply_to = mail.message["Reply-To"]
    local, _, domain = email_config["inbound_address"].partition("@")
    assert reply_to.startswith(local + "+t") and reply_to.endswith("@" + domain)

    answer = EmailMessage()  # a client that dropped In-Reply-To and References
    answer["From"] = "Ann Customer <ann@customer.test>"
    answer["To"] = reply_to
    answer["Subject"] = "no longer"
    answer["Message-ID"] = "<answer-1@customer.test>"
    answer.set_content("It stopped burning, thanks.")
    raw = answer.as_bytes()
    response = client.post(f"/webhooks/email/{tenant.project_id}/inbound", content=raw,
                           headers={"X-Ticketwire-Signature": sign(raw, email_config["inbound_secret"])})
    assert response.status_code == 200, response.text
    drain(worker)
    tickets = client.get(tenant.url("tickets?channel_source=email"), headers=tenant.headers).json()
    assert tickets["count"] == 1
    texts = [m["content"] for m in client.get(tenant.url(f"tickets/{ticket_id}/messages"),
                                               headers=tenant.headers).json()["results"]]
    assert texts[-1] == "It stopped burning, thanks."


def test_without_a_routable_inbound_domain_no_reply_to_is_set(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    ticket_id = email_ticket(tenant, email_config["id"])
    client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "Hello"}, headers=tenant.headers)
    drain(worker)
    (mail,) = smtp.sink.mails
    assert mail.message["Reply-To"] is None
