"""What every stage process stands on: the one Kafka consumer runtime, logging, signals."""
