"""GitHubConfig: built from stored integration settings, refusing what cannot work."""

from __future__ import annotations

import pytest

from channels.errors import ChannelNotConfiguredError
from channels.github import GitHubAdapter, GitHubConfig


def test_settings_with_extra_keys_and_a_comma_list_of_repositories_are_accepted() -> None:
    config = GitHubConfig.from_settings(
        {
            "token": "ghp_x",
            "webhook_secret": "s",
            "repositories": "octo-org/api, octo-org/web ,",
            "enabled": True,
            "created_at": "2026-01-01",
        }
    )
    assert config.repositories == ("octo-org/api", "octo-org/web")
    assert config.api_base_url == "https://api.github.com"
    assert not config.uses_app_auth


def test_github_app_settings_switch_to_app_auth_and_need_no_token() -> None:
    config = GitHubConfig.from_settings(
        {"webhook_secret": "s", "app_id": 123, "private_key": "-----BEGIN…", "installation_id": "77"}
    )
    assert (config.uses_app_auth, config.app_id, config.installation_id) == (True, "123", 77)


@pytest.mark.parametrize(
    "settings",
    [
        {"webhook_secret": "s"},
        {"token": "ghp_x"},
        {"token": "ghp_x", "webhook_secret": "s", "app_id": "123"},
        {"token": "ghp_x", "webhook_secret": "s", "installation_id": "not a number"},
        {"token": "ghp_x", "webhook_secret": "s", "repositories": ["just-a-name"]},
        {"token": "ghp_x", "webhook_secret": "s", "api_base_url": "ftp://example.com"},
    ],
    ids=["no token", "no secret", "half an app", "bad installation id", "bad repository", "bad url"],
)
def test_settings_that_cannot_work_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ChannelNotConfiguredError):
        GitHubConfig.from_settings(settings)


def test_secrets_stay_out_of_the_config_repr() -> None:
    config = GitHubConfig(
        token="ghp_secret",
        webhook_secret="hook_secret",
        app_id="1",
        private_key="pem_secret",
        installation_id=2,
    )
    assert not {"ghp_secret", "hook_secret", "pem_secret"} & set(repr(config).replace("'", " ").split())


def test_the_adapter_is_named_after_its_channel() -> None:
    assert GitHubAdapter.name == "github"
