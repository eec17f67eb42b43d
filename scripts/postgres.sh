#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL server on loopback for tests and benchmarks.
#   scripts/postgres.sh start DIR [PORT]   prints the admin URL (postgres://postgres@127.0.0.1:PORT/postgres)
#   scripts/postgres.sh stop DIR
# Uses Debian's PostgreSQL (installed by .ci/run); as root it runs the server as the postgres user.
set -euo pipefail

action=${1:?usage: postgres.sh start|stop DIR [PORT]}
dir=${2:?usage: postgres.sh start|stop DIR [PORT]}
port=${3:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "postgres.sh: PostgreSQL is not installed; run: apt-get install -y postgresql" >&2
  exit 1
fi

as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

case "$action" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_postgres "'$bin/initdb' -D '$dir/data' -A trust -U postgres" >/dev/null
    fi
    # Throwaway test server: durability traded for speed, as a CI database should be.
    as_postgres "'$bin/pg_ctl' -D '$dir/data' -l '$dir/log' -w start -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off\"" >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_postgres "'$bin/pg_ctl' -D '$dir/data' -m fast -w stop" >/dev/null || true
    ;;
  *)
    echo "postgres.sh: unknown action $action (start or stop)" >&2
    exit 2
    ;;
esac
