#!/usr/bin/env bash
# Make sure the services the test suite needs are up: Redis on 127.0.0.1:6379 (the Redis
# online store's tests) and PostgreSQL on 127.0.0.1:5432 (the PostgreSQL registry's tests).
# Each is started when this machine can. A service that is not up and cannot be started is
# an error (exit 1), since the tests that need it fail without it; CRMFS_REQUIRE_SERVICES=0
# only warns (for a run of the embedded tests alone, e.g. pytest -k "not redis").
set -u
need="${CRMFS_REQUIRE_SERVICES:-1}"
status=0

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 6379; then
  if command -v redis-server >/dev/null; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1
    sleep 1
  fi
  if port_open 6379; then echo "services: started Redis on 127.0.0.1:6379"; else
    echo "services: Redis is not running on 127.0.0.1:6379 and could not be started" >&2; status=1; fi
fi
if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1
    sleep 2
  fi
  if port_open 5432; then echo "services: started PostgreSQL on 127.0.0.1:5432"; else
    echo "services: PostgreSQL is not running on 127.0.0.1:5432 and could not be started" >&2; status=1; fi
fi
if [ "$status" -ne 0 ] && [ "$need" = "1" ]; then exit 1; fi
exit 0
