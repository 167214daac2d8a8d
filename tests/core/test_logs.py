import json
import logging

from core.logs import JsonFormatter, redact


def test_log_lines_are_json_and_hide_addresses_and_tokens() -> None:
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "mail from %s with %s", ("ann@example.com", "xoxb-123-abc"), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning"
    assert entry["message"] == "mail from [email] with [secret]"


def test_redact_leaves_ids_alone() -> None:
    assert redact("delivery 1f2e3d4c failed: channel_not_found") == "delivery 1f2e3d4c failed: channel_not_found"
