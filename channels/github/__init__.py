"""GitHub channel: issues and issue comments become tickets; replies go back as comments."""

from channels.github.adapter import GitHubAdapter, GitHubConfig
from channels.github.signature import sign

__all__ = ["GitHubAdapter", "GitHubConfig", "sign"]
