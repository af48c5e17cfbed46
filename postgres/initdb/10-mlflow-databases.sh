#!/usr/bin/env bash
# Creates the role the MLflow tracking server logs in as and the databases it owns: the backend
# store and the basic-auth user store. Run by the official postgres image from
# /docker-entrypoint-initdb.d on an empty data directory, as the superuser POSTGRES_USER over the
# local socket. Safe to run again: existing objects are kept, the role's password and attributes
# are brought in line with the environment. Works whether the image runs it (executable) or
# sources it into its own shell (not executable), so it sets no shell options beyond the image's.
#
#   MLFLOW_DB_PASSWORD   password of the role (required, no default)
#   MLFLOW_DB_USER       role name                      (default: mlflow)
#   MLFLOW_DB_NAME       backend store database         (default: mlflow)
#   MLFLOW_AUTH_DB_NAME  basic-auth database            (default: mlflow_auth)
set -eo pipefail

if [ -z "${MLFLOW_DB_PASSWORD:-}" ]; then
    echo "10-mlflow-databases.sh: MLFLOW_DB_PASSWORD is not set; refusing to create the" \
        "MLflow role without a password" >&2
    exit 1
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
    --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
    --set=db_user="${MLFLOW_DB_USER:-mlflow}" \
    --set=db_password="${MLFLOW_DB_PASSWORD}" \
    --set=db_name="${MLFLOW_DB_NAME:-mlflow}" \
    --set=auth_db_name="${MLFLOW_AUTH_DB_NAME:-mlflow_auth}" <<'EOSQL'
SELECT format('CREATE ROLE %I', :'db_user')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'db_user') \gexec

-- A plain login role: it owns its databases and nothing else.
SELECT format(
    'ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L',
    :'db_user', :'db_password') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', name, :'db_user')
FROM (VALUES (:'db_name'), (:'auth_db_name')) AS wanted(name)
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = name) \gexec

-- Only the owner (and superusers) may connect.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', name)
FROM (VALUES (:'db_name'), (:'auth_db_name')) AS wanted(name) \gexec
EOSQL
