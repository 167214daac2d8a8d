"""Slack: Events API webhooks in, Web API (slack-sdk) replies out. See README.md."""

from channels.slack.adapter import SlackAdapter, SlackConfig
from channels.slack.outbound import RATE_LIMIT_PER_CHANNEL_PER_SECOND, rate_limit_key
from channels.slack.signature import SlackSigner, sign

__all__ = [
    "RATE_LIMIT_PER_CHANNEL_PER_SECOND",
    "SlackAdapter",
    "SlackConfig",
    "SlackSigner",
    "rate_limit_key",
    "sign",
]
