"""Restore links: a one-time, email-keyed link moves a visitor's tickets to a new browser."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from core.clock import FrozenClock, use_clock
from core.db import session_scope
from services.widget import pending_visitor_emails
from tests.widget.support import (
    SITE,
    WIDGET,
    configure_widget,
    messages,
    new_session_id,
    send,
    tickets,
    widget_headers,
)


def _request_link(client, tenant, email, *, request_url=f"{SITE}/help?lang=en", origin=SITE):
    return client.post(f"{WIDGET}/restore/request", json={"email": email, "request_url": request_url},
                       headers=widget_headers(tenant, origin))


def _redeem(client, tenant, token, session_id):
    return client.post(f"{WIDGET}/restore", json={"restore_token": token, "widget_session_id": session_id,
                                                   "distinct_id": "d", "current_url": SITE},
                       headers=widget_headers(tenant))


def _mailed_token() -> tuple[str, dict]:
    with session_scope(read_only=True) as session:
        emails = [e for e in pending_visitor_emails(session=session) if e.kind == "restore_link"]
    assert len(emails) == 1
    url = emails[0].payload["restore_url"]
    return parse_qs(urlsplit(url).query)["ph_conv_restore"][0], {"email": emails[0].recipient_email, "url": url}


def test_a_restore_link_moves_the_addresss_tickets_to_the_new_browser(client, tenant):
    configure_widget(tenant, allowed_domains=["shop.example.com"])
    old_browser, new_browser = new_session_id(), new_session_id()
    ticket_id = send(client, tenant, old_browser, "help", traits={"email": "Grace@Example.com"}).json()["ticket_id"]
    response = _request_link(client, tenant, "grace@example.com")
    assert response.status_code == 200 and response.json()["ok"] is True
    token, mail = _mailed_token()
    assert mail["email"] == "grace@example.com"
    assert mail["url"].startswith(f"{SITE}/help?lang=en&ph_conv_restore=")
    redeemed = _redeem(client, tenant, token, new_browser)
    assert redeemed.status_code == 200
    assert redeemed.json() == {"status": "success", "widget_session_id": new_browser, "migrated_ticket_ids": [ticket_id]}
    assert tickets(client, tenant, new_browser).json()["results"][0]["id"] == ticket_id
    assert messages(client, tenant, ticket_id, new_browser).status_code == 200
    assert messages(client, tenant, ticket_id, old_browser).status_code == 403
    # One time only.
    assert _redeem(client, tenant, token, new_session_id()).json()["status"] == "used"


def test_an_expired_link_is_refused(client, tenant):
    configure_widget(tenant, allowed_domains=["shop.example.com"])
    send(client, tenant, new_session_id(), "help", traits={"email": "a@example.com"})
    clock = FrozenClock()
    previous = use_clock(clock)
    try:
        _request_link(client, tenant, "a@example.com")
        token, _ = _mailed_token()
        clock.advance(minutes=61)
        assert _redeem(client, tenant, token, new_session_id()).json() == {"status": "expired", "code": "token_expired"}
    finally:
        use_clock(previous)


def test_an_unknown_token_is_invalid(client, tenant):
    response = _redeem(client, tenant, "x" * 43, new_session_id())
    assert response.status_code == 200 and response.json() == {"status": "invalid", "code": "token_invalid"}


def test_an_address_without_tickets_gets_the_same_answer_and_no_email(client, tenant):
    configure_widget(tenant, allowed_domains=["shop.example.com"])
    response = _request_link(client, tenant, "nobody@example.com")
    assert response.status_code == 200 and response.json()["ok"] is True
    with session_scope(read_only=True) as session:
        assert pending_visitor_emails(session=session) == []


def test_restore_links_need_allowed_domains_and_the_pages_own_origin(client, tenant):
    send(client, tenant, new_session_id(), "help", traits={"email": "a@example.com"})
    # Without allowed domains a link could point anywhere: refused outright.
    assert _request_link(client, tenant, "a@example.com").json()["code"] == "restore_disabled"
    configure_widget(tenant, allowed_domains=["shop.example.com"])
    # A link to another site than the one asking, even an allowed one, is refused.
    refused = _request_link(client, tenant, "a@example.com", request_url="https://evil.example.net/")
    assert refused.status_code == 403 and refused.json()["code"] == "origin_mismatch"
    tricked = _request_link(client, tenant, "a@example.com", request_url="https://shop.example.com@evil.example.net/")
    assert tricked.status_code == 400
    assert _request_link(client, tenant, "not-an-address").status_code == 400


def test_using_one_link_voids_the_others_sent_to_the_same_address(client, tenant):
    configure_widget(tenant, allowed_domains=["shop.example.com"])
    send(client, tenant, new_session_id(), "help", traits={"email": "b@example.com"})
    clock = FrozenClock()
    previous = use_clock(clock)
    try:
        _request_link(client, tenant, "b@example.com")
        first, _ = _mailed_token()
        with session_scope() as session:
            from services.widget import mark_visitor_email_sent

            mark_visitor_email_sent(session=session, notification_id=pending_visitor_emails(session=session)[0].notification_id)
        clock.advance(seconds=5)
        _request_link(client, tenant, "b@example.com")
        second, _ = _mailed_token()
        assert _redeem(client, tenant, second, new_session_id()).json()["status"] == "success"
        assert _redeem(client, tenant, first, new_session_id()).json()["status"] == "used"
    finally:
        use_clock(previous)
