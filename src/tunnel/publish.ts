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
 *
 * Unless `listed` is false, the publisher also answers discovery queries
 * (discovery.ts) with what listens on its target (detect.ts), on each
 * broker connection once the target was looked at. Discovery failing (a
 * user without the right to declare the exchange) is logged and never
 * stops the tunnel.
 */
import * as net from 'node:net';
import type { StreamServer, StreamSocket } from '../stream';
import { TunnelError, describeError } from '../common/errors';
import { settleWithin } from '../common/timeout';
import { formatHostPort, parseTarget, type HostPort } from './spec';
import { Tunnel, type TunnelOptions } from './tunnel';
import type { BrokerLink } from './transport';
import { detectProtocol, type Detection } from './detect';
import { DiscoveryResponder, publisherInfo } from './discovery';

/** How old a detection may be before a query makes the publisher look at its target again. */
const DETECTION_MAX_AGE_MS = 5000;
/** Longest the first start waits for the first look at the target (it runs while the broker connection is made). */
const FIRST_DETECTION_WAIT_MS = 3000;

export interface PublishOptions extends TunnelOptions {
  /** The TCP service to publish: "[host:]port" (host defaults to 127.0.0.1) or a parsed address. */
  target: string | HostPort;
  /** Answer discovery queries (`amqp-tunnel list`, the extension's view); default true. */
  listed?: boolean;
}

export class PublishTunnel extends Tunnel {
  readonly kind = 'publish' as const;
  readonly target: HostPort;
  /** Whether this publisher answers discovery queries. */
  readonly listed: boolean;
  private server?: StreamServer;
  private readonly startedAt = new Date();
  private detection: Detection = { protocol: 'unknown' };
  private detectedAt = 0;
  private detecting?: Promise<void>;
  private responder?: DiscoveryResponder;
  /** The last responder's stop, awaited before the broker connection closes (a "down" must not be overtaken by the close). */
  private goodbye?: Promise<void>;

  constructor(options: PublishOptions) {
    // Parsed before the tunnel starts, so a bad target never reaches the broker.
    const target = typeof options.target === 'string' ? parseTarget(options.target) : options.target;
    super('publish', options);
    this.target = target;
    this.listed = options.listed ?? true;
  }

  /** What listens on the target, as last detected (refreshed while queries come in). */
  get detected(): Detection {
    return this.detection;
  }

  protected override async prepare(): Promise<void> {
    // Look at the target while the broker connection is being made.
    if (this.listed) void this.detect();
  }

  private detect(): Promise<void> {
    this.detecting ??= detectProtocol(this.target)
      .then(
        (d) => {
          // A look that found less about the same process (an inspector slow to answer on a loaded machine) changes nothing.
          if (d.protocol === 'unknown' && this.detection.protocol !== 'unknown' && d.pid === this.detection.pid) return;
          if (d.protocol !== this.detection.protocol) this.log.info(`target ${formatHostPort(this.target)}: ${d.protocol}${d.runtime ? ` (${d.runtime})` : ''}`);
          this.detection = d;
        },
        (err: unknown) => this.log.debug(`could not look at the target: ${describeError(err)}`),
      )
      .finally(() => {
        this.detectedAt = Date.now();
        this.detecting = undefined;
      });
    return this.detecting;
  }

  private info() {
    if (Date.now() - this.detectedAt > DETECTION_MAX_AGE_MS) void this.detect();
    return publisherInfo({
      queue: this.queue,
      target: formatHostPort(this.target),
      startedAt: this.startedAt,
      detection: this.detection,
      secretRequired: this.secret !== undefined,
    });
  }

  /** Start answering discovery queries on this connection: ready implies listed. Failing is logged, never fatal. */
  private async startDiscovery(link: BrokerLink): Promise<void> {
    const responder = new DiscoveryResponder(() => this.info(), this.log);
    this.responder = responder;
    try {
      // The first look at the target (started before connecting) is in the first answer; later looks refresh in the background.
      if (this.detecting) await settleWithin(this.detecting, FIRST_DETECTION_WAIT_MS, undefined);
      if (this.responder !== responder) return;
      await responder.start(link);
      // Torn down while starting: stop what was just started.
      if (this.responder !== responder) await responder.stop(this.state === 'stopped');
    } catch (err) {
      if (this.responder === responder && link.isOpen) this.log.warn(`not listed on the broker (amqp-tunnel list will not show it): ${describeError(err)}`);
    }
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
    if (this.listed) await this.startDiscovery(link);
  }

  protected teardown(): void {
    const responder = this.responder;
    this.responder = undefined;
    // An orderly stop says goodbye; after a lost connection there is nobody to tell.
    if (responder) this.goodbye = responder.stop(this.state === 'stopped').catch(() => undefined);
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.on('error', () => undefined);
    // In every state: a server still opening (a reconnect attempt that stop() cut short) closes once its setup is done.
    server.close(() => undefined);
  }

  protected override async release(): Promise<void> {
    await this.goodbye;
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
