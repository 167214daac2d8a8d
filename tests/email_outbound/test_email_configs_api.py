"""The email configs API: SMTP/IMAP settings, write-only passwords, inbound address and secret."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from core.db import session_scope
from models import EmailConfig
from services import email_configs
from tests.email_outbound.conftest import Smtp
from tests.email_outbound.sink import Sink
from tests.factories import make_key


def create(client: Any, tenant: Any, **values: Any) -> Any:
    body = {"from_email": "support@acme.test", "from_name": "Acme Support", "smtp_host": "smtp.acme.test",
            "smtp_username": "acme", "smtp_password": "smtp-hunter2", **values}
    return client.post(tenant.url("email_configs"), json=body, headers=tenant.headers)


def test_creating_a_config_shows_the_inbound_address_and_secret_once_and_never_a_password(
    client: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKETWIRE_INBOUND_DOMAIN", "in.acme.test")
    response = create(client, tenant, imap_host="imap.acme.test", imap_username="acme", imap_password="imap-pw")
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["inbound_address"].startswith("support-") and created["inbound_address"].endswith("@in.acme.test")
    assert len(created["inbound_secret"]) >= 32
    assert created["smtp_port"] == 587 and created["smtp_security"] == "starttls"
    assert created["imap_port"] == 993 and created["imap_security"] == "tls" and created["imap_folder"] == "INBOX"
    assert created["smtp_password_set"] is True and created["imap_password_set"] is True
    assert created["send_rate_per_minute"] == 30
    assert created["inbound_webhook_url"].endswith(f"/webhooks/email/{tenant.project_id}/inbound")
    assert "smtp-hunter2" not in response.text and "imap-pw" not in response.text

    fetched = client.get(tenant.url(f"email_configs/{created['id']}"), headers=tenant.headers)
    assert fetched.status_code == 200
    assert "inbound_secret" not in fetched.json()
    listed = client.get(tenant.url("email_configs/"), headers=tenant.headers).json()
    assert [c["id"] for c in listed["results"]] == [created["id"]]
    for text in (fetched.text, json.dumps(listed)):
        assert "smtp-hunter2" not in text and "imap-pw" not in text and created["inbound_secret"] not in text

    with session_scope(read_only=True) as session:
        row = session.scalar(select(EmailConfig).where(EmailConfig.id == uuid.UUID(created["id"])))
        assert row is not None and row.secrets_enc
        assert "hunter2" not in row.secrets_enc and created["inbound_secret"] not in row.secrets_enc
        stored = email_configs.load_secrets(row)
        assert stored == {"smtp_password": "smtp-hunter2", "imap_password": "imap-pw",
                          "inbound_secret": created["inbound_secret"]}
        config = email_configs.adapter_config(row)
        assert config.smtp_password == "smtp-hunter2" and config.inbound_address == created["inbound_address"]


@pytest.mark.parametrize(
    ("values", "attr"),
    [
        ({"from_email": "not an address"}, "from_email"),
        ({"from_email": None}, "from_email"),
        ({"smtp_host": ""}, "smtp_host"),
        ({"smtp_security": "ssl"}, "smtp_security"),
        ({"smtp_port": 0}, "smtp_port"),
        ({"smtp_port": 70000}, "smtp_port"),
        ({"smtp_port": "25"}, "smtp_port"),
        ({"from_name": "Acme\r\nBcc: everyone@example.com"}, "from_name"),
        ({"inbound_address": "help+x@in.acme.test"}, "inbound_address"),
        ({"send_rate_per_minute": 0}, "send_rate_per_minute"),
        ({"imap_host": "imap.acme.test"}, "imap_username"),
        ({"smtp_pasword": "typo"}, "smtp_pasword"),
    ],
)
def test_invalid_settings_answer_400_naming_the_field(client: Any, tenant: Any, values: dict[str, Any], attr: str) -> None:
    response = create(client, tenant, **values)
    assert response.status_code == 400, response.text
    assert response.json()["attr"] == attr


def test_a_given_inbound_address_is_kept_lower_cased_and_may_not_be_taken_twice(
    client: Any, tenant: Any, other_tenant: Any
) -> None:
    first = create(client, tenant, inbound_address="Help@In.Acme.test")
    assert first.status_code == 201 and first.json()["inbound_address"] == "help@in.acme.test"
    again = create(client, other_tenant, inbound_address="help@in.acme.test")
    assert again.status_code == 400 and again.json()["code"] == "inbound_address_taken"


def test_patch_changes_only_what_it_names_and_null_removes_a_password(client: Any, tenant: Any) -> None:
    created = create(client, tenant).json()
    url = tenant.url(f"email_configs/{created['id']}")
    changed = client.patch(url, json={"from_name": "Acme Help", "smtp_security": "tls", "send_rate_per_minute": 600},
                           headers=tenant.headers)
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["from_name"] == "Acme Help" and body["smtp_security"] == "tls" and body["smtp_port"] == 465
    assert body["send_rate_per_minute"] == 600 and body["smtp_password_set"] is True
    assert body["inbound_address"] == created["inbound_address"]
    # Clients echo what GET showed: read-only fields are accepted and ignored.
    echoed = client.patch(url, json={**body, "smtp_password": None}, headers=tenant.headers)
    assert echoed.status_code == 200, echoed.text
    assert echoed.json()["smtp_password_set"] is False
    bad = client.patch(url, json={"smtp_port": -1}, headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["attr"] == "smtp_port"


def test_other_projects_configs_are_not_found_and_delete_removes_one(
    client: Any, tenant: Any, other_tenant: Any
) -> None:
    created = create(client, tenant).json()
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"from_name": "x"}} if method == "patch" else {}
        response = getattr(client, method)(other_tenant.url(f"email_configs/{created['id']}"),
                                           headers=other_tenant.headers, **kwargs)
        assert response.status_code == 404
    assert client.get(tenant.url("email_configs/not-a-uuid"), headers=tenant.headers).status_code == 404
    assert client.delete(tenant.url(f"email_configs/{created['id']}"), headers=tenant.headers).status_code == 204
    assert client.get(tenant.url(f"email_configs/{created['id']}"), headers=tenant.headers).status_code == 404


def test_reading_needs_integration_read_and_writing_integration_write(client: Any, tenant: Any) -> None:
    reader = {"Authorization": f"Bearer {make_key(tenant, ['integration:read'])}"}
    assert client.get(tenant.url("email_configs"), headers=reader).status_code == 200
    denied = client.post(tenant.url("email_configs"), json={"from_email": "a@b.test", "smtp_host": "h"}, headers=reader)
    assert denied.status_code == 403
    nobody = {"Authorization": f"Bearer {make_key(tenant, ['ticket:read'])}"}
    assert client.get(tenant.url("email_configs"), headers=nobody).status_code == 403


def test_rotating_the_inbound_secret_shows_the_new_one_once(client: Any, tenant: Any) -> None:
    created = create(client, tenant).json()
    rotated = client.post(tenant.url(f"email_configs/{created['id']}/rotate_inbound_secret"), headers=tenant.headers)
    assert rotated.status_code == 200
    secret = rotated.json()["inbound_secret"]
    assert secret != created["inbound_secret"]
    with session_scope(read_only=True) as session:
        row = email_configs.get_config(session=session, project_id=tenant.project_id, config_id=created["id"])
        assert email_configs.load_secrets(row)["inbound_secret"] == secret


def test_the_test_button_reports_the_servers_answer_and_records_health(client: Any, tenant: Any, smtp: Smtp) -> None:
    created = client.post(tenant.url("email_configs"), json=smtp.settings(), headers=tenant.headers).json()
    report = client.post(tenant.url(f"email_configs/{created['id']}/test"), headers=tenant.headers)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["ok"] is True and body["banner"].startswith("220") and "220" in body["detail"]
    health = client.get(tenant.url(f"email_configs/{created['id']}"), headers=tenant.headers).json()["health"]
    assert health["ok"] is True and health["sources"]["smtp"]["ok"] is True


def test_the_test_button_reports_a_refused_login_as_not_ok(client: Any, tenant: Any) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from tests.email_outbound.sink import free_port

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, auth_require_tls=False,
                            authenticator=lambda *args: AuthResult(success=False, handled=False))
    controller.start()
    try:
        created = client.post(tenant.url("email_configs"), headers=tenant.headers, json={
            "from_email": "support@acme.test", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none",
            "smtp_username": "acme", "smtp_password": "wrong"}).json()
        body = client.post(tenant.url(f"email_configs/{created['id']}/test"), headers=tenant.headers).json()
    finally:
        controller.stop()
    assert body["ok"] is False and body["detail"].startswith("535")
    assert "wrong" not in json.dumps(body)
    health = client.get(tenant.url(f"email_configs/{created['id']}"), headers=tenant.headers).json()["health"]
    assert health["ok"] is False and health["detail"].startswith("535")


def test_a_server_that_is_not_there_is_reported_not_ok(client: Any, tenant: Any) -> None:
    from tests.email_outbound.sink import free_port

    created = client.post(tenant.url("email_configs"), headers=tenant.headers, json={
        "from_email": "support@acme.test", "smtp_host": "127.0.0.1", "smtp_port": free_port(),
        "smtp_security": "none"}).json()
    body = client.post(tenant.url(f"email_configs/{created['id']}/test"), headers=tenant.headers).json()
    assert body["ok"] is False and body["detail"]


def test_a_config_is_found_by_its_inbound_address_whatever_the_case_and_plus_part(
    client: Any, tenant: Any, db: str
) -> None:
    created = create(client, tenant, inbound_address="help@in.acme.test").json()
    with session_scope() as session:
        for address in ("help@in.acme.test", "HELP@In.Acme.Test", "help+t12x0a1b2c3d4e@in.acme.test",
                        "<Help+anything@in.acme.test>"):
            found = email_configs.find_by_inbound_address(session=session, address=address)
            assert found is not None and str(found.id) == created["id"], address
        assert email_configs.find_by_inbound_address(session=session, address="other@in.acme.test") is None
        assert email_configs.find_by_inbound_address(session=session, address="not an address") is None
        assert [str(c.id) for c in email_configs.configs_for_project(session=session, project_id=tenant.project_id)] \
            == [created["id"]]
        email_configs.set_health(session=session, config_id=created["id"], ok=False, detail="LOGIN failed")
    health = client.get(tenant.url(f"email_configs/{created['id']}"), headers=tenant.headers).json()["health"]
    assert health["ok"] is False and health["detail"] == "LOGIN failed" and "imap" in health["sources"]


def test_a_ticket_without_a_config_has_no_email_adapter(db: str) -> None:
    from channels.errors import ChannelNotConfiguredError

    for thread in ({}, {"email_config_id": None}, {"email_config_id": "not-a-uuid"},
                   {"email_config_id": "0b6d2c8e-0000-4000-8000-000000000000"}):
        with pytest.raises(ChannelNotConfiguredError):
            email_configs.adapter_for_ticket(thread=thread)


def test_the_adapter_for_a_ticket_paces_per_config(client: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    created = create(client, tenant, send_rate_per_minute=120).json()
    adapter = email_configs.adapter_for_ticket(thread={"email_config_id": created["id"]})
    assert adapter.rate_per_second == 2.0
    assert adapter.rate_limit_key(None) == f"email:{created['id']}"  # type: ignore[arg-type]
    monkeypatch.setenv("TICKETWIRE_EMAIL_RATE_PER_MINUTE", "0")
    assert adapter.rate_per_second is None
