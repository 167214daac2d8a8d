"""SQLAlchemy tables. Import everything here so Alembic and `Base.metadata` see every table."""

from models.account import ApiKey, Project, ProjectMember, Role, RoleMember, User
from models.attachment import MessageAttachment  # noqa: F401  (reply attachments, issue 5)
from models.base import Base
from models.campaign import Campaign, EmailUnsubscribe  # noqa: F401  (compose campaigns, issue 5)
from models.conversation import (  # noqa: F401  (AI conversations, issue 7)
    AgentRun,
    AgentRunEvent,
    AgentTask,
    Conversation,
    ConversationMessage,
    ConversationQueueItem,
    HelpArticle,
    ProjectAISettings,
    TicketAIAnswer,
)
from models.delivery import Delivery, EmailConfig, Integration, RawEvent, SavedView
from models.lease import Lease
from models.ticket import Message, Person, PersonDistinctId, Tag, Ticket, TicketTag
from models.unread import UnreadCounter  # noqa: F401  (kept by triggers, 0007_unread_counters)
from models.widget import SlaPolicy, WidgetNotification, WidgetRestoreToken, WidgetSessionLink

__all__ = [
    "ApiKey",
    "Base",
    "Delivery",
    "EmailConfig",
    "Integration",
    "Lease",
    "Message",
    "Person",
    "PersonDistinctId",
    "Project",
    "ProjectMember",
    "RawEvent",
    "Role",
    "RoleMember",
    "SavedView",
    "SlaPolicy",
    "Tag",
    "Ticket",
    "TicketTag",
    "User",
    "WidgetNotification",
    "WidgetRestoreToken",
    "WidgetSessionLink",
]
