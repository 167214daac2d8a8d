"""Compose campaigns: one open email ticket and one mail per distinct valid recipient, personalised,
sent by the workers at the config's rate; progress; unsubscribes; replies thread back; the CLI."""

from __future__ import annotations

import threading
import time
import uuid
from email.utils import make_msgid
from typing import Any

import pytest
from sqlalchemy import select

from channels.email.signature import SIGNATURE_HEADER, sign
from core.db import session_scope
from models import Delivery
from services import campaigns
from tests.email_outbound.conftest import Smtp, assert_paced, drain, wait_for

TEMPLATE = "Hi {{name | there}},\n\nyour **{{plan}}** plan renews on {{fields.renews}}.\n\n{{email}}"


def post_campaign(client: Any, tenant: Any, config_id: str, recipients: list[Any], **values: Any) -> Any:
    body = {"email_config_id": config_id, "email_subject": "Your {{plan}} plan", "message": TEMPLATE,
            "recipients": recipients, **values}
    return client.post(tenant.url("campaigns"), json=body, headers=tenant.headers)


def test_a_campaign_mails_each_distinct_valid_recipient_once_and_reports_the_rest(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    gone = client.post(tenant.url("email_unsubscribes"), json={"email": "Gone@Customer.test"}, headers=tenant.headers)
    assert gone.status_code == 201
    recipients = [
        {"email": "ann@customer.test", "name": "Ann Customer", "distinct_id": "user-ann",
         "fields": {"plan": "Pro", "renews": "1 May"}},
        {"email": "ANN@customer.test", "name": "Ann again", "fields": {"plan": "Team"}},
        {"email": "not an address", "fields": {"plan": "Pro"}},
        {"name": "No Address"},
        "bob@customer.test",
        {"email": "gone@customer.test", "fields": {"plan": "Pro"}},
        42,
    ]
    response = post_campaign(client, tenant, email_config["id"], recipients)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["recipients"] == 7 and created["queued"] == 2
    assert created["invalid"] == [
        {"row": 3, "email": "not an address", "reason": "invalid_email", "field": "email",
         "detail": "an address cannot contain spaces, brackets, commas or quotes"},
        {"row": 4, "email": None, "reason": "missing_email", "field": "email"},
        {"row": 7, "email": None, "reason": "not_an_object", "field": None},
    ]
    assert created["skipped"] == [
        {"row": 2, "email": "ANN@customer.test", "reason": "duplicate"},
        {"row": 6, "email": "gone@customer.test", "reason": "unsubscribed"},
    ]
    drain(worker)
    by_recipient = smtp.sink.by_recipient()
    assert sorted(by_recipient) == ["ann@customer.test", "bob@customer.test"]
    ann = by_recipient["ann@customer.test"][0].message
    assert ann["Subject"] == "Your Pro plan" and ann["To"] == "ann@customer.test"
    assert ann["In-Reply-To"] is None
    plain = ann.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == (
        "Hi Ann Customer,\n\nyour **Pro** plan renews on 1 May.\n\nann@customer.test\n")
    assert "<strong>Pro</strong>" in ann.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert ann["List-Unsubscribe"].startswith("<http") and ann["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # One line, not RFC 2047-encoded: clients read the URL between the angle brackets.
    (line,) = [x for x in by_recipient["ann@customer.test"][0].raw.split(b"\r\n") if x.startswith(b"List-Unsubscribe:")]
    assert line == f"List-Unsubscribe: {ann['List-Unsubscribe']}".encode() and b"=?" not in line
    token = ann["List-Unsubscribe"].split("token=")[1].rstrip(">")
    assert campaigns.read_unsubscribe_token(token) == (tenant.project_id, "ann@customer.test", uuid.UUID(created["id"]))
    bob = by_recipient["bob@customer.test"][0].message
    assert bob["Subject"] == "Your  plan" and "Hi there," in bob.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    progress = client.get(tenant.url(f"campaigns/{created['id']}"), headers=tenant.headers).json()
    assert {k: progress[k] for k in ("queued", "sent", "failed", "replied", "total")} == {
        "queued": 0, "sent": 2, "failed": 0, "replied": 0, "total": 2}
    tickets = {t["email"]: t for t in progress["tickets"]}
    assert sorted(tickets) == ["ann@customer.test", "bob@customer.test"]
    ticket = client.get(tenant.url(f"tickets/{tickets['ann@customer.test']['id']}"), headers=tenant.headers).json()
    assert ticket["status"] == "open" and ticket["channel_source"] == "email"
    assert ticket["email_subject"] == "Your Pro plan" and ticket["distinct_id"] == "user-ann"
    assert ticket["message_count"] == 1

    listed = client.get(tenant.url("campaigns"), headers=tenant.headers).json()
    assert [c["id"] for c in listed["results"]] == [created["id"]] and listed["results"][0]["sent"] == 2


def test_submitting_the_same_campaign_twice_mails_nobody_twice(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    recipients = [{"email": "ann@customer.test", "fields": {"plan": "Pro", "renews": "May"}}]
    first = post_campaign(client, tenant, email_config["id"], recipients)
    again = post_campaign(client, tenant, email_config["id"], recipients)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    drain(worker)
    assert len(smtp.sink.mails) == 1


@pytest.mark.parametrize(
    ("changes", "attr"),
    [
        ({"email_config_id": str(uuid.uuid4())}, "email_config_id"),
        ({"email_subject": " "}, "email_subject"),
        ({"message": ""}, "message"),
        ({"message": "Hello {{nmae}}"}, "message"),
        ({"recipients": []}, "recipients"),
        ({"recipients": "ann@customer.test"}, "recipients"),
    ],
)
def test_a_campaign_that_cannot_be_sent_answers_400_naming_the_field(
    client: Any, tenant: Any, email_config: dict[str, Any], changes: dict[str, Any], attr: str
) -> None:
    body = {"recipients": [{"email": "ann@customer.test", "fields": {"plan": "x", "renews": "y"}}], **changes}
    response = post_campaign(client, tenant, email_config["id"], **body)
    assert response.status_code == 400, response.text
    assert response.json()["attr"] == attr


def test_another_projects_email_config_cannot_be_used(
    client: Any, tenant: Any, other_tenant: Any, email_config: dict[str, Any]
) -> None:
    response = post_campaign(client, other_tenant, email_config["id"], ["ann@customer.test"], message="Hi",
                             email_subject="Hi")
    assert response.status_code == 400 and response.json()["code"] == "invalid_email_config"
    assert client.get(other_tenant.url("campaigns"), headers=other_tenant.headers).json()["count"] == 0


def test_a_csv_upload_becomes_a_campaign_with_spreadsheet_row_numbers(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    csv_bytes = (
        "\ufeffE-mail;Name;Plan;Renews\r\n"
        "ann@customer.test;Ann;Pro;1 May\r\n"
        "broken@;Broken;Pro;\r\n"
        ";;;\r\n"
        "zoe@customer.test;Zoë;Team;2 June\r\n"
    ).encode()
    response = client.post(
        tenant.url("campaigns"), headers=tenant.headers,
        data={"email_config_id": email_config["id"], "email_subject": "Your {{Plan}} plan", "message": TEMPLATE
              .replace("{{plan}}", "{{Plan}}").replace("{{fields.renews}}", "{{Renews}}")},
        files={"file": ("recipients.csv", csv_bytes, "text/csv")},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["recipients"] == 3 and created["queued"] == 2
    assert created["invalid"] == [{"row": 3, "email": "broken@", "reason": "invalid_email", "field": "email",
                                   "detail": "the domain is missing"}]
    drain(worker)
    mails = smtp.sink.by_recipient()
    assert sorted(mails) == ["ann@customer.test", "zoe@customer.test"]
    zoe = mails["zoe@customer.test"][0].message
    assert zoe["Subject"] == "Your Team plan"
    assert "Hi Zoë," in zoe.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    no_email_column = client.post(tenant.url("campaigns"), headers=tenant.headers,
                                  data={"email_config_id": email_config["id"], "email_subject": "x", "message": "y"},
                                  files={"file": ("r.csv", b"name,plan\nAnn,Pro\n", "text/csv")})
    assert no_email_column.status_code == 400 and no_email_column.json()["attr"] == "file"


def test_the_unsubscribe_link_needs_a_post_and_then_later_campaigns_skip_the_address(
    client: Any, tenant: Any, email_config: dict[str, Any], db: str
) -> None:
    token = campaigns.unsubscribe_token(project_id=tenant.project_id, email="Ann@Customer.test", campaign_id=None)
    url = f"/api/conversations/v1/email/unsubscribe?token={token}"
    page = client.get(url)
    assert page.status_code == 200 and "ann@customer.test" in page.text and "<form" in page.text
    assert client.get(tenant.url("email_unsubscribes"), headers=tenant.headers).json()["count"] == 0
    # RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click" to the URL.
    done = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    listed = client.get(tenant.url("email_unsubscribes"), headers=tenant.headers).json()
    assert [(r["email"], r["source"]) for r in listed["results"]] == [("ann@customer.test", "one_click")]
    assert client.post(url.replace(token[-5:], "xxxxx")).status_code == 400

    response = post_campaign(client, tenant, email_config["id"], ["ann@customer.test"], message="Hi",
                             email_subject="Hi")
    assert response.json()["queued"] == 0 and response.json()["skipped"][0]["reason"] == "unsubscribed"
    assert client.delete(tenant.url("email_unsubscribes/ann@customer.test"), headers=tenant.headers).status_code == 204
    assert client.delete(tenant.url("email_unsubscribes/ann@customer.test"), headers=tenant.headers).status_code == 404


def test_a_recipients_reply_threads_back_onto_their_own_ticket(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    response = post_campaign(client, tenant, email_config["id"], [
        {"email": "ann@customer.test", "fields": {"plan": "Pro", "renews": "May"}},
        {"email": "bob@customer.test", "fields": {"plan": "Team", "renews": "June"}},
    ])
    created = response.json()
    drain(worker)
    ours = smtp.sink.by_recipient()["bob@customer.test"][0].message["Message-ID"]
    reply = (
        f"From: Bob <bob@customer.test>\r\nTo: {email_config['inbound_address']}\r\n"
        f"Subject: Re: Your Team plan\r\nMessage-ID: {make_msgid(domain='customer.test')}\r\n"
        f"In-Reply-To: {ours}\r\nReferences: {ours}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nCan I switch to yearly billing?\r\n"
    ).encode()
    secret = _inbound_secret(email_config["id"])
    posted = client.post(f"/webhooks/email/{tenant.project_id}/inbound", content=reply,
                         headers={SIGNATURE_HEADER: sign(reply, secret), "Content-Type": "message/rfc822"})
    assert posted.status_code == 200, posted.text
    drain(worker)
    progress = client.get(tenant.url(f"campaigns/{created['id']}"), headers=tenant.headers).json()
    assert progress["replied"] == 1
    tickets = {t["email"]: t for t in progress["tickets"]}
    assert tickets["bob@customer.test"]["replied"] is True and tickets["ann@customer.test"]["replied"] is False
    bob = client.get(tenant.url(f"tickets/{tickets['bob@customer.test']['id']}/messages"),
                     headers=tenant.headers).json()["results"]
    assert [m["author_type"] for m in bob] == ["support", "customer"]
    assert "yearly billing" in bob[1]["content"]
    assert client.get(tenant.url("tickets/?channel_source=email"), headers=tenant.headers).json()["count"] == 2


def _inbound_secret(config_id: str) -> str:
    from services import email_configs

    with session_scope(read_only=True) as session:
        row = session.get(email_configs.EmailConfig, uuid.UUID(config_id))
        assert row is not None
        return str(email_configs.load_secrets(row)["inbound_secret"])


def test_a_campaign_is_sent_at_the_configs_rate(
    client: Any, tenant: Any, smtp: Smtp, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries are scheduled 60/rate seconds apart and reach the workers through the sweeper."""
    import workers.periodic

    monkeypatch.setattr(workers.periodic, "SWEEP_GRACE_SECONDS", 0.0, raising=False)
    config = client.post(tenant.url("email_configs"), json=smtp.settings(send_rate_per_minute=120),
                         headers=tenant.headers).json()
    stop = threading.Event()

    def sweeper() -> None:
        while not stop.wait(0.05):
            workers.periodic.sweep()

    thread = threading.Thread(target=sweeper, daemon=True)
    thread.start()
    try:
        created = post_campaign(client, tenant, config["id"], [f"user{n}@customer.test" for n in range(6)],
                                message="Hello", email_subject="Hello").json()
        with session_scope(read_only=True) as session:
            due = sorted(session.scalars(select(Delivery.next_attempt_at)
                                         .where(Delivery.campaign_id == uuid.UUID(created["id"]))))
        steps = [(b - a).total_seconds() for a, b in zip(due, due[1:], strict=False)]
        assert all(abs(step - 0.5) < 0.01 for step in steps), steps
        wait_for(lambda: len(smtp.sink.mails) == 6, timeout=20)
    finally:
        stop.set()
        thread.join()
    assert_paced(sorted(m.at for m in smtp.sink.mails), interval=0.5)  # 120 a minute



def test_compose_from_the_command_line_follows_the_campaign_with_a_progress_bar(
    tenant: Any, email_config: dict[str, Any], smtp: Smtp, worker: Any, tmp_path: Any
) -> None:
    csv_path = tmp_path / "recipients.csv"
    csv_path.write_text("email,name\nann@customer.test,Ann\nbob@customer.test,Bob\nnope,Nobody\n")
    message_path = tmp_path / "message.md"
    message_path.write_text("Hello {{name}}, we moved office.")
    lines: list[str] = []
    code = campaigns.run_compose_cli(
        csv_path=str(csv_path), project_name="Acme", email_config_id=email_config["id"], subject="We moved",
        message_file=str(message_path), timeout=20, poll_seconds=0.1, echo=lines.append,
    )
    assert code == 0, lines
    assert lines[0].endswith("2 queued of 3 rows, 1 invalid, 0 skipped")
    assert lines[1] == "  row 4: invalid_email (nope)"
    assert lines[-1] == "sent 2, failed 0, still queued 0"
    assert sorted(smtp.sink.by_recipient()) == ["ann@customer.test", "bob@customer.test"]
    bad = campaigns.run_compose_cli(
        csv_path=str(csv_path), project_name="No such project", email_config_id=email_config["id"], subject="x",
        message_file=str(message_path), echo=lines.append)
    assert bad == 2 and lines[-1].startswith("error: no project named")


def test_rendering_fills_fields_and_defaults(db: str) -> None:
    assert campaigns.render("Hi {{ name | friend }}, {{fields.plan}}/{{plan}} {{missing}}.",
                            {"name": "", "plan": "Pro"}) == "Hi friend, Pro/Pro ."
    assert campaigns.placeholders("{{a}} {{ b | c }} {{fields.d}}") == {"a", "b", "fields.d"}
    started = time.monotonic()
    rows = campaigns.recipients_from_csv(b"email\n" + b"".join(b"u%d@x.test\n" % n for n in range(20000)))
    assert len(rows) == 20000 and rows[0].row == 2 and time.monotonic() - started < 5


def _due_steps(campaign_id: str) -> list[float]:
    with session_scope(read_only=True) as session:
        due = sorted(session.scalars(select(Delivery.next_attempt_at)
                                     .where(Delivery.campaign_id == uuid.UUID(campaign_id))))
    return [round((b - a).total_seconds(), 3) for a, b in zip(due, due[1:], strict=False)]


def test_changing_a_configs_rate_respaces_its_waiting_campaign_mails(
    client: Any, tenant: Any, smtp: Smtp, db: str
) -> None:
    config = client.post(tenant.url("email_configs"), json=smtp.settings(send_rate_per_minute=60),
                         headers=tenant.headers).json()
    created = post_campaign(client, tenant, config["id"], [f"u{n}@customer.test" for n in range(4)],
                            message="Hi", email_subject="Hi").json()
    assert _due_steps(created["id"]) == [1.0, 1.0, 1.0]
    # A second campaign on the same config waits behind the first.
    second = post_campaign(client, tenant, config["id"], ["late@customer.test"], message="Later",
                           email_subject="Later").json()
    with session_scope(read_only=True) as session:
        first_last = max(session.scalars(select(Delivery.next_attempt_at)
                                         .where(Delivery.campaign_id == uuid.UUID(created["id"]))))
        second_due = session.scalar(select(Delivery.next_attempt_at)
                                    .where(Delivery.campaign_id == uuid.UUID(second["id"])))
    assert round((second_due - first_last).total_seconds(), 3) == 1.0
    client.patch(tenant.url(f"email_configs/{config['id']}"), json={"send_rate_per_minute": 600},
                 headers=tenant.headers)
    assert _due_steps(created["id"]) == [0.1, 0.1, 0.1]


def test_cancelling_a_campaign_withdraws_the_mails_not_sent_yet(
    client: Any, tenant: Any, smtp: Smtp, worker: Any
) -> None:
    config = client.post(tenant.url("email_configs"), json=smtp.settings(send_rate_per_minute=6),
                         headers=tenant.headers).json()
    created = post_campaign(client, tenant, config["id"], [f"u{n}@customer.test" for n in range(5)],
                            message="Hi", email_subject="Hi").json()
    drain(worker)  # the first is due at once; the next one in 10 s
    assert len(smtp.sink.mails) == 1
    cancelled = client.post(tenant.url(f"campaigns/{created['id']}/cancel"), headers=tenant.headers)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["withdrawn"] == 4 and body["cancelled"] == 4 and body["sent"] == 1 and body["queued"] == 0
    assert body["cancelled_at"] is not None
    progress = client.get(tenant.url(f"campaigns/{created['id']}"), headers=tenant.headers).json()
    assert [t["delivery_status"] for t in progress["tickets"]] == ["sent"]
    assert client.get(tenant.url("tickets/?channel_source=email"), headers=tenant.headers).json()["count"] == 1
    with session_scope(read_only=True) as session:
        from services.deliveries import due_deliveries

        assert due_deliveries(session=session) == []


def test_campaigns_need_ticket_write_to_send_and_ticket_read_to_follow(
    client: Any, tenant: Any, email_config: dict[str, Any]
) -> None:
    from tests.factories import make_key

    reader = {"Authorization": f"Bearer {make_key(tenant, ['ticket:read'])}"}
    denied = client.post(tenant.url("campaigns"), headers=reader, json={
        "email_config_id": email_config["id"], "email_subject": "Hi", "message": "Hi", "recipients": ["a@b.test"]})
    assert denied.status_code == 403
    assert client.get(tenant.url("campaigns"), headers=reader).status_code == 200
    assert client.get(tenant.url(f"campaigns/{uuid.uuid4()}"), headers=reader).status_code == 404
