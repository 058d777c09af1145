#!/usr/bin/env bash
# Make sure the servers that the integration tests talk to are installed and running.
# PostgreSQL, MariaDB, Redis, RabbitMQ, Mosquitto and NATS are expected on the machine and
# started here when they are down; anything else is installed by a script in services.d/.
set -euo pipefail
cd "$(dirname "$0")/.."

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # wait_port PORT NAME: wait up to 60 s for 127.0.0.1:PORT to accept connections
  for _ in $(seq 1 120); do
    if listening "$1"; then return 0; fi
    sleep 0.5
  done
  echo "services: $2 is not listening on 127.0.0.1:$1" >&2
  return 1
}
export -f listening wait_port

if ! listening 5432 && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
if ! listening 3306 && [ -x /usr/sbin/mariadbd ]; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_port 5432 PostgreSQL
wait_port 3306 MariaDB

for script in scripts/services.d/*.sh; do
  [ -e "$script" ] || continue
  bash "$script"
done
