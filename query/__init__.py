"""The read side: the reports' SQL, the CSV exports, the query API and dashboard, the
Grafana dashboard built from the same SQL, and the CLI's client of them. It reads what
sinks/ wrote, through sinks' ClickHouse store and schema."""
