/**
 * publish: make a local TCP service reachable through the broker. A stream
 * server listens on the queue; each stream gets a new TCP connection to the
 * target and the two are piped.
 *
 * If nothing listens on the target, the stream is reset with a reason the
 * forwarding side shows ("nothing listens on 127.0.0.1:9229 on the
 * publishing machine"); v1 (Go) peers just see the stream end.
 *
 * After losing the broker the publisher listens again; the broker may still
 * hold the old exclusive control queue for a moment (RESOURCE_LOCKED, seen
 * as EADDRINUSE), which is retried like any other failure. On the first
 * start, EADDRINUSE is fatal: someone else publishes that queue.
 */
import * as net from 'node:net';
import type { StreamServer, StreamSocket } from '../stream';
import { TunnelError, describeError } from '../common/errors';
import { formatHostPort, parseTarget, type HostPort } from './spec';
import { Tunnel, type TunnelOptions } from './tunnel';
import type { BrokerLink } from './transport';

export interface PublishOptions extends TunnelOptions {
  /** The TCP service to publish: "[host:]port" (host defaults to 127.0.0.1) or a parsed address. */
  target: string | HostPort;
}

export class PublishTunnel extends Tunnel {
  readonly kind = 'publish' as const;
  readonly target: HostPort;
  private server?: StreamServer;

  constructor(options: PublishOptions) {
    // Parsed before the tunnel starts, so a bad target never reaches the broker.
    const target = typeof options.target === 'string' ? parseTarget(options.target) : options.target;
    super('publish', options);
    this.target = target;
  }

  protected async setup(link: BrokerLink): Promise<void> {
    const server = link.createServer({ allowHalfOpen: true, secret: this.secret }, (stream) => this.onStream(stream));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      // teardown() may close the server while it opens (stop() during a reconnect attempt): settle then too.
      const onClose = (): void => reject(new TunnelError('ERR_AMQP_CLOSED', `the listener on queue '${this.queue}' was closed while it was opening`));
      server.once('error', reject);
      server.once('close', onClose);
      server.listen(this.queue, () => {
        server.off('error', reject);
        server.off('close', onClose);
        resolve();
      });
    });
    server.on('error', (err: Error) => {
      if (this.server === server) this.lost(err);
    });
    this.log.info(`listening on queue '${this.queue}' at ${this.transport.address}; streams go to ${formatHostPort(this.target)}`);
  }

  protected teardown(): void {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.on('error', () => undefined);
    // In every state: a server still opening (a reconnect attempt that stop() cut short) closes once its setup is done.
    server.close(() => undefined);
  }

  private onStream(stream: StreamSocket): void {
    const target = formatHostPort(this.target);
    // A stream can arrive between 'listening' and the state change to ready: only a stopped tunnel refuses.
    if (this.state === 'stopped' || this.state === 'failed') {
      stream.destroy(new TunnelError('ECONNRESET', 'the publisher is stopping'));
      return;
    }
    const tcp = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    let piped = false;
    const onStreamEarlyError = (err: Error): void => {
      tcp.destroy();
      this.connLog().warn(`stream failed before the target connection was up: ${describeError(err)}`);
    };
    stream.once('error', onStreamEarlyError);
    tcp.once('error', (err: NodeJS.ErrnoException) => {
      if (piped) return; // the pipe reports it
      const reason =
        err.code === 'ECONNREFUSED'
          ? `nothing listens on ${target} on the publishing machine`
          : `cannot connect to ${target} on the publishing machine: ${describeError(err)}`;
      this.recordError(reason);
      this.connLog().warn(`refused a stream: ${reason}`);
      stream.off('error', onStreamEarlyError);
      stream.on('error', () => undefined);
      stream.destroy(new TunnelError('ERR_TARGET_REFUSED', reason, { cause: err }));
    });
    tcp.once('connect', () => {
      piped = true;
      stream.off('error', onStreamEarlyError);
      if (stream.destroyed) {
        tcp.destroy();
        return;
      }
      this.track(tcp, stream, `to ${target}`, stream.remoteAddress ?? undefined);
    });
  }
}

/** Publish a local TCP port on a queue. Await `tunnel.ready`; call `stop()` to end. */
export function publish(options: PublishOptions): PublishTunnel {
  return new PublishTunnel(options);
}
