#!/usr/bin/env bash
# `npm run setup` (and .ci/run): make sure RabbitMQ answers at $AMQP_URL
# (default amqp://guest:guest@127.0.0.1:5672). Up already: nothing to do.
# Down or missing on this machine's default port: install it (Debian's
# rabbitmq-server) and start it, as root. When that cannot be done here
# (not root, a remote host, another port), say in one line what to run.
set -euo pipefail
cd "$(dirname "$0")/.."

url="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672}"
hostport="$(node -e 'const u = new URL(process.argv[1]); console.log(`${u.hostname} ${u.port || (u.protocol === "amqps:" ? 5671 : 5672)}`)' "$url")"
host="${hostport% *}"
port="${hostport#* }"

up() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
say() { printf 'setup: %s\n' "$*"; }

if up; then
  say "RabbitMQ answers at $host:$port"
  exit 0
fi
case "$host" in 127.0.0.1 | localhost) ;; *)
  say "nothing answers at $host:$port (AMQP_URL): start that broker, or unset AMQP_URL to use one on this machine" >&2
  exit 1 ;;
esac
if [ "$port" != 5672 ]; then
  say "nothing answers at $host:$port (AMQP_URL); the set-up starts RabbitMQ only on its default port 5672: start yours on $port, or unset AMQP_URL" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    say "RabbitMQ is installed but not running on $host:$port; run: sudo rabbitmq-server -detached   (or: sudo systemctl start rabbitmq-server)" >&2
  else
    say "RabbitMQ is not installed; run: sudo apt-get install -y rabbitmq-server   (it starts on 127.0.0.1:5672), then npm test" >&2
  fi
  exit 1
fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "RabbitMQ is not installed and this is no Debian/Ubuntu system: install RabbitMQ (https://www.rabbitmq.com/docs/download) and start it on $host:$port" >&2
    exit 1
  fi
  say "installing rabbitmq-server (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
if ! up; then
  say "starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do up && break; sleep 1; done
fi
up || { say "RabbitMQ did not come up on $host:$port within 60 s; see /var/log/rabbitmq/" >&2; exit 1; }
# The port opens before the broker accepts logins: wait until it does.
for _ in $(seq 1 30); do rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
say "RabbitMQ answers at $host:$port"
