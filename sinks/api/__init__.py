"""The query API and dashboard, served by the process that owns ClickHouse access."""
