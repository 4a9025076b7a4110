#!/usr/bin/env bash
# Make sure PostgreSQL, RabbitMQ and Redis answer on 127.0.0.1, starting them the way a fresh
# machine would if they are down. Fails loudly when one cannot be reached.
set -u
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 1; done; return 1; }

if ! up 5432; then
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! up 5672; then
  echo "starting RabbitMQ" >&2
  rabbitmq-server -detached || true
fi
if ! up 6379; then
  echo "starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi
status=0
for svc in "PostgreSQL 5432" "RabbitMQ 5672" "Redis 6379"; do
  set -- $svc
  if ! wait_up "$2"; then echo "ERROR: $1 is not reachable on 127.0.0.1:$2" >&2; status=1; fi
done
# RabbitMQ accepts TCP before it is ready for AMQP work; wait for the node itself.
if command -v rabbitmqctl >/dev/null 2>&1; then
  timeout 120 rabbitmqctl -q await_startup >/dev/null 2>&1 || { echo "ERROR: RabbitMQ did not finish starting" >&2; status=1; }
fi
exit $status
