-- One database per aisuper service, each owned by POSTGRES_USER (the role that runs this script).
-- Mounted into /docker-entrypoint-initdb.d by docker-compose.yml: the postgres image runs it once,
-- when the data volume is empty. Each service creates its own schema (migrations) at start-up.
-- Keep in step with the services: tests/contract/test_compose.py checks the list.
CREATE DATABASE identity;
CREATE DATABASE catalog;
CREATE DATABASE compute;
CREATE DATABASE inference;
CREATE DATABASE policy;
