"""Projects, users and personal API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import ORMExecuteState, Session, make_transient_to_detached

from core.cache import get_cache
from core.clock import as_utc, now
from core.crypto import hash_api_key, new_api_key, new_token
from core.db import after_outer_commit, after_outer_rollback
from models import ApiKey, Project, ProjectMember, User
from services.errors import ValidationError

SCOPES = (
    "ticket:read",
    "ticket:write",
    "conversation:read",
    "conversation:write",
    "integration:read",
    "integration:write",
)
ALL_SCOPES = ("*",)


def parse_scopes(raw: str | list[str]) -> list[str]:
    """Validate a comma list or list of scopes; `*` means every scope."""
    items = [s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw) if s.strip()]
    if not items:
        raise ValidationError("at least one scope is required", attr="scopes")
    for scope in items:
        if scope != "*" and scope not in SCOPES:
            raise ValidationError(f"unknown scope {scope!r}", attr="scopes")
    return items


def scope_allows(scopes: list[str], required: str) -> bool:
    """`write` implies `read` for the same object; `*` allows everything."""
    if "*" in scopes or required in scopes:
        return True
    obj, _, action = required.partition(":")
    return action == "read" and f"{obj}:write" in scopes


def get_or_create_project(*, session: Session, name: str) -> tuple[Project, bool]:
    project = session.scalar(select(Project).where(Project.name == name))
    if project:
        return project, False
    project = Project(name=name, widget_token="phc_" + new_token(18), ticket_seq=0)
    session.add(project)
    session.flush()
    return project, True


def get_or_create_user(*, session: Session, email: str, first_name: str = "", last_name: str = "") -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise ValidationError("a valid email is required", attr="email")
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, first_name=first_name, last_name=last_name, uuid=uuid.uuid4())
        session.add(user)
        session.flush()
    return user


def add_member(*, session: Session, project: Project, user: User) -> None:
    if session.get(ProjectMember, (project.id, user.id)) is None:
        session.add(ProjectMember(project_id=project.id, user_id=user.id))
        session.flush()


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str


def create_api_key(
    *,
    session: Session,
    user: User,
    scopes: list[str],
    label: str = "",
    scoped_projects: list[int] | None = None,
) -> IssuedKey:
    """Issue a key; only its hash is stored, so the secret is shown once."""
    secret = new_api_key()
    key = ApiKey(
        user_id=user.id,
        label=label,
        key_hash=hash_api_key(secret),
        mask=secret[:4] + "…" + secret[-4:],
        scopes=scopes,
        scoped_projects=scoped_projects,
    )
    session.add(key)
    session.flush()
    return IssuedKey(key=key, secret=secret)


def authenticate(*, session: Session, secret: str) -> tuple[ApiKey, User] | None:
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(secret)))
    if key is None:
        return None
    user = session.get(User, key.user_id)
    if user is None:
        return None
    return key, user


TOUCH_EVERY = 60  # seconds: a minute of precision is plenty for "last used"


def key_needs_touch(key: ApiKey) -> bool:
    last = as_utc(key.last_used_at)
    return last is None or (now() - last).total_seconds() > TOUCH_EVERY


def touch_key(*, session: Session, key_id: uuid.UUID) -> None:
    """Record that the key was used (callers skip it when `key_needs_touch` is false)."""
    # Not a change to what the key may do: keeps cached grants (KeyGrant) valid.
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now())
                    .execution_options(auth_neutral=True))


def revoke_api_key(*, session: Session, key_id: uuid.UUID) -> bool:
    """Delete a key; requests with it are refused (401) from the commit on, in every process
    that shares the cache (see `auth_generation`). False when there was no such key."""
    return bool(session.execute(delete(ApiKey).where(ApiKey.id == key_id)).rowcount)  # type: ignore[attr-defined]


# -- cached grants -----------------------------------------------------------------------------
#
# Every API request needs the key, its user and the user's projects: three indexed reads that
# cost more than a whole cached answer. The API caches a `KeyGrant` per key for a few seconds
# (api/deps.py) and drops every cached grant as soon as any key, user, project or membership
# changes: those changes bump a generation number in the shared cache (Redis when configured,
# so all processes see it) after their commit, and a grant is only used while the generation
# it was read under is current.

AUTH_GENERATION_KEY = "auth-gen"
AUTH_GENERATION_TTL_SECONDS = 30 * 24 * 3600
_AUTH_MODELS = (ApiKey, User, Project, ProjectMember)
_AUTH_TABLES = frozenset(m.__tablename__ for m in _AUTH_MODELS)


@dataclass(frozen=True)
class KeyGrant:
    """What a request needs to know about a key: its scopes and projects and its user."""

    key_id: uuid.UUID
    label: str
    mask: str
    scopes: tuple[str, ...]
    scoped_projects: tuple[int, ...] | None
    key_created_at: datetime
    last_used_at: datetime | None
    user_id: int
    user_uuid: uuid.UUID
    user_email: str
    user_first_name: str
    user_last_name: str
    user_created_at: datetime
    member_of: frozenset[int]

    def can_access(self, project_id: int) -> bool:
        """As `key_can_access`: the key's project list (if any) and the user's memberships."""
        if self.scoped_projects is not None and project_id not in self.scoped_projects:
            return False
        return project_id in self.member_of

    def user(self) -> User:
        """A detached User (a fresh object per call, so requests never share one)."""
        user = User(id=self.user_id, uuid=self.user_uuid, email=self.user_email, first_name=self.user_first_name,
                    last_name=self.user_last_name, created_at=self.user_created_at)
        make_transient_to_detached(user)
        return user

    def key(self) -> ApiKey:
        """A detached ApiKey without its hash (a fresh object per call)."""
        key = ApiKey(id=self.key_id, user_id=self.user_id, label=self.label, key_hash="", mask=self.mask,
                     scopes=list(self.scopes),
                     scoped_projects=list(self.scoped_projects) if self.scoped_projects is not None else None,
                     created_at=self.key_created_at, last_used_at=self.last_used_at)
        make_transient_to_detached(key)
        return key


def load_grant(*, session: Session, secret: str) -> KeyGrant | None:
    """The grant of the key with this secret, read from the database (None: no such key)."""
    found = authenticate(session=session, secret=secret)
    if found is None:
        return None
    key, user = found
    return KeyGrant(
        key_id=key.id, label=key.label, mask=key.mask, scopes=tuple(key.scopes or []),
        scoped_projects=tuple(int(p) for p in key.scoped_projects) if key.scoped_projects is not None else None,
        key_created_at=key.created_at, last_used_at=key.last_used_at, user_id=user.id, user_uuid=user.uuid,
        user_email=user.email, user_first_name=user.first_name, user_last_name=user.last_name,
        user_created_at=user.created_at, member_of=frozenset(user_project_ids(session=session, user=user)),
    )


def auth_generation() -> int:
    """The current generation of keys, users and memberships (bumped after each change)."""
    return generation_of(get_cache().get(AUTH_GENERATION_KEY))


def generation_of(raw: Any) -> int:
    """The generation from the cached value of AUTH_GENERATION_KEY (read along with other
    cache operations by api.deps, in one round trip)."""
    return int(raw or 0)


def invalidate_grants() -> None:
    """Make every cached grant stale (done for you after a commit that changed keys, users,
    projects or memberships through a Session)."""
    get_cache().incr(AUTH_GENERATION_KEY, ttl=AUTH_GENERATION_TTL_SECONDS)


@event.listens_for(Session, "before_flush")
def _note_auth_objects(session: Session, _context: Any, _instances: Any) -> None:
    if any(isinstance(obj, _AUTH_MODELS) for obj in chain(session.new, session.dirty, session.deleted)):
        session.info["auth_dirty"] = True


@event.listens_for(Session, "do_orm_execute")
def _note_auth_statements(state: ORMExecuteState) -> None:
    # Bulk UPDATE/DELETE statements (revoke_api_key, cascades written as statements).
    if (state.is_update or state.is_delete) and not state.execution_options.get("auth_neutral"):
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in _AUTH_TABLES:
            state.session.info["auth_dirty"] = True


@after_outer_commit
def _invalidate_grants_after_commit(session: Session) -> None:
    if session.info.pop("auth_dirty", None):
        invalidate_grants()


@after_outer_rollback
def _forget_auth_changes(session: Session) -> None:
    session.info.pop("auth_dirty", None)


def user_project_ids(*, session: Session, user: User) -> list[int]:
    return list(session.scalars(select(ProjectMember.project_id).where(ProjectMember.user_id == user.id)))


def key_can_access(*, session: Session, key: ApiKey, user: User, project_id: int) -> bool:
    if key.scoped_projects is not None and project_id not in key.scoped_projects:
        return False
    return session.get(ProjectMember, (project_id, user.id)) is not None


def bootstrap(*, session: Session, project_name: str, email: str) -> dict[str, object]:
    """Create (or find) a project with a user and a key that has every scope."""
    project, _ = get_or_create_project(session=session, name=project_name)
    user = get_or_create_user(session=session, email=email, first_name="Demo", last_name="Admin")
    add_member(session=session, project=project, user=user)
    issued = create_api_key(session=session, user=user, scopes=["*"], label=f"bootstrap {project_name}")
    return {
        "project_id": project.id,
        "api_key": issued.secret,
        "widget_token": project.widget_token,
        "user_id": user.id,
    }
