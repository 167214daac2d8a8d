"""Website widget channel: PostHog's posthog-js support widget talking to ticketwire."""

from channels.widget.adapter import (
    WidgetAdapter,
    WidgetConfig,
    origin_matches,
    sign_identity,
    verify_identity,
)

# The posthog-js release whose dist/ ticketwire serves (scripts/fetch-posthog-js.sh reads it
# from here). Changing it: update POSTHOG_JS_INTEGRITY in that script as well.
POSTHOG_JS_VERSION = "1.449.2"

__all__ = [
    "POSTHOG_JS_VERSION",
    "WidgetAdapter",
    "WidgetConfig",
    "origin_matches",
    "sign_identity",
    "verify_identity",
]
