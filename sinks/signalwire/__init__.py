"""Outbound SignalWire REST calls (forwarding and alerts)."""
