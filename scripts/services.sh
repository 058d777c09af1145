#!/usr/bin/env bash
# Make sure the servers that the integration tests talk to are installed and running.
# PostgreSQL, MariaDB, Redis, RabbitMQ, Mosquitto and NATS are expected on the machine;
# anything else is installed here from Debian's packages or PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

wait_port() {  # wait_port PORT NAME: wait up to 30 s for 127.0.0.1:PORT to accept connections
  for _ in $(seq 1 60); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "services: $2 is not listening on 127.0.0.1:$1" >&2
  return 1
}

if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null && [ -x /usr/sbin/mariadbd ]; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_port 5432 PostgreSQL
wait_port 3306 MariaDB
