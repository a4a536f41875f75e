"""The vocabulary that every stage shares: settings, topics, callback kinds and events."""
