"""How a Pulse service runs: settings, logging, metrics, health, Kafka serde and a clock."""
