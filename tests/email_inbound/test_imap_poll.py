"""IMAP polling against a real Dovecot: resume by UID with UIDVALIDITY checked, nothing seen
before it is stored, one unreadable message quarantined, a 1,000-message backlog with a
server restart in the middle taken in exactly once, an unreachable or refusing mailbox
shown as unhealthy in the email configs API and in /metrics."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from channels.email.imap import ImapMailbox, ImapSettings
from core.db import session_scope
from models import RawEvent
from services.imap_poll import PollResult, from_db_u32, poll_mailbox, to_db_u32
from tests.email_inbound.conftest import Mailroom, create_config, drain, mail, raw_events, tickets
from tests.email_inbound.dovecot import Dovecot, Mailbox
from tests.services import free_port


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    server.start()
    yield server
    server.close()


@pytest.fixture
def imap_user(dovecot: Dovecot) -> Mailbox:
    if dovecot.proc is None or dovecot.proc.poll() is not None:
        dovecot.start()  # a test that stopped it failed before starting it again
    return dovecot.add_user()


def imap_room(client: Any, tenant: Any, user: Mailbox, **fields: Any) -> Mailroom:
    settings = {"imap_host": "127.0.0.1", "imap_port": user.server.port, "imap_security": "none",
                "imap_username": user.username, "imap_password": user.password, "imap_folder": "INBOX", **fields}
    created = create_config(client, tenant, **settings)
    return Mailroom(tenant, created["id"], created["inbound_address"], created["inbound_secret"])


def numbered(count: int, start: int = 0) -> list[bytes]:
    return [mail(subject=f"Backlog {i}", body=f"Message number {i}", message_id=f"<backlog-{i}@customer.test>",
                 sender=f"Customer {i} <c{i}@customer.test>") for i in range(start, start + count)]


def email_events(project_id: int) -> list[tuple[str, str]]:
    with session_scope(read_only=True) as session:
        return [(e, s) for e, s in session.execute(
            select(RawEvent.event_id, RawEvent.status).where(RawEvent.project_id == project_id,
                                                             RawEvent.channel == "email"))]


def health(client: Any, room: Mailroom) -> dict[str, Any]:
    response = client.get(room.tenant.url(f"email_configs/{room.config_id}"), headers=room.tenant.headers)
    assert response.status_code == 200, response.text
    return dict(response.json()["health"] or {})


def test_new_mail_in_the_mailbox_becomes_tickets_and_is_marked_seen_only_after_storing(
    client: Any, tenant: Any, imap_user: Mailbox, worker: Any
) -> None:
    room = imap_room(client, tenant, imap_user)
    imap_user.append(numbered(3))
    with ImapMailbox(ImapSettings(host="127.0.0.1", port=imap_user.server.port, security="none",
                                  username=imap_user.username, password=imap_user.password)) as peek:
        peek.open()
        assert sorted(peek.fetch([1, 2, 3])) == [1, 2, 3]
    assert imap_user.seen_uids() == set()  # BODY.PEEK[]: reading marks nothing
    result = poll_mailbox(config_id=uuid.UUID(room.config_id))
    assert (result.ok, result.stored, result.quarantined, result.last_uid) == (True, 3, 0, 3)
    assert imap_user.seen_uids() == {1, 2, 3}
    drain(worker)
    assert sorted(t["message_count"] for t in tickets(client, room)) == [1, 1, 1]
    assert health(client, room)["ok"] is True
    again = poll_mailbox(config_id=uuid.UUID(room.config_id))
    assert (again.stored, again.duplicates) == (0, 0)  # resumed after UID 3: nothing re-read
    imap_user.append(numbered(2, start=3))
    later = poll_mailbox(config_id=uuid.UUID(room.config_id))
    assert (later.stored, later.last_uid) == (2, 5)


def test_an_unreadable_message_is_quarantined_and_the_rest_are_stored(
    client: Any, tenant: Any, imap_user: Mailbox, worker: Any
) -> None:
    room = imap_room(client, tenant, imap_user)
    imap_user.append(numbered(5))
    # Dovecot cannot open message 3's file: it answers with an error and drops the connection.
    imap_user.message_files()[2].chmod(0)
    result = poll_mailbox(config_id=uuid.UUID(room.config_id), batch_size=10)
    assert (result.ok, result.stored, result.quarantined, result.last_uid) == (True, 4, 1, 5)
    assert imap_user.seen_uids() == {1, 2, 4, 5}  # the quarantined one is left unread
    drain(worker)
    assert len(tickets(client, room)) == 4
    [failed] = raw_events(client, room, status="failed")
    assert failed["event_id"].startswith(f"imap:{room.config_id}:") and failed["event_id"].endswith(":3")
    assert "could not return the message" in failed["error"]


def test_a_message_over_the_size_limit_is_quarantined(client: Any, tenant: Any, imap_user: Mailbox) -> None:
    room = imap_room(client, tenant, imap_user)
    imap_user.append([mail(body="small"), mail(body="x" * 30_000), mail(body="small too")])
    result = poll_mailbox(config_id=uuid.UUID(room.config_id), max_message_bytes=20_000)
    assert (result.stored, result.quarantined) == (2, 1)
    [failed] = raw_events(client, room, status="failed")
    assert "over the 20000 byte limit" in failed["error"]


def test_a_backlog_of_a_thousand_with_a_restart_in_the_middle_is_taken_in_exactly_once(
    client: Any, tenant: Any, imap_user: Mailbox, dovecot: Dovecot, worker: Any
) -> None:
    room = imap_room(client, tenant, imap_user)
    assert imap_user.append(numbered(1000)) == 1000
    config_id = uuid.UUID(room.config_id)
    batches: list[int] = []

    def stop_server_after_three_batches(result: PollResult) -> None:
        batches.append(result.last_uid)
        if len(batches) == 3:
            dovecot.stop()

    first = poll_mailbox(config_id=config_id, batch_size=100, timeout=5, after_batch=stop_server_after_three_batches)
    assert not first.ok and first.stored == 300 and "stopped answering" in (first.detail or "")
    assert health(client, room)["ok"] is False
    dovecot.start()

    def restart_once(result: PollResult) -> None:
        if result.last_uid == 500:
            dovecot.restart()  # the next batch's FETCH meets a dropped connection and reconnects

    second = poll_mailbox(config_id=config_id, batch_size=100, timeout=5, after_batch=restart_once)
    assert second.ok, second.detail
    assert (second.stored, second.duplicates, second.last_uid) == (700, 0, 1000)
    events = email_events(room.project_id)
    assert len(events) == 1000 and {e for e, _ in events} == {f"<backlog-{i}@customer.test>" for i in range(1000)}
    drain(worker, timeout=120)
    with session_scope(read_only=True) as session:
        from models import Message, Ticket

        assert session.scalar(select(func.count()).select_from(Ticket).where(Ticket.project_id == room.project_id)) == 1000
        assert session.scalar(select(func.count()).select_from(Message).where(Message.project_id == room.project_id)) == 1000
    assert health(client, room)["ok"] is True


def test_a_changed_uidvalidity_reads_the_folder_again_without_duplicates(
    client: Any, tenant: Any, imap_user: Mailbox
) -> None:
    imap_user.create_folder("Support")
    room = imap_room(client, tenant, imap_user, imap_folder="Support")
    imap_user.append(numbered(3), folder="Support")
    first = poll_mailbox(config_id=uuid.UUID(room.config_id))
    assert first.stored == 3
    imap_user.recreate_folder("Support")
    imap_user.append(numbered(4), folder="Support")  # the same three again (new UIDs) and one new
    second = poll_mailbox(config_id=uuid.UUID(room.config_id))
    assert second.uidvalidity_changed and second.uidvalidity != first.uidvalidity
    assert (second.stored, second.duplicates) == (1, 3)
    assert len(email_events(room.project_id)) == 4


def test_a_rejected_login_shows_as_unhealthy_in_the_api_and_metrics(
    client: Any, tenant: Any, imap_user: Mailbox
) -> None:
    room = imap_room(client, tenant, imap_user)
    client.patch(tenant.url(f"email_configs/{room.config_id}"), json={"imap_password": "wrong"}, headers=tenant.headers)
    result = poll_mailbox(config_id=uuid.UUID(room.config_id))
    assert not result.ok and (result.detail or "").startswith("login rejected")
    state = health(client, room)
    assert state["ok"] is False and "login rejected" in state["detail"] and "wrong" not in state["detail"]
    metrics = client.get("/metrics").text
    assert 'ticketwire_channel_healthy{channel="email"} 0.0' in metrics


def test_a_mailbox_that_stops_answering_shows_as_unhealthy_and_recovers(
    client: Any, tenant: Any, imap_user: Mailbox
) -> None:
    # A server that accepts the connection and never says anything.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    room = imap_room(client, tenant, imap_user)
    client.patch(tenant.url(f"email_configs/{room.config_id}"), json={"imap_port": silent.getsockname()[1]},
                 headers=tenant.headers)
    try:
        result = poll_mailbox(config_id=uuid.UUID(room.config_id), timeout=0.5)
    finally:
        silent.close()
    assert not result.ok and "timed out" in (result.detail or "")
    assert health(client, room)["ok"] is False
    client.patch(tenant.url(f"email_configs/{room.config_id}"), json={"imap_port": imap_user.server.port},
                 headers=tenant.headers)
    assert poll_mailbox(config_id=uuid.UUID(room.config_id)).ok
    assert health(client, room)["ok"] is True


def test_a_refused_connection_is_unhealthy(client: Any, tenant: Any, imap_user: Mailbox) -> None:
    room = imap_room(client, tenant, imap_user)
    client.patch(tenant.url(f"email_configs/{room.config_id}"), json={"imap_port": free_port()}, headers=tenant.headers)
    result = poll_mailbox(config_id=uuid.UUID(room.config_id), timeout=2)
    assert not result.ok and "connection refused" in (result.detail or "")


def test_two_polls_of_one_mailbox_never_run_at_once(client: Any, tenant: Any, imap_user: Mailbox) -> None:
    room = imap_room(client, tenant, imap_user)
    imap_user.append(numbered(20))
    config_id = uuid.UUID(room.config_id)
    inner: list[PollResult] = []
    entered = threading.Event()

    def poll_again(result: PollResult) -> None:
        if not entered.is_set():
            entered.set()
            inner.append(poll_mailbox(config_id=config_id))

    outer = poll_mailbox(config_id=config_id, batch_size=5, after_batch=poll_again)
    assert outer.stored == 20
    assert inner[0].stored == 0 and inner[0].detail == "another poll of this mailbox is running"


def test_uids_and_uidvalidity_above_two_to_the_31_survive_the_signed_columns() -> None:
    for value in (0, 1, 2**31 - 1, 2**31, 2**32 - 1):
        stored = to_db_u32(value)
        assert -(2**31) <= stored < 2**31 and from_db_u32(stored) == value


def test_the_scheduler_job_polls_every_imap_mailbox_in_the_background(
    client: Any, tenant: Any, imap_user: Mailbox, dovecot: Dovecot
) -> None:
    import time

    from services import imap_poll
    from services.imap_poll import poll_all_mailboxes

    room = imap_room(client, tenant, imap_user)
    create_config(client, tenant, from_email="noimap@acme.test", inbound_address="noimap@inbound.acme.test")
    imap_user.append(numbered(5))
    assert poll_all_mailboxes() == 1  # only the config with IMAP settings
    deadline = time.monotonic() + 20
    while len(email_events(room.project_id)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(email_events(room.project_id)) == 5
    while imap_poll._running and time.monotonic() < deadline:  # let the thread finish with this database
        time.sleep(0.05)
    assert not imap_poll._running
