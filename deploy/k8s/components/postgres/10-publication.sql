-- Run once by the postgres image on an empty data directory, as POSTGRES_USER (a superuser)
-- in POSTGRES_DB. FOR ALL TABLES so tables created later by the ingest migrations are
-- published; the connector sets publication.autocreate.mode=disabled and picks tables with
-- table.include.list (deploy/debezium/pulse-postgres.json).
CREATE PUBLICATION pulse_publication FOR ALL TABLES;
