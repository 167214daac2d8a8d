"""What posthog-js loads before it shows the widget: remote config, scripts, and the stubs."""

from __future__ import annotations

import json
import re

from channels.widget import POSTHOG_JS_VERSION
from tests.widget.support import SITE, configure_widget


def _config_from_js(text: str, token: str) -> dict:
    match = re.search(r"window\._POSTHOG_REMOTE_CONFIG\[(\"[^\"]+\")\] = \{\s*config: (\{.*\}),\s*siteApps: \[\]", text,
                      re.S)
    assert match, text[:300]
    assert json.loads(match.group(1)) == token
    return json.loads(match.group(2))


def test_the_remote_config_has_the_default_conversations_block(client, tenant):
    response = client.get(f"/array/{tenant.widget_token}/config")
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "*"
    config = response.json()
    assert config["token"] == tenant.widget_token
    assert config["hasFeatureFlags"] is False and config["sessionRecording"] is False and config["surveys"] is False
    assert config["conversations"] == {
        "enabled": True,
        "widgetEnabled": True,
        "token": tenant.widget_token,
        "greetingText": "Hey, how can I help you today?",
        "color": "#1d4aff",
        "placeholderText": "Type your message...",
        "requireEmail": False,
        "collectName": False,
        "identificationFormTitle": "Before we start...",
        "identificationFormDescription": "Please provide your details so we can help you better.",
        "domains": [],
        "widgetPosition": "bottom_right",
    }
    assert "quota" not in response.text.lower()


def test_the_script_form_sets_the_same_config_on_window(client, tenant):
    response = client.get(f"/array/{tenant.widget_token}/config.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert response.headers["access-control-allow-origin"] == "*"
    assert _config_from_js(response.text, tenant.widget_token) == client.get(f"/array/{tenant.widget_token}/config").json()


def test_the_widget_settings_shape_the_remote_config(client, tenant):
    configure_widget(tenant, greeting_text="Hallo! </script><b>", color="#ff6600", placeholder_text="Schreib uns…",
                     require_email=True, collect_name=True, allowed_domains=["shop.example.com"],
                     widget_position="bottom_left", identification_form_title="Wer bist du?")
    conversations = client.get(f"/array/{tenant.widget_token}/config").json()["conversations"]
    assert conversations["greetingText"] == "Hallo! </script><b>"
    assert conversations["color"] == "#ff6600" and conversations["placeholderText"] == "Schreib uns…"
    assert conversations["requireEmail"] is True and conversations["collectName"] is True
    assert conversations["domains"] == ["shop.example.com"] and conversations["widgetPosition"] == "bottom_left"
    assert conversations["identificationFormTitle"] == "Wer bist du?"
    script = client.get(f"/array/{tenant.widget_token}/config.js").text
    assert "</script>" not in script  # a greeting cannot close the page's script tag
    assert _config_from_js(script, tenant.widget_token)["conversations"]["greetingText"] == "Hallo! </script><b>"


def test_widget_settings_are_validated_by_the_integrations_api(client, tenant):
    url = tenant.url("integrations/widget")
    assert client.put(url, json={"color": "red; background: url(x)"}, headers=tenant.headers).status_code == 400
    assert client.put(url, json={"widget_position": "middle"}, headers=tenant.headers).status_code == 400
    response = client.put(url, json={"identity_secret": "s" * 32, "greeting_text": "Hi"}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    shown = client.get(url, headers=tenant.headers).json()
    assert "identity_secret" not in json.dumps(shown["settings"]) and shown["settings"]["public_token"] == tenant.widget_token


def test_a_disabled_widget_tells_the_sdk_conversations_are_off(client, tenant):
    configure_widget(tenant, enabled=False)
    assert client.get(f"/array/{tenant.widget_token}/config").json()["conversations"] is False


def test_an_unknown_token_has_no_config(client, tenant):
    assert client.get("/array/phc_unknown/config").status_code == 404
    assert client.get("/array/phc_unknown/config.js").status_code == 404


def test_array_js_bundles_the_config_with_the_sdk(client, tenant):
    response = client.get(f"/array/{tenant.widget_token}/array.js")
    assert response.status_code == 200
    assert response.text.startswith("(function() {\n  window._POSTHOG_REMOTE_CONFIG")
    assert len(response.text) > 100_000


def test_the_sdk_scripts_come_from_the_pinned_package_with_cors(client, tenant):
    for path in ("/static/array.js", "/static/conversations.js", f"/static/{POSTHOG_JS_VERSION}/conversations.js",
                 "/static/conversations.js?v=1.449.2"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("application/javascript")
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["x-posthog-js-version"] == POSTHOG_JS_VERSION
    assert "Conversations" in client.get("/static/conversations.js").text
    assert "immutable" in client.get(f"/static/{POSTHOG_JS_VERSION}/conversations.js").headers["cache-control"]


def test_only_script_files_of_the_package_are_served(client, tenant):
    for path in ("/static/nope.js", "/static/..%2Fpackage.json", "/static/package.json", "/static/1.0.0/..%2F..%2FLICENSE",
                 "/static/integrity.json"):
        assert client.get(path).status_code in (404, 405), path


def test_the_flags_stub_answers_no_flags_in_every_form(client, tenant):
    expected = {"featureFlags": {}, "featureFlagPayloads": {}}
    for method, path in (("POST", "/flags/?v=2&config=true"), ("POST", "/flags/?v=2"), ("GET", "/flags/"),
                         ("POST", "/flags"), ("POST", "/decide/?v=3"), ("GET", "/decide")):
        response = client.request(method, path, json={"token": tenant.widget_token, "distinct_id": "d"},
                                  headers={"Origin": SITE})
        assert response.status_code == 200 and response.json() == expected, path
        assert response.headers["access-control-allow-origin"] == "*"


def test_the_capture_stubs_acknowledge_events_without_a_quota_key(client, tenant):
    for path in ("/e/", "/e", "/i/v0/e/", "/i/v0/e"):
        response = client.post(f"{path}?ver=1.449.2", json={"api_key": tenant.widget_token, "batch": []},
                               headers={"Origin": SITE})
        assert response.status_code == 200 and response.json() == {"status": 1}, path
        assert "quota" not in response.text
    # Garbage is acknowledged too: the SDK must never see an error from the capture stub.
    assert client.post("/i/v0/e/?compression=gzip-js", content=b"\x1f\x8bnot gzip").json() == {"status": 1}


def test_stub_and_asset_preflights_are_answered(client, tenant):
    for path in ("/flags/?v=2", "/e/", "/i/v0/e/", f"/array/{tenant.widget_token}/config", "/static/conversations.js"):
        response = client.options(path, headers={"Origin": SITE, "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers": "content-type"})
        assert response.status_code == 204, path
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["access-control-allow-headers"] == "content-type"


def test_the_demo_page_loads_the_sdk_from_ticketwire_with_the_first_projects_token(client, tenant, other_tenant):
    page = client.get("/widget/demo")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/array.js" in page.text and json.dumps(tenant.widget_token) in page.text
    assert other_tenant.widget_token not in page.text
    chosen = client.get("/widget/demo", params={"token": other_tenant.widget_token}).text
    assert json.dumps(other_tenant.widget_token) in chosen and "Globex" in chosen
    assert client.get("/widget/demo", params={"token": "phc_unknown"}).status_code == 404
