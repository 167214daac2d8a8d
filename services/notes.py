"""Internal notes as a resource: create, edit (version counted) and soft-delete a private note."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.clock import now
from models import Message, Ticket, User
from services import replies
from services.message_edits import (
    UNSET,
    MessageEditError,
    NotMessageAuthorError,
    apply_edit,
    load_message,
    validate_rich_content,
)


def create_note(*, session: Session, ticket: Ticket, author: User, message: Any, rich_content: Any = None
                ) -> replies.ReplyOutcome:
    """POST tickets/{id}/notes: a private reply, with the reply's 120 s replay rule.
    The caller commits, then calls `replies.release_guards(session)`."""
    validate_rich_content(rich_content)
    outcome = replies.reply(session=session, ticket=ticket, author=author, message=message, is_private=True,
                            rich_content=rich_content)
    if outcome.replayed and outcome.message.deleted_at is not None:
        # The same note, written again after its first copy was deleted, is a new note.
        fresh = replies.add_team_message(
            session=session, ticket=ticket, author=author, content=outcome.message.content, is_private=True,
            rich_content=rich_content, fingerprint=outcome.message.request_fingerprint,
        )
        return replies.ReplyOutcome(fresh, replayed=False)
    return outcome


def get_own_note(*, session: Session, ticket: Ticket, user: User, message_id: str) -> Message:
    """A live private note of this ticket written by `user`.

    404 `note_not_found` (unknown, another ticket's, deleted), 400 `not_private_note` (a
    public message), 403 `not_note_author` (another user's note, or an AI or system one)."""
    message = load_message(session=session, ticket=ticket, message_id=message_id, not_found_code="note_not_found")
    if not message.is_private:
        raise MessageEditError("Only private notes can be changed here.", code="not_private_note")
    if message.author_user_id is None or message.author_user_id != user.id:
        raise NotMessageAuthorError("Only the author of a note may change it.", code="not_note_author")
    return message


def update_note(
    *, session: Session, ticket: Ticket, user: User, message_id: str, message: Any = UNSET, rich_content: Any = UNSET
) -> Message:
    """PATCH tickets/{id}/notes/{message_id}: version +1, updated_at now."""
    note = get_own_note(session=session, ticket=ticket, user=user, message_id=message_id)
    apply_edit(message=note, content=message, rich_content=rich_content)
    session.flush()
    return note


def delete_note(*, session: Session, ticket: Ticket, user: User, message_id: str) -> None:
    """DELETE tickets/{id}/notes/{message_id}: soft; the note leaves the thread."""
    note = get_own_note(session=session, ticket=ticket, user=user, message_id=message_id)
    stamp = now()
    note.deleted_at = stamp
    note.updated_at = stamp
    session.flush()
