#!/bin/sh
# Secrets arrive as files (compose `secrets:` under /run/secrets), not as container environment,
# which `docker inspect` prints to anyone who can reach the daemon. The Postgres password goes to a
# pgpass file that libpq (psycopg and psycopg2 alike) reads for URLs without a password; PGPASSFILE is
# set in the image, so health checks that run beside this process find it too. Variables that are
# already set (Kubernetes passes its secrets as environment) are left alone.
set -eu
for name in postgres_password openai_api_key; do
  if [ -e "/run/secrets/$name" ] && [ ! -r "/run/secrets/$name" ]; then
    echo "entrypoint: /run/secrets/$name is not readable by uid $(id -u) (chmod 0444 it in a 0700 directory)" >&2
    exit 1
  fi
done
secret() { [ -s "/run/secrets/$1" ] && cat "/run/secrets/$1"; }

if password=$(secret postgres_password); then
  umask 077
  # pgpass fields escape backslash and colon.
  printf '*:*:*:*:%s\n' "$(printf '%s' "$password" | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g')" > "$PGPASSFILE"
  umask 022
fi
if [ -z "${OPENAI_API_KEY:-}" ] && key=$(secret openai_api_key); then
  export OPENAI_API_KEY="$key"
fi
unset password key
exec "$@"
