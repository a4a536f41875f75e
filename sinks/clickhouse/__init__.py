"""Writing Switchboard's events, metrics and alerts to ClickHouse, and reading them back."""
