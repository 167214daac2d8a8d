"""Prometheus counters kept by this process (gauges come from the database at scrape time)."""

from __future__ import annotations

from prometheus_client import Counter

WEBHOOKS = Counter("ticketwire_webhooks_total", "Inbound webhooks by channel and outcome", ["channel", "outcome"])
INGESTED = Counter("ticketwire_ingested_total", "Raw events processed by channel and final status", ["channel", "status"])
DELIVERY_ATTEMPTS = Counter("ticketwire_delivery_attempts_total", "Delivery attempts by channel and outcome",
                            ["channel", "outcome"])
RETRIES = Counter("ticketwire_delivery_retries_total", "Delivery retries scheduled by channel", ["channel"])
