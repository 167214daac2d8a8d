"""Microsoft Teams channel: Bot Framework activities in, Bot Connector replies out."""

from channels.teams.adapter import TeamsAdapter, TeamsConfig
from channels.teams.auth import TokenIssuer
from channels.teams.outbound import RATE_LIMIT_PER_THREAD_PER_SECOND, SEND_RATE_LIMITS

__all__ = [
    "RATE_LIMIT_PER_THREAD_PER_SECOND",
    "SEND_RATE_LIMITS",
    "TeamsAdapter",
    "TeamsConfig",
    "TokenIssuer",
]
