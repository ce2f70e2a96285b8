"""Pulse s3_archiver: Kafka events to event-time-partitioned Parquet in S3."""
