/**
 * forward: a local TCP port whose connections each open a stream to the
 * publisher on a queue.
 *
 * The local port stays bound for the tunnel's whole life, including while it
 * reconnects to the broker. A local connection that arrives while the tunnel
 * is not ready is refused at once with a TCP reset (RST): a debugger retries
 * on its own, and a fast, visible failure beats a connection that hangs for
 * an unknown time. Streams that fail (no publisher, target refused on the
 * other side) reset their TCP connection and are logged with the reason the
 * publisher sent.
 */
import * as net from 'node:net';
import { once } from 'node:events';
import { TunnelError, describeError } from '../common/errors';
import { formatHostPort, parseBind, type HostPort } from './spec';
import { Tunnel, type TunnelOptions } from './tunnel';
import type { BrokerLink } from './transport';
import { resetSocket } from './pipe';

export interface ForwardOptions extends TunnelOptions {
  /** Where to listen: "[host:]port" (host defaults to 127.0.0.1, port 0 picks a free one) or a parsed address. */
  bind?: string | HostPort;
}

export class ForwardTunnel extends Tunnel {
  readonly kind = 'forward' as const;
  readonly bind: HostPort;
  private server?: net.Server;
  private bound?: HostPort;

  constructor(options: ForwardOptions) {
    // Parsed before the tunnel starts, so a bad address never reaches the broker.
    const bind = options.bind === undefined ? { host: '127.0.0.1', port: 0 } : typeof options.bind === 'string' ? parseBind(options.bind) : options.bind;
    super('forward', options);
    this.bind = bind;
  }

  /** The local address actually bound (after `prepare`), with the real port when 0 was asked. */
  get address(): HostPort | undefined {
    return this.bound;
  }

  protected override async prepare(): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true }, (tcp) => this.onLocal(tcp));
    this.server = server;
    server.listen(this.bind.port, this.bind.host);
    try {
      await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const where = formatHostPort(this.bind);
      throw new TunnelError(
        e.code === 'EADDRINUSE' ? 'EADDRINUSE' : 'ERR_INVALID_ARG',
        e.code === 'EADDRINUSE'
          ? `local port ${where} is already in use — choose another port, or 0 for a free one`
          : `cannot listen on ${where}: ${describeError(e)}`,
        { cause: err },
      );
    }
    server.on('error', (err: Error) => this.log.warn(`local listener error: ${describeError(err)}`));
    const a = server.address() as net.AddressInfo;
    this.bound = { host: a.address, port: a.port };
    this.log.info(`listening on ${formatHostPort(this.bound)}`);
  }

  protected async setup(_link: BrokerLink): Promise<void> {
    this.log.info(`connected to ${this.transport.address}; local connections go to queue '${this.queue}'`);
  }

  protected teardown(): void {
    // Nothing belongs to the broker connection but the streams, which the library resets.
  }

  protected override async release(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** A local connection arrived: open a stream for it (overridden by the HTTP router). */
  protected onLocal(tcp: net.Socket): void {
    const peer = `${tcp.remoteAddress}:${tcp.remotePort}`;
    const link = this.acceptOrRefuse(tcp, peer);
    if (link) this.openStream(tcp, link, this.queue, peer);
  }

  /** The broker link when the tunnel is ready; otherwise the connection is reset at once and undefined returned. */
  protected acceptOrRefuse(tcp: net.Socket, peer: string): BrokerLink | undefined {
    const link = this.link;
    if (this.state === 'ready' && link) return link;
    const why = this.state === 'reconnecting' ? 'the tunnel is reconnecting to the broker' : `the tunnel is ${this.state}`;
    this.connLog().warn(`refused local connection from ${peer}: ${why}`);
    tcp.on('error', () => undefined);
    resetSocket(tcp);
    return undefined;
  }

  /** Open a stream to `queue` and pipe `tcp` into it. */
  protected openStream(tcp: net.Socket, link: BrokerLink, queue: string, peer: string): void {
    let stream;
    try {
      stream = link.connect(queue, { allowHalfOpen: true, secret: this.secret });
    } catch (err) {
      this.recordError(err as Error);
      this.connLog().warn(`could not open a stream: ${describeError(err)}`);
      tcp.on('error', () => undefined);
      resetSocket(tcp);
      return;
    }
    stream.once('error', (err: Error) => this.recordError(err));
    this.track(tcp, stream, peer);
  }
}

/** Forward a local port to the publisher on a queue. Await `tunnel.ready`; call `stop()` to end. */
export function forward(options: ForwardOptions): ForwardTunnel {
  return new ForwardTunnel(options);
}
