"""Pulse crawler: third-party reviews and quote feeds, politely and safely, to Kafka."""
