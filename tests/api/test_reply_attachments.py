"""Files on POST tickets/{id}/reply: JSON (base64) or multipart/form-data, checked (20 files,
10 MB each, 25 MB in all, 413/400 naming `attachments`), stored with the message, listed on it,
served back byte for byte, kept on private notes, part of the 120 s replay rule, and handed to
non-email channels as links their recipients can open without an API key.

Mail really carrying the files is in tests/email_outbound/test_reply_attachments.py."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from core.clock import FrozenClock, use_clock
from core.db import session_scope
from models import Delivery, Message, MessageAttachment
from services import deliveries
from tests.factories import make_ticket

PDF = b"%PDF-1.7\n\x00\x01\x02\xff binary \r\n\x00 trailer"
MB = 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def reply(client: Any, tenant: Any, ticket_id: str, **body: Any) -> Any:
    return client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "See attached.", **body},
                       headers=tenant.headers)


def stored_files() -> int:
    with session_scope(read_only=True) as session:
        return int(session.scalar(select(func.count()).select_from(MessageAttachment)) or 0)


def team_messages(ticket_id: str) -> int:
    with session_scope(read_only=True) as session:
        return int(session.scalar(select(func.count()).select_from(Message).where(
            Message.ticket_id == uuid.UUID(ticket_id), Message.author_type == "support")) or 0)


def download(client: Any, tenant: Any, url: str) -> Any:
    return client.get(url, headers=tenant.headers)


def test_a_json_reply_stores_its_files_lists_them_and_serves_them_back_byte_for_byte(client, tenant):
    made = make_ticket(tenant.project_id, channel_source="slack", channel_detail="slack_bot_mention")
    response = reply(client, tenant, made["id"], attachments=[
        {"filename": "Käse – Rechnung 2026.pdf", "content_type": "application/pdf", "content_base64": b64(PDF)},
        {"filename": "notes.txt", "content_base64": b64("日本語のメモ\r\n".encode())},
    ])
    assert response.status_code == 201, response.text
    message = response.json()
    base = tenant.url(f"tickets/{made['id']}/messages/{message['id']}/attachments")
    assert message["attachments"] == [
        {"index": 0, "filename": "Käse – Rechnung 2026.pdf", "content_type": "application/pdf", "size": len(PDF),
         "content_id": None, "inline": False, "url": f"{base}/0"},
        {"index": 1, "filename": "notes.txt", "content_type": "text/plain", "size": 20,
         "content_id": None, "inline": False, "url": f"{base}/1"},
    ]
    first = download(client, tenant, message["attachments"][0]["url"])
    assert first.status_code == 200 and first.content == PDF
    assert first.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''K%C3%A4se%20%E2%80%93%20Rechnung%202026.pdf" in first.headers["content-disposition"]
    assert download(client, tenant, message["attachments"][1]["url"]).content == "日本語のメモ\r\n".encode()
    listed = client.get(tenant.url(f"tickets/{made['id']}/messages"), headers=tenant.headers).json()["results"]
    assert listed[-1]["attachments"] == message["attachments"]
    assert download(client, tenant, f"{base}/2").status_code == 404


def test_a_private_note_keeps_its_files_and_sends_nothing(client, tenant):
    made = make_ticket(tenant.project_id, channel_source="email", channel_detail=None)
    response = reply(client, tenant, made["id"], is_private=True, message="The customer's log, for the team.",
                     attachments=[{"filename": "server.log", "content_type": "text/plain",
                                   "content_base64": b64(b"ERROR disk full\n")}])
    assert response.status_code == 201, response.text
    note = response.json()
    assert note["is_private"] is True and note["delivery_status"] is None
    assert [a["filename"] for a in note["attachments"]] == ["server.log"]
    assert download(client, tenant, note["attachments"][0]["url"]).content == b"ERROR disk full\n"
    with session_scope(read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_the_same_endpoint_takes_multipart_uploads_and_types_unlabelled_files_by_name(client, tenant):
    made = make_ticket(tenant.project_id)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    response = client.post(
        tenant.url(f"tickets/{made['id']}/reply"), headers=tenant.headers,
        data={"message": "Screenshots attached.", "is_private": "true", "rich_content": '{"type": "doc"}'},
        files=[("attachments", ("screen shot.png", png, "application/octet-stream")),
               ("attachments", ("Überblick.pdf", PDF, "application/pdf"))],
    )
    assert response.status_code == 201, response.text
    note = response.json()
    assert note["is_private"] is True and note["rich_content"] == {"type": "doc"}
    assert [(a["filename"], a["content_type"], a["size"]) for a in note["attachments"]] == [
        ("screen shot.png", "image/png", len(png)), ("Überblick.pdf", "application/pdf", len(PDF))]
    assert download(client, tenant, note["attachments"][0]["url"]).content == png
    assert download(client, tenant, note["attachments"][1]["url"]).content == PDF


def test_a_form_reply_without_files_is_an_ordinary_reply(client, tenant):
    made = make_ticket(tenant.project_id, channel_source="slack", channel_detail="slack_bot_mention")
    response = client.post(tenant.url(f"tickets/{made['id']}/reply"), headers=tenant.headers,
                           data={"message": "No files."}, files=[])
    assert response.status_code == 201, response.text
    assert response.json()["attachments"] == [] and response.json()["delivery_status"] == "pending"


@pytest.mark.parametrize(
    ("files", "status", "words"),
    [
        ([{"filename": f"f{i}.txt", "content_base64": b64(b"x")} for i in range(21)], 400, "at most 20 attachments"),
        ([{"filename": "big.bin", "content_base64": b64(b"\0" * (10 * MB + 1))}], 413, "larger than 10 MB"),
        ([{"filename": "a.pdf", "content_base64": "not base64!"}], 400, "not valid base64"),
        ([{"filename": "  ", "content_base64": b64(b"x")}], 400, "needs a filename"),
        ([{"filename": "a\x07b.txt", "content_base64": b64(b"x")}], 400, "control characters"),
        ([{"filename": "a.pdf", "content_type": "pdf", "content_base64": b64(b"x")}], 400, "not a media type"),
        ([{"filename": "x" * 256, "content_base64": b64(b"x")}], 400, "longer than 255"),
        ([{"filename": "a.pdf"}], 400, None),
        ([{"filename": "a.pdf", "content_base64": 42}], 400, None),
    ],
)
def test_files_outside_the_limits_are_refused_naming_attachments_and_nothing_is_stored(
    client, tenant, files, status, words
):
    made = make_ticket(tenant.project_id, channel_source="slack", channel_detail="slack_bot_mention")
    response = reply(client, tenant, made["id"], attachments=files)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["attr"].startswith("attachments")
    if words:
        assert words in body["detail"] and body["attr"] == "attachments"
    assert team_messages(made["id"]) == 0 and stored_files() == 0


def test_files_adding_up_to_more_than_25_mb_are_413(client, tenant):
    made = make_ticket(tenant.project_id, channel_source="slack", channel_detail="slack_bot_mention")
    nine_mb = b"\xab" * (9 * MB)
    response = client.post(tenant.url(f"tickets/{made['id']}/reply"), headers=tenant.headers,
                           data={"message": "Three big files."},
                           files=[("attachments", (f"part{i}.bin", nine_mb, "application/zip")) for i in range(3)])
    assert response.status_code == 413, response.text
    assert response.json()["attr"] == "attachments" and "at most 25 MB in all" in response.json()["detail"]
    assert team_messages(made["id"]) == 0 and stored_files() == 0


def test_a_reply_body_over_its_36_mb_limit_is_413_naming_attachments(client, tenant):
    made = make_ticket(tenant.project_id)
    huge = b64(b"\0" * (27 * MB))  # 36 MB of base64
    response = reply(client, tenant, made["id"], attachments=[{"filename": "huge.bin", "content_base64": huge}])
    assert response.status_code == 413
    assert response.json()["code"] == "too_large" and response.json()["attr"] == "attachments"
    assert "may add up to 25 MB" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds on the stream too
        yield b'{"message": "x", "attachments": [{"filename": "a", "content_base64": "'
        for _ in range(37):
            yield b"A" * MB
        yield b'"}]}'

    streamed = client.post(tenant.url(f"tickets/{made['id']}/reply"), content=chunks(),
                           headers={**tenant.headers, "Content-Type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["attr"] == "attachments"
    assert team_messages(made["id"]) == 0


def test_a_reply_of_20_files_of_one_mb_fits(client, tenant):
    made = make_ticket(tenant.project_id, channel_source="slack", channel_detail="slack_bot_mention")
    files = [{"filename": f"scan-{i:02}.jpg", "content_base64": b64(bytes([i]) * MB)} for i in range(20)]
    response = reply(client, tenant, made["id"], attachments=files)
    assert response.status_code == 201, response.text
    listed = response.json()["attachments"]
    assert [a["content_type"] for a in listed] == ["image/jpeg"] * 20 and stored_files() == 20
    assert download(client, tenant, listed[19]["url"]).content == bytes([19]) * MB


def test_malformed_bodies_still_answer_400_with_the_field(client, tenant):
    made = make_ticket(tenant.project_id)
    url = tenant.url(f"tickets/{made['id']}/reply")
    headers = {**tenant.headers, "Content-Type": "application/json"}
    assert client.post(url, content=b'{"message": ', headers=headers).json()["code"] == "parse_error"
    assert client.post(url, headers=tenant.headers).json()["detail"] == "A JSON body is required."
    missing = client.post(url, json={"is_private": True}, headers=tenant.headers)
    assert missing.status_code == 400 and missing.json()["attr"] == "message"
    typed = client.post(url, json={"message": "x", "attachments": [{"filename": 1, "content_base64": "eA=="}]},
                        headers=tenant.headers)
    assert typed.status_code == 400 and typed.json()["attr"] == "attachments.0.filename"
    wrong_field = client.post(url, headers=tenant.headers, data={"message": "x"},
                              files=[("file", ("a.txt", b"x", "text/plain"))])
    assert wrong_field.status_code == 400 and wrong_field.json()["attr"] == "attachments"
    bad_rich = client.post(url, headers=tenant.headers, data={"message": "x", "rich_content": "{"},
                           files=[("attachments", ("a.txt", b"x", "text/plain"))])
    assert bad_rich.status_code == 400 and bad_rich.json()["attr"] == "rich_content"
    assert team_messages(made["id"]) == 0


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    previous = use_clock(frozen)
    yield frozen
    use_clock(previous)


def test_the_120_second_replay_rule_counts_the_files(client, tenant, clock):
    made = make_ticket(tenant.project_id, channel_source="slack", channel_detail="slack_bot_mention")
    files = [{"filename": "a.pdf", "content_type": "application/pdf", "content_base64": b64(PDF)}]
    first = reply(client, tenant, made["id"], attachments=files)
    again = reply(client, tenant, made["id"], attachments=files)
    assert (first.status_code, again.status_code) == (201, 200) and again.json()["id"] == first.json()["id"]
    other_file = reply(client, tenant, made["id"],
                       attachments=[{"filename": "a.pdf", "content_type": "application/pdf",
                                     "content_base64": b64(PDF + b"!")}])
    no_file = reply(client, tenant, made["id"])
    assert (other_file.status_code, no_file.status_code) == (201, 201)
    clock.advance(seconds=121)
    later = reply(client, tenant, made["id"], attachments=files)
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    with session_scope(read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 4
    assert stored_files() == 3


def test_other_channels_get_the_files_as_links_their_recipients_can_open_without_a_key(client, tenant):
    made = make_ticket(tenant.project_id, channel_source="slack", channel_detail="slack_bot_mention")
    sent = reply(client, tenant, made["id"], attachments=[
        {"filename": "Käse.pdf", "content_type": "application/pdf", "content_base64": b64(PDF)}]).json()
    with session_scope() as session:
        delivery_id = session.scalar(select(Delivery.id).where(Delivery.message_id == uuid.UUID(sent["id"])))
        claim = deliveries.claim(session=session, delivery_id=delivery_id, worker_id="test")
    assert claim is not None
    (link,) = claim.reply.attachments
    assert (link.filename, link.content_type, link.size, link.content) == ("Käse.pdf", "application/pdf", len(PDF),
                                                                            None)
    assert link.url is not None and link.url.startswith("http://") and link.url.endswith("/K%C3%A4se.pdf")
    path = urlsplit(link.url).path
    opened = client.get(path)  # no API key
    assert opened.status_code == 200 and opened.content == PDF
    assert opened.headers["content-disposition"].startswith("attachment;")
    assert opened.headers["x-content-type-options"] == "nosniff"
    forged = path.replace(path.split("/")[-2], "0" * 32)
    assert client.get(forged).status_code == 404
    other_index = path.replace(f"/{sent['id']}/0/", f"/{sent['id']}/1/")
    assert client.get(other_index).status_code == 404
    with session_scope() as session:
        session.get_one(Message, uuid.UUID(sent["id"])).deleted_at = datetime.now(UTC)
    assert client.get(path).status_code == 404
