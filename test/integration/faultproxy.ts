/**
 * A TCP fault proxy for tests: listens on 127.0.0.1, port 0, and forwards
 * each connection to the broker (127.0.0.1:5672 by default).
 *
 * - cutAll(): reset (RST) every proxied connection on both sides, and reset
 *   new connections at once until resume() — the broker "went away".
 * - stall(): stop moving bytes on every connection, old and new, without
 *   closing anything — a network black hole.
 * - stallUpstream(): stop moving bytes from the clients to the broker only;
 *   deliveries still arrive, but nothing the client sends (declares, acks,
 *   publishes) reaches the broker — what a client sees of a broker that
 *   blocked its connection.
 * - stallDownstream(): stop moving bytes from the broker to the clients only;
 *   the broker still hears the client's heartbeats, the client hears nothing.
 * - resume(): accept and forward again; stalled connections flow again.
 */
import * as net from 'node:net';
import { once } from 'node:events';
import { resetSocket } from '../../src/tunnel/pipe';

type Mode = 'open' | 'cut' | 'stalled' | 'upstreamStalled' | 'downstreamStalled';

export class FaultProxy {
  private server = net.createServer((c) => this.onClient(c));
  private pairs = new Set<[net.Socket, net.Socket]>();
  private mode: Mode = 'open';
  port = 0;

  constructor(
    private readonly targetPort = 5672,
    private readonly targetHost = '127.0.0.1',
  ) {}

  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  /** An AMQP URL for the proxy, with the credentials of `brokerUrl`. */
  url(brokerUrl: string): string {
    const u = new URL(brokerUrl);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  get connectionCount(): number {
    return this.pairs.size;
  }

  /** Client connections accepted since start (including ones that closed again). */
  acceptedCount = 0;

  cutAll(): void {
    this.mode = 'cut';
    for (const [a, b] of this.pairs) {
      reset(a);
      reset(b);
    }
    this.pairs.clear();
  }

  stall(): void {
    this.mode = 'stalled';
    for (const [a, b] of this.pairs) {
      a.pause();
      b.pause();
    }
  }

  stallUpstream(): void {
    this.mode = 'upstreamStalled';
    for (const [a] of this.pairs) a.pause();
  }

  stallDownstream(): void {
    this.mode = 'downstreamStalled';
    for (const [, b] of this.pairs) b.pause();
  }

  resume(): void {
    this.mode = 'open';
    for (const [a, b] of this.pairs) {
      a.resume();
      b.resume();
    }
  }

  async close(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onClient(client: net.Socket): void {
    this.acceptedCount++;
    client.on('error', () => undefined);
    if (this.mode === 'cut') {
      reset(client);
      return;
    }
    const upstream = net.connect({ port: this.targetPort, host: this.targetHost });
    upstream.on('error', () => undefined);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    if (this.mode === 'stalled') {
      client.pause();
      upstream.pause();
    }
    if (this.mode === 'upstreamStalled') client.pause();
    if (this.mode === 'downstreamStalled') upstream.pause();
    const drop = (): void => {
      if (!this.pairs.delete(pair)) return;
      reset(client);
      reset(upstream);
    };
    client.on('close', drop);
    upstream.on('close', drop);
  }
}

const reset = resetSocket;
