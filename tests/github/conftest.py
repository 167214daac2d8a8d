from __future__ import annotations

from collections.abc import Iterator

import pytest

from channels.github import GitHubAdapter
from tests.fakes.github_api import FakeGitHub
from tests.github.support import TOKEN, make_adapter


@pytest.fixture
def github_api() -> Iterator[FakeGitHub]:
    api = FakeGitHub(token=TOKEN)
    api.start()
    yield api
    api.stop()


@pytest.fixture
def adapter(github_api: FakeGitHub) -> GitHubAdapter:
    return make_adapter(github_api)


@pytest.fixture
def webhook_adapter() -> GitHubAdapter:
    """An adapter for the inbound side only (no GitHub API behind it)."""
    return make_adapter()
