#!/usr/bin/env bash
# Entrypoint of the sessionaudit PostgreSQL test image (deploy/postgres-test-image).
#
# It follows the contract of the official postgres image closely enough for
# testcontainers-go's postgres module and for `docker run`:
#   - POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#     POSTGRES_USER (default postgres; the superuser), POSTGRES_DB (default
#     $POSTGRES_USER), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD
#     (default scram-sha-256) and PGDATA;
#   - on first start: initdb, a temporary server listening on the Unix socket
#     only, creation of POSTGRES_DB, /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz},
#     then the temporary server is stopped and the real one runs in the
#     foreground. The log therefore says "database system is ready to accept
#     connections" twice, which is what testcontainers' wait strategy expects;
#   - arguments starting with "-" are passed to postgres
#     (e.g. `postgres -c fsync=off`, as testcontainers does);
#   - any other command is run as is.
set -Eeuo pipefail

log() { printf '%s\n' "docker-entrypoint: $*" >&2; }

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [[ ${1:-} == -* ]]; then
	set -- postgres "$@"
fi
if [[ ${1:-} != postgres ]]; then
	exec "$@"
fi

if ((EUID == 0)); then
	# Prepare the directories as root, then run this script again as postgres.
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres /var/run/postgresql
	chmod 3777 /var/run/postgresql
	if [[ ! -s $PGDATA/PG_VERSION ]]; then
		chown -R postgres:postgres "$PGDATA"
	fi
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

process_sql() {
	psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$POSTGRES_USER" "$@"
}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
	: "${POSTGRES_USER:=postgres}"
	: "${POSTGRES_DB:=$POSTGRES_USER}"
	: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
	if [[ -z ${POSTGRES_PASSWORD:-} && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
		log "error: the database is uninitialized and POSTGRES_PASSWORD is not set."
		log "       Set POSTGRES_PASSWORD (e.g. docker run -e POSTGRES_PASSWORD=secret ...),"
		log "       or POSTGRES_HOST_AUTH_METHOD=trust to allow connections without a password."
		exit 1
	fi
	mkdir -p "$PGDATA"
	chmod 700 "$PGDATA"

	log "initialising database cluster in $PGDATA (superuser $POSTGRES_USER)"
	pwfile=$(mktemp)
	printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
	initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" ${POSTGRES_INITDB_ARGS:-} >&2
	rm -f "$pwfile"
	{
		echo
		echo "# Added by docker-entrypoint.sh"
		cat /usr/share/postgresql/postgresql-test.conf
	} >>"$PGDATA/postgresql.conf"
	{
		echo
		echo "# Added by docker-entrypoint.sh: password authentication from anywhere"
		echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
	} >>"$PGDATA/pg_hba.conf"

	# Temporary server: Unix socket only, so nobody connects before initialisation is done.
	log "starting temporary server for initialisation"
	PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -w -t 60 \
		-o "$(printf '%q ' -c listen_addresses= -p 5432 "${@:2}")" start >&2

	if [[ $POSTGRES_DB != postgres ]]; then
		exists=$(process_sql --dbname postgres --set db="$POSTGRES_DB" -tA <<-'EOSQL'
			SELECT 1 FROM pg_database WHERE datname = :'db';
		EOSQL
		)
		if [[ -z $exists ]]; then
			log "creating database $POSTGRES_DB"
			process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
				CREATE DATABASE :"db";
			EOSQL
		fi
	fi

	shopt -s nullglob
	for f in /docker-entrypoint-initdb.d/*; do
		case $f in
		*.sh)
			if [[ -x $f ]]; then
				log "running $f"
				"$f"
			else
				log "sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql) log "running $f"; process_sql --dbname "$POSTGRES_DB" -f "$f" ;;
		*.sql.gz) log "running $f"; gzip -dc "$f" | process_sql --dbname "$POSTGRES_DB" ;;
		*) log "ignoring $f" ;;
		esac
	done
	shopt -u nullglob

	log "stopping temporary server"
	pg_ctl -D "$PGDATA" -m fast -w stop >&2
	log "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
