"""GitHubConfig: built from stored integration settings, refusing what cannot work."""

from __future__ import annotations

from typing import Any

import pytest

from channels.errors import ChannelNotConfiguredError
from channels.github import GitHubAdapter, GitHubConfig
from channels.github.outbound import CONTENT_CREATION_LIMITS
from channels.registry import CHANNELS


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


# -- GitHub Enterprise Server rate limits -----------------------------------------------------


def test_configured_rate_limits_replace_githubs_published_windows_for_pacing() -> None:
    config = GitHubConfig.from_settings(
        {
            "token": "ghp_x",
            "webhook_secret": "s",
            "rate_limits": [{"period_seconds": 60, "max": 200}, {"period_seconds": 3600, "max": 2000}],
        }
    )
    assert config.rate_limits == ((60.0, 200), (3600.0, 2000))
    assert GitHubAdapter(config).rate_windows == ((60.0, 200), (3600.0, 2000))


def test_without_rate_limits_the_channels_published_windows_apply() -> None:
    adapter = GitHubAdapter(GitHubConfig.from_settings({"token": "ghp_x", "webhook_secret": "s"}))
    assert adapter.rate_windows is None
    assert CHANNELS["github"].rate_windows == CONTENT_CREATION_LIMITS == ((60.0, 80), (3600.0, 500))


def test_an_empty_list_of_rate_limits_turns_pacing_off() -> None:
    config = GitHubConfig.from_settings({"token": "ghp_x", "webhook_secret": "s", "rate_limits": []})
    assert GitHubAdapter(config).rate_windows == ()


@pytest.mark.parametrize(
    "rate_limits",
    [
        {"period_seconds": 60, "max": 80},
        [[60, 80]],
        [{"period_seconds": 60}],
        [{"period_seconds": 60, "max": 80, "burst": 5}],
        [{"period_seconds": "60", "max": 80}],
        [{"period_seconds": 60, "max": 80.5}],
        [{"period_seconds": True, "max": 80}],
        [{"period_seconds": 0, "max": 80}],
        [{"period_seconds": 60, "max": 0}],
        [{"period_seconds": 86_401, "max": 80}],
        [{"period_seconds": 60, "max": 100_001}],
        [{"period_seconds": p, "max": 10} for p in range(1, 7)],
    ],
    ids=["not a list", "pairs", "no max", "unknown key", "string period", "fractional max", "boolean period",
         "zero period", "zero max", "period over a day", "max too large", "too many windows"],
)
def test_rate_limits_that_cannot_work_are_refused(rate_limits: object) -> None:
    with pytest.raises(ChannelNotConfiguredError, match="rate_limits"):
        GitHubConfig.from_settings({"token": "ghp_x", "webhook_secret": "s", "rate_limits": rate_limits})


def test_the_integrations_api_stores_valid_rate_limits_and_refuses_bad_ones(client: Any, tenant: Any) -> None:
    settings = {"token": "ghp_x", "webhook_secret": "s", "api_base_url": "https://ghe.example/api/v3"}
    limits = [{"period_seconds": 60, "max": 200}]
    ok = client.put(tenant.url("integrations/github"), json={**settings, "rate_limits": limits}, headers=tenant.headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["settings"]["rate_limits"] == limits
    bad = client.put(tenant.url("integrations/github"), json={**settings, "rate_limits": [{"period_seconds": -1, "max": 5}]},
                     headers=tenant.headers)
    assert bad.status_code == 400 and "rate_limits" in bad.text
