"""The HTTP edge: receives provider callbacks and makes each durable in Kafka."""
