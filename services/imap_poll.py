"""Poll the IMAP mailboxes of email configs into raw events, losing nothing and doubling nothing.

For each config with `imap_host`, one poll:
1. log in and select the folder; a refused login or a server that does not answer marks the
   config unhealthy (`health = {"ok": false, ...}`, shown by the email configs API and as
   `ticketwire_channel_healthy{channel="email"} 0` in /metrics) and stops there;
2. resume after the stored (UIDVALIDITY, last UID); when UIDVALIDITY changed the folder was
   rebuilt and its UIDs mean nothing any more, so every message is read again and the
   Message-ID de-duplication of raw events drops what was already stored. There is no time
   window: an outage of any length resumes where it stopped;
3. fetch in batches with BODY.PEEK[]; each batch's raw events and the new cursor commit in
   one transaction, so a crash or a server restart between batches repeats nothing and
   skips nothing; only then are the stored messages flagged \\Seen;
4. a message the server cannot return (twice, on fresh connections) or that is larger than
   the listener's 25 MB limit is quarantined: recorded as a failed raw event with the reason,
   and the cursor moves past it so the rest of the mailbox is not held up.

`poll_mailbox` polls one config synchronously (tests, CLI); `poll_all_mailboxes` is the
scheduler job: it starts a background poll per config that is not already being polled, so a
mailbox that hangs never delays the sweeper.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update

from channels.email.imap import (
    FetchError,
    FolderState,
    ImapMailbox,
    ImapSettings,
    LoginRejectedError,
    MailboxUnreachableError,
)
from channels.email.listener import MAX_MESSAGE_BYTES
from core.cache import get_cache
from core.clock import now
from core.db import session_scope
from models import EmailConfig
from services import email_configs
from services.email_inbound import quarantine_email, store_email

log = logging.getLogger(__name__)

BATCH_SIZE = 100
LOCK_SECONDS = 300.0
# Bytes of an oversized message kept with its quarantine record (its header block, mostly).
QUARANTINE_KEEP_BYTES = 64 * 1024

_running: set[uuid.UUID] = set()
_running_lock = threading.Lock()


def to_db_u32(value: int) -> int:
    """UIDVALIDITY and UIDs are unsigned 32-bit (RFC 3501 §2.3.1.1); the columns are signed
    INTEGER, so values ≥ 2**31 are stored wrapped (two's complement) and read back unwrapped."""
    return value - 2**32 if value >= 2**31 else value


def from_db_u32(value: int | None) -> int | None:
    if value is None:
        return None
    return value + 2**32 if value < 0 else value


@dataclass
class PollResult:
    config_id: uuid.UUID
    ok: bool = True
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    last_uid: int = 0
    uidvalidity: int | None = None
    detail: str | None = None
    uidvalidity_changed: bool = False
    errors: list[str] = field(default_factory=list)


def _settings(config: EmailConfig, password: str | None, timeout: float) -> ImapSettings:
    return ImapSettings(
        host=config.imap_host or "",
        port=config.imap_port,
        security=(config.imap_security or "tls").lower(),
        username=config.imap_username or "",
        password=password or "",
        folder=config.imap_folder or "INBOX",
        timeout=timeout,
    )


def _set_health(config_id: uuid.UUID, ok: bool, detail: str) -> None:
    try:
        with session_scope() as session:
            email_configs.set_health(session=session, config_id=config_id, ok=ok, detail=detail)
    except Exception:  # health is a report; failing to write it must not hide the poll's outcome
        log.exception("could not record IMAP health for config %s", config_id)


def poll_mailbox(
    *,
    config_id: uuid.UUID,
    batch_size: int = BATCH_SIZE,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    timeout: float = 30.0,
    after_batch: Callable[[PollResult], None] | None = None,
) -> PollResult:
    """One poll of one config's mailbox (see the module docstring). Never raises for mailbox
    trouble: the result and the config's health say what happened."""
    result = PollResult(config_id=config_id)
    cache = get_cache()
    lock_key = f"imap-poll:{config_id}"
    holder = uuid.uuid4().hex
    if not cache.add(lock_key, holder, ttl=LOCK_SECONDS):
        result.detail = "another poll of this mailbox is running"
        return result
    try:
        with session_scope(read_only=True) as session:
            config = session.get(EmailConfig, config_id)
            if config is None or not config.imap_host:
                result.ok, result.detail = False, "no IMAP settings"
                return result
            project_id = config.project_id
            password = email_configs.load_secrets(config).get("imap_password")
            settings = _settings(config, password, timeout)
            stored_validity = from_db_u32(config.imap_uidvalidity)
            stored_last = from_db_u32(config.imap_last_uid) or 0
        _poll(
            result, settings=settings, project_id=project_id, stored_validity=stored_validity,
            stored_last=stored_last, batch_size=batch_size, max_message_bytes=max_message_bytes,
            after_batch=after_batch, refresh_lock=lambda: cache.set(lock_key, holder, ttl=LOCK_SECONDS),
        )
    finally:
        if cache.get(lock_key) == holder:
            cache.delete(lock_key)
    return result


def _poll(
    result: PollResult,
    *,
    settings: ImapSettings,
    project_id: int,
    stored_validity: int | None,
    stored_last: int,
    batch_size: int,
    max_message_bytes: int,
    after_batch: Callable[[PollResult], None] | None,
    refresh_lock: Callable[[], None],
) -> None:
    config_id = result.config_id
    mailbox = ImapMailbox(settings)
    try:
        try:
            state = mailbox.open()
        except LoginRejectedError as exc:
            result.ok, result.detail = False, f"login rejected: {exc}"
            _set_health(config_id, False, result.detail)
            return
        except (MailboxUnreachableError, FetchError) as exc:
            result.ok, result.detail = False, f"mailbox unreachable: {exc}"
            _set_health(config_id, False, result.detail)
            return
        result.uidvalidity = state.uidvalidity
        last_uid = stored_last
        if stored_validity is not None and stored_validity != state.uidvalidity:
            # The folder was recreated (or the server rebuilt its index): UIDs restart.
            log.warning("IMAP UIDVALIDITY changed for config %s; reading the folder again", config_id)
            result.uidvalidity_changed = True
            last_uid = 0
        result.last_uid = last_uid
        try:
            uids = mailbox.uids_after(last_uid)
            for start in range(0, len(uids), batch_size):
                batch = uids[start : start + batch_size]
                bodies, failures = _fetch_batch(mailbox, batch, state)
                stored_uids = _store_batch(
                    result, project_id=project_id, uidvalidity=state.uidvalidity, batch=batch, bodies=bodies,
                    failures=failures, max_message_bytes=max_message_bytes,
                )
                refresh_lock()
                try:
                    mailbox.mark_seen(stored_uids)
                except (FetchError, MailboxUnreachableError):
                    pass  # cosmetic: the cursor, not the flag, says what was stored
                if after_batch is not None:
                    after_batch(result)
        except (MailboxUnreachableError, FetchError) as exc:
            result.ok, result.detail = False, f"mailbox stopped answering: {exc}"
            _set_health(config_id, False, result.detail)
            return
        summary = f"polled: {result.stored} new, {result.duplicates} already stored, {result.quarantined} quarantined"
        result.detail = summary
        _set_health(config_id, True, summary)
    finally:
        mailbox.close()


def _reopen(mailbox: ImapMailbox, state: FolderState) -> None:
    """A fresh connection for a retry; a changed UIDVALIDITY ends this poll (next one restarts)."""
    again = mailbox.open()
    if again.uidvalidity != state.uidvalidity:
        raise MailboxUnreachableError("UIDVALIDITY changed during the poll")


def _fetch_batch(
    mailbox: ImapMailbox, batch: list[int], state: FolderState
) -> tuple[dict[int, bytes], dict[int, str]]:
    """Fetch a batch; when the batch fails, fetch its messages one by one on fresh connections
    so one unreadable message is found and quarantined instead of blocking the rest. A server
    that is down (the reconnect fails) raises MailboxUnreachableError and ends the poll."""
    try:
        bodies = mailbox.fetch(batch)
        if all(uid in bodies for uid in batch):
            return bodies, {}
    except (FetchError, MailboxUnreachableError):
        bodies = {}
        _reopen(mailbox, state)
    failures: dict[int, str] = {}
    for uid in batch:
        if uid in bodies:
            continue
        for attempt in (1, 2):
            try:
                single = mailbox.fetch([uid])
                if uid in single:
                    bodies[uid] = single[uid]
                break  # absent from an OK answer: expunged meanwhile, nothing to store
            except (FetchError, MailboxUnreachableError) as exc:
                _reopen(mailbox, state)
                if attempt == 2:
                    failures[uid] = f"the server could not return the message: {exc}"
    return bodies, failures


def _store_batch(
    result: PollResult,
    *,
    project_id: int,
    uidvalidity: int,
    batch: list[int],
    bodies: dict[int, bytes],
    failures: dict[int, str],
    max_message_bytes: int,
) -> list[int]:
    """Store a batch and advance the cursor in one transaction. Returns the UIDs stored."""
    config_id = result.config_id
    stored_uids: list[int] = []
    counts = {"stored": 0, "duplicates": 0, "quarantined": 0}
    with session_scope() as session:
        for uid in batch:
            quarantine_id = f"imap:{config_id}:{uidvalidity}:{uid}"
            if uid in failures:
                quarantine_email(session=session, project_id=project_id, config_id=config_id,
                                 event_id=quarantine_id, raw=b"", source="imap", error=failures[uid])
                counts["quarantined"] += 1
                continue
            raw = bodies.get(uid)
            if raw is None:
                continue
            if len(raw) > max_message_bytes:
                quarantine_email(
                    session=session, project_id=project_id, config_id=config_id, event_id=quarantine_id,
                    raw=raw[:QUARANTINE_KEEP_BYTES], source="imap",
                    error=f"message of {len(raw)} bytes is over the {max_message_bytes} byte limit",
                )
                counts["quarantined"] += 1
                continue
            stored = store_email(session=session, project_id=project_id, raw=raw, config_id=config_id, source="imap")
            counts["stored" if stored.created else "duplicates"] += 1
            stored_uids.append(uid)
        session.execute(
            update(EmailConfig).where(EmailConfig.id == config_id).values(
                imap_uidvalidity=to_db_u32(uidvalidity), imap_last_uid=to_db_u32(max(batch)), updated_at=now(),
            )
        )
    result.stored += counts["stored"]
    result.duplicates += counts["duplicates"]
    result.quarantined += counts["quarantined"]
    result.last_uid = max(batch)
    return stored_uids


# -- running it -------------------------------------------------------------------------------

def imap_config_ids() -> list[uuid.UUID]:
    with session_scope(read_only=True) as session:
        return list(session.scalars(select(EmailConfig.id).where(EmailConfig.imap_host.is_not(None))))


def _poll_in_background(config_id: uuid.UUID) -> None:
    try:
        poll_mailbox(config_id=config_id)
    except Exception:
        log.exception("IMAP poll of config %s failed", config_id)
    finally:
        with _running_lock:
            _running.discard(config_id)


def poll_all_mailboxes() -> int:
    """The scheduler job: start a background poll for every IMAP config not being polled in
    this process (the cache lock in poll_mailbox covers other processes). Returns how many."""
    started = 0
    for config_id in imap_config_ids():
        with _running_lock:
            if config_id in _running:
                continue
            _running.add(config_id)
        threading.Thread(target=_poll_in_background, args=(config_id,), name=f"imap-poll-{config_id}",
                         daemon=True).start()
        started += 1
    return started


def run_poller(*, every: float = 30.0, stop: threading.Event | None = None) -> None:
    """`ticketwire imap-poll`: poll every IMAP mailbox every `every` seconds until stopped."""
    stop = stop or threading.Event()
    while not stop.is_set():
        began = time.monotonic()
        poll_all_mailboxes()
        stop.wait(max(1.0, every - (time.monotonic() - began)))
