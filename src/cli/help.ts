/** Help texts, one per command. */
const BROKER_FLAGS = `Broker options:
  --broker URL        broker URL (default: $AMQP_URL, else amqp://guest:guest@localhost:5672)
  --ca FILE           CA certificate(s) to trust (PEM), for amqps://
  --cert FILE         client certificate (PEM)
  --key FILE          client key (PEM)
  --tls-min VERSION   lowest TLS version: 1.2 or 1.3
  --external-auth     log in with the client certificate (SASL EXTERNAL)
  --heartbeat SECS    AMQP heartbeat (default 10; lower detects a dead broker link sooner)
  --resume-grace SECS hold open connections this long while the broker connection is away and
                      resume them with nothing lost (default 30; both sides need it; 0 = reset
                      at once, and a peer that died is noticed in about a second, not after SECS)
Tunnel secret (the same on both sides; see docs/security.md):
  --secret-file FILE  read the tunnel secret from FILE (default: $AMQP_TUNNEL_SECRET)
Output:
  --json              one JSON event per line on stdout
  -v, --verbose       also print debug messages
  -h, --help          this help`;

export const HELP = {
  main: `amqp-tunnel: carry TCP connections (debugger ports) through RabbitMQ; both ends only dial out.

Usage:
  amqp-tunnel publish [host:]port --queue NAME   make a local TCP port reachable on a queue
  amqp-tunnel forward NAME [[bind:]port]         listen locally and forward to the queue NAME
  amqp-tunnel check                              test the broker: login, queues, round trip, throughput
  amqp-tunnel list                               what is published on the broker (queue, debugger, host)
  amqp-tunnel run FILE.json                      several tunnels, one broker connection
  amqp-tunnel server <tcpaddr> <url?server_queue=NAME>   Go bridge syntax for publish
  amqp-tunnel client <listenaddr> <url?server_queue=NAME> Go bridge syntax for forward
  amqp-tunnel webclient <listenaddr> <url>       HTTP/1.x: route by the X-AMQP-Server-Queue header

Run 'amqp-tunnel COMMAND --help' for a command's options.
Exit codes: 0 stopped cleanly, 1 runtime failure, 2 usage error.

${BROKER_FLAGS}`,
  publish: `Usage: amqp-tunnel publish [host:]port --queue NAME [options]

Connects each stream arriving on queue NAME to host:port (host defaults to
127.0.0.1). Example, on the machine running 'node --inspect=9229 app.js':
  amqp-tunnel publish 9229 --queue my-app-debug

  -q, --queue NAME    the queue to publish on (forwarders use the same name)
  --unlisted          do not answer 'amqp-tunnel list' and the editor's view
                      (by default the publisher tells listers its queue, host
                      name, pid, target, the debugger detected there and its
                      start time; never a password or secret)
${BROKER_FLAGS}`,
  list: `Usage: amqp-tunnel list [options]

Asks the broker who publishes what (over AMQP, no management plugin needed)
and prints a table: queue, detected debugger protocol (node, python, java,
go, unknown), target address, host, pid, uptime, whether a tunnel secret is
required, and the runtime and script. Only publishers that are running
answer; those started with --unlisted never do. --json prints one JSON
object per publisher per line.

  --wait MS           how long to collect answers (default 500)
${BROKER_FLAGS}`,
  forward: `Usage: amqp-tunnel forward NAME [[bind:]port] [options]

Listens on bind:port (default 127.0.0.1, port 0 = any free port, printed at
start) and carries each connection to the publisher of queue NAME.
While the broker connection is being re-established the port stays bound and
new connections are refused at once (reset). Example:
  amqp-tunnel forward my-app-debug 9229    # then attach a debugger to 127.0.0.1:9229

${BROKER_FLAGS}`,
  check: `Usage: amqp-tunnel check [options]

Connects to the broker, declares and deletes a queue, measures the round trip
and a short stream's throughput, and prints "ready for tunnels" or what is wrong.

${BROKER_FLAGS}`,
  run: `Usage: amqp-tunnel run FILE.json [options]

Runs several tunnels over one broker connection. FILE.json:
  { "broker": "amqp://user:pass@host/vhost",          (optional; else --broker / $AMQP_URL)
    "tunnels": [
      { "publish": "127.0.0.1:9229", "queue": "app-debug" },
      { "forward": "db-debug", "bind": "127.0.0.1:5005" } ] }

  --unlisted          the publishes do not answer 'amqp-tunnel list'

${BROKER_FLAGS}`,
  server: `Usage: amqp-tunnel server <tcpaddr> <amqp://user:pass@host/vhost?server_queue=NAME>

The Go bridge's 'server' command: publish tcpaddr (":9229" means 127.0.0.1:9229) on NAME.
  --unlisted          do not answer 'amqp-tunnel list'

${BROKER_FLAGS}`,
  client: `Usage: amqp-tunnel client <listenaddr> <amqp://user:pass@host/vhost?server_queue=NAME>

The Go bridge's 'client' command: listen on listenaddr (":9229" means every
interface, as in Go) and forward to NAME.

${BROKER_FLAGS}`,
  webclient: `Usage: amqp-tunnel webclient <listenaddr> <amqp://user:pass@host/vhost>

The Go bridge's HTTP/1.x mode: each connection goes to the queue named in the
X-AMQP-Server-Queue header of its first request. What cannot be routed is
answered with a reason: 400 (no header, bad queue name), 408 (no complete
request head within 10 s), 502 (nothing listens on the queue), 504 (the
listener did not answer in time).

${BROKER_FLAGS}`,
} as const;
