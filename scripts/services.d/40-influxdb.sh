#!/usr/bin/env bash
# InfluxDB 1.x (Debian's `influxdb`) on 127.0.0.1:18086 for the influxdb sink's tests and the
# serving benchmark. Its data lives in a temporary directory; it binds only to 127.0.0.1.
set -euo pipefail
HTTP_PORT=${GRIDWATCH_INFLUXDB_PORT:-18086}
RPC_PORT=${GRIDWATCH_INFLUXDB_RPC_PORT:-18088}
ROOT=${GRIDWATCH_INFLUXDB_DIR:-${TMPDIR:-/tmp}/gridwatch-influxdb}

if listening "$HTTP_PORT"; then exit 0; fi
if ! command -v influxd >/dev/null; then
  apt-get update -qq
  # RUNLEVEL=1 keeps the package's init script from starting a server on the default ports.
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null
fi
mkdir -p "$ROOT/meta" "$ROOT/data" "$ROOT/wal"
cat >"$ROOT/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$RPC_PORT"
[meta]
  dir = "$ROOT/meta"
[data]
  dir = "$ROOT/data"
  wal-dir = "$ROOT/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$HTTP_PORT"
  log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
CONF
setsid influxd -config "$ROOT/influxdb.conf" >"$ROOT/influxd.log" 2>&1 </dev/null &
wait_port "$HTTP_PORT" InfluxDB
