#!/usr/bin/env bash
# Runs once, when the entrypoint creates the cluster: creates the collector's
# own role and gives it the database, nothing more (no superuser, no
# CREATEDB, no CREATEROLE). The collector needs to own its tables: it applies
# the migrations and creates and drops monthly partitions itself.
#
#   SESSIONAUDIT_DB_USER      role name (default sessionaudit)
#   SESSIONAUDIT_DB_PASSWORD  its password; without it nothing is done
#
# The superuser (POSTGRES_USER) is then refused over the network: it logs in
# only through the Unix socket inside the container (docker exec ... psql).
set -Eeuo pipefail

user=${SESSIONAUDIT_DB_USER:-sessionaudit}
db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
superuser=${POSTGRES_USER:-postgres}

if [[ -z ${SESSIONAUDIT_DB_PASSWORD:-} ]]; then
	echo "10-sessionaudit-role: SESSIONAUDIT_DB_PASSWORD is not set; no collector role created" >&2
	exit 0
fi
if [[ $user == "$superuser" ]]; then
	echo "10-sessionaudit-role: SESSIONAUDIT_DB_USER must differ from POSTGRES_USER ($superuser)" >&2
	exit 1
fi

echo "10-sessionaudit-role: creating role $user, owner of database $db" >&2
psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$superuser" --dbname "$db" \
	--set user="$user" --set password="$SESSIONAUDIT_DB_PASSWORD" --set db="$db" <<-'EOSQL'
	CREATE ROLE :"user" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
	ALTER DATABASE :"db" OWNER TO :"user";
	-- PostgreSQL 15: the public schema belongs to the database owner.
	REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
EOSQL

# First match wins in pg_hba.conf: refuse the superuser over TCP.
sed -i "1i host all $superuser all reject" "$PGDATA/pg_hba.conf"
