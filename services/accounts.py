"""Projects, users and personal API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.clock import as_utc, now
from core.crypto import hash_api_key, new_api_key, new_token
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
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now()))


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
