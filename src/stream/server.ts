/**
 * A listener on a control queue, shaped like net.Server: 'listening',
 * 'connection' (a StreamSocket), 'error', 'close', `close(cb)`, `address()`.
 *
 * The control queue is declared exclusive and auto-delete on a channel of
 * its own, so a second listener anywhere gets the broker's RESOURCE_LOCKED,
 * reported as EADDRINUSE. Every control message is acked once the stream is
 * set up, or rejected (not requeued) and logged when it is malformed; the
 * Go listener acks none of them.
 */
import { EventEmitter } from 'node:events';
import type { Channel, ConsumeMessage } from 'amqplib';
import { TunnelError, describeError } from '../common/errors';
import { untrusted } from '../common/ratelimit';
import { channelError } from './brokerErrors';
import type { Connection } from './connection';
import { NONCE_HEADER, REFUSAL, REFUSED_HEADER, RefusalLog, resolveSecret } from './auth';
import { VERSION_HEADER, connectionRequestProblem, peerFeatures, peerVersion, publishOptions } from './protocol';
import { NONCE_BYTES, headerBytes } from './secure';
import { StreamSocket, type SocketOptions } from './socket';
import { assertQueueName, formatStreamAddress } from './url';

export type ServerOptions = SocketOptions;

export class StreamServer extends EventEmitter {
  private readonly conn: Connection;
  private readonly socketOptions: SocketOptions;
  private queue?: string;
  private channel?: Channel;
  private consumerTag?: string;
  private connections = new Set<StreamSocket>();
  private state: 'idle' | 'opening' | 'listening' | 'closing' | 'closed' = 'idle';
  private closeCallbacks: Array<(err?: Error) => void> = [];
  /** The setup started by listen(), settled or not: close() waits for it before it tears down. */
  private opening?: Promise<void>;
  /** This server's tunnel secret (its own, else the connection's); requests that cannot prove it are refused. */
  private readonly secret?: Buffer;
  private readonly refusals: RefusalLog;

  /** @internal use `Connection.createServer()` or `Connection.listen()` */
  constructor(conn: Connection, options: ServerOptions = {}) {
    super();
    this.conn = conn;
    this.socketOptions = options;
    this.secret = resolveSecret(options.secret) ?? conn.options.secret;
    this.refusals = new RefusalLog(conn.options.logger);
  }

  /** True once the control queue is declared and consumed. */
  get listening(): boolean {
    return this.state === 'listening';
  }

  /** Open streams accepted by this server. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** The Go-style address of the listener (no password), or null when not listening. */
  address(): string | null {
    return this.queue && this.state === 'listening' ? formatStreamAddress(this.conn.url.safeUrl, this.queue) : null;
  }

  /** Start listening on `queue`; 'listening' or 'error' follows. */
  listen(queue: string, onListening?: () => void): this {
    if (this.state !== 'idle') {
      throw new TunnelError('ERR_INVALID_ARG', `this server is already ${this.state === 'listening' ? 'listening' : this.state}`);
    }
    assertQueueName(queue);
    if (this.secret && this.conn.options.protocolVersion < 2) {
      throw new TunnelError('ERR_INVALID_ARG', 'a tunnel secret needs protocol v2: v1 (the Go library) cannot authenticate');
    }
    if (onListening) this.once('listening', onListening);
    this.state = 'opening';
    this.queue = queue;
    this.opening = this.open(queue);
    this.opening.then(
      () => {
        if (this.state !== 'opening') return;
        this.state = 'listening';
        this.conn.options.logger.info(`listening on queue '${queue}' at ${this.conn.url.safeUrl}`);
        this.emit('listening');
      },
      (err: unknown) => this.fail(err instanceof TunnelError ? err : channelError(err, this.conn.url, queue, 'listen on')),
    );
    return this;
  }

  private async open(queue: string): Promise<void> {
    this.conn.registerServer(queue, this);
    const ch = await this.conn.openChannel();
    this.channel = ch;
    let setupDone = false;
    ch.on('close', () => {
      // On nextTick: when the whole broker connection went, its 'close' (same
      // tick) fails the server first, with the cause.
      process.nextTick(() => {
        if (setupDone && this.state === 'listening') {
          this.fail(new TunnelError('ECONNRESET', `the listener's channel on queue '${queue}' closed`));
        }
      });
    });
    await ch.assertQueue(queue, { durable: false, autoDelete: true, exclusive: true });
    await ch.prefetch(100, false);
    const { consumerTag } = await ch.consume(queue, (msg) => this.onControl(msg), {
      noAck: false,
      exclusive: true,
      consumerTag: queue,
    });
    this.consumerTag = consumerTag;
    setupDone = true;
  }

  private onControl(msg: ConsumeMessage | null): void {
    const queue = this.queue!;
    if (msg === null) {
      this.fail(new TunnelError('ECONNRESET', `the broker cancelled the listener on queue '${queue}' (was the queue deleted?)`));
      return;
    }
    const ch = this.channel!;
    const problems = this.conn.options.problemLog;
    const problem = connectionRequestProblem(msg, queue);
    // A request can arrive between the consume and the 'listening' event: serve it.
    if (problem || (this.state !== 'listening' && this.state !== 'opening')) {
      if (problem) {
        problems.warn(
          `malformed connection requests on '${queue}' (${problem.kind})`,
          `rejected a malformed connection request on queue '${queue}': ${problem.text}`,
        );
      }
      try {
        ch.reject(msg, false);
      } catch {
        // channel gone: the broker drops the message with the queue
      }
      return;
    }
    const clientQueue = msg.properties.replyTo as string;
    // A stream of ours already sends to that queue: a second stream to it
    // would take over its broker returns (and so its dead-peer detection).
    // Real clients never reuse a queue, so the request is forged or replayed.
    if (this.conn.hasReturnRoute(clientQueue)) {
      problems.warn(
        `connection requests on '${queue}' naming a live stream's queue`,
        `rejected a connection request on queue '${queue}' whose reply-to ${untrusted(clientQueue)} is already the queue of a live stream (forged or replayed)`,
      );
      try {
        ch.reject(msg, false);
      } catch {
        // channel gone: the broker drops the message with the queue
      }
      return;
    }
    if (this.secret && !this.canAuthenticate(ch, msg, queue, clientQueue)) return;
    const socket = new StreamSocket(this.socketOptions);
    this.connections.add(socket);
    socket.once('close', () => {
      this.connections.delete(socket);
      this.maybeClosed();
    });
    // Until 'connection' hands it out, nobody can listen for its errors (a broker
    // connection lost while the reply awaits its confirm): those go to the log path
    // below, never to an 'error' event without a listener (an uncaught exception).
    const unseen = (): void => undefined;
    socket.on('error', unseen);
    const headers = msg.properties.headers;
    socket._accept(this.conn, queue, clientQueue, peerVersion(headers), peerFeatures(headers), headers).then(
      (clientThere) => {
        safeAck(ch, msg);
        if (!clientThere) {
          problems.warn(
            `connection requests on '${queue}' from no client`,
            `ignored a connection request on queue '${queue}' whose reply-to queue ${untrusted(clientQueue)} does not exist (the client gave up, or the request was forged)`,
          );
          socket.destroy();
        } else if (!socket.destroyed) {
          socket.off('error', unseen);
          this.emit('connection', socket);
        }
      },
      (err: unknown) => {
        safeAck(ch, msg);
        if (err instanceof TunnelError && err.code === 'ERR_AMQP_SECRET') this.refusals.refused(queue, clientQueue, err.message);
        else problems.warn(`failed accepts on '${queue}'`, `could not accept a stream on queue '${queue}': ${describeError(err)}`);
        socket.destroy();
      },
    );
  }

  /**
   * With a secret, refuse at once (no queue declared, no TCP connection) a
   * request that cannot authenticate: a v1 request is rejected (v1 has no
   * way to hear a reason; its client times out), a v2 request without `auth`
   * gets a reply that says the tunnel requires a secret.
   */
  private canAuthenticate(ch: Channel, msg: ConsumeMessage, queue: string, clientQueue: string): boolean {
    const headers = msg.properties.headers;
    if (peerVersion(headers) < 2) {
      this.refusals.refused(queue, clientQueue, 'a v1 client cannot authenticate, and this publisher requires a tunnel secret');
      try {
        ch.reject(msg, false);
      } catch {
        // channel gone: the broker drops the message with the queue
      }
      return false;
    }
    if (peerFeatures(headers).has('auth') && headerBytes(headers?.[NONCE_HEADER], NONCE_BYTES)) return true;
    this.refusals.refused(queue, clientQueue, 'the client has no tunnel secret, and this publisher requires one');
    this.conn.publish(clientQueue, Buffer.alloc(0), publishOptions({ headers: { [VERSION_HEADER]: 2, [REFUSED_HEADER]: REFUSAL.noSecret } }));
    safeAck(ch, msg);
    return false;
  }

  /** Stop accepting streams; 'close' follows once every accepted stream has closed. */
  close(cb?: (err?: Error) => void): this {
    if (this.state === 'closed' || this.state === 'idle') {
      if (cb) process.nextTick(cb, new TunnelError('ERR_INVALID_ARG', 'the server is not listening'));
      return this;
    }
    if (cb) this.closeCallbacks.push(cb);
    if (this.state === 'closing') return this;
    this.state = 'closing';
    this.stopListening().finally(() => this.maybeClosed());
    return this;
  }

  private async stopListening(): Promise<void> {
    // Closed while opening: let the setup finish first, or its consumer would
    // outlive the server (an exclusive consumer that rejects every request
    // and locks the queue against the next listener).
    await this.opening?.catch(() => undefined);
    if (this.queue) this.conn.unregisterServer(this.queue, this);
    const ch = this.channel;
    this.channel = undefined;
    if (!ch) return;
    // Cancelling the consumer deletes the auto-delete control queue; closing the channel makes sure.
    if (this.consumerTag) await ch.cancel(this.consumerTag).catch(() => undefined);
    await ch.close().catch(() => undefined);
  }

  private maybeClosed(): void {
    if (this.state !== 'closing' || this.channel || this.connections.size > 0) return;
    this.state = 'closed';
    this.finishClose();
  }

  private finishClose(): void {
    const cbs = this.closeCallbacks;
    this.closeCallbacks = [];
    process.nextTick(() => {
      for (const cb of cbs) cb();
      this.emit('close');
    });
  }

  private fail(err: TunnelError): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.conn.options.logger.warn(err.message);
    this.state = 'closing';
    this.stopListening().finally(() => {
      // 'close' follows on nextTick, after 'error' (a throwing or missing
      // 'error' listener must not leave the server closing forever).
      this.maybeClosed();
      this.emit('error', err);
    });
  }

  /** @internal the broker connection is gone: fail and close. */
  _connectionLost(err: TunnelError): void {
    this.fail(err);
  }
}

function safeAck(ch: Channel, msg: ConsumeMessage): void {
  try {
    ch.ack(msg);
  } catch {
    // channel closed: nothing left to acknowledge
  }
}
