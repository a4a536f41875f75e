"""The sinks: ClickHouse as the record, and SMS sent through SignalWire."""
