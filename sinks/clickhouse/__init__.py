"""Writing Switchboard's events, metrics and alerts to ClickHouse (query/ reads them)."""
