-- Idempotent bootstrap run by stack.py on every `up`, as the superuser, through psql with
-- -v pulse_password=... -v admin_password=...  Tables are created by the ingest service's
-- migrations, never here.
\set ON_ERROR_STOP on
ALTER ROLE postgres WITH PASSWORD :'admin_password';
SELECT 'CREATE ROLE pulse' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pulse')\gexec
-- REPLICATION: Debezium streams from the slot as this role.
ALTER ROLE pulse WITH LOGIN REPLICATION PASSWORD :'pulse_password';
SELECT 'CREATE DATABASE pulse OWNER pulse'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'pulse')\gexec
\connect pulse
-- FOR ALL TABLES (a superuser's privilege) so tables created later by migrations or tests are
-- published without anyone touching the publication; Debezium's table.include.list picks.
SELECT 'CREATE PUBLICATION pulse_publication FOR ALL TABLES'
WHERE NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'pulse_publication')\gexec
