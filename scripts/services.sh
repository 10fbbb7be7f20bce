#!/usr/bin/env bash
# Makes sure the services the tests need are up on loopback: Redis on 6379
# and PostgreSQL on 5432 (trust auth, database "test"). Installs them from
# Debian's packages when they are missing. Safe to run any number of times.
set -euo pipefail

log() { echo "services: $*"; }

apt_install() {
  log "installing $*"
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Redis -------------------------------------------------------------
command -v redis-server >/dev/null || apt_install redis-server
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { log "Redis did not come up"; exit 1; }

# --- PostgreSQL --------------------------------------------------------
fresh_pg=""
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  apt_install postgresql
  fresh_pg=1
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ -n "$fresh_pg" ]; then
  # the tests connect over TCP without a password, as on the CI machines
  hba=/etc/postgresql/$version/main/pg_hba.conf
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.1; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { log "PostgreSQL did not come up"; exit 1; }
if [ -n "$fresh_pg" ]; then
  su postgres -c "psql -qc \"SELECT 1\"" >/dev/null
  su postgres -c "createdb test" 2>/dev/null || true
  su postgres -c "createuser -s root" 2>/dev/null || true
fi
if ! psql -h 127.0.0.1 -U postgres -d test -qtAc 'SELECT 1' >/dev/null 2>&1; then
  log "cannot connect to postgres://postgres@127.0.0.1:5432/test (trust auth expected)"
  exit 1
fi
# --- Chromium: the dashboard's browser test (cmd/trellis) drives it --------
command -v chromium >/dev/null || apt_install chromium

log "Redis and PostgreSQL are up"
