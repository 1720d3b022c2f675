/**
 * The Go bridge's HTTP/1.x client mode: one local port for many published
 * queues. Each local connection is routed by the `X-AMQP-Server-Queue`
 * header of its first request; everything on that connection (including
 * later requests) then goes to that queue.
 *
 * Answered here, as a reverse proxy would, with a plain-text reason:
 *
 * | status | when |
 * |---|---|
 * | 400 Bad Request | no header, a bad queue name, a head over 64 KiB, or the client ended before its head was complete |
 * | 408 Request Timeout | the head was not complete within `headerTimeoutMs` (default 10 s) |
 * | 502 Bad Gateway | the stream could not be opened: nothing listens on the queue, the broker refused |
 * | 504 Gateway Timeout | the listener did not answer the stream's handshake in time |
 *
 * A connection is tracked from its accept: until its stream is open it is
 * "pending", and stop() destroys pending connections at once, so a client
 * that never finishes its head cannot keep a stop (or the first Ctrl-C)
 * waiting.
 */
import type * as net from 'node:net';
import { TunnelError, describeError } from '../common/errors';
import type { StreamSocket } from '../stream';
import { ForwardTunnel, type ForwardOptions } from './forward';
import { parseQueue } from './spec';

export const QUEUE_HEADER = 'x-amqp-server-queue';
const MAX_HEAD = 64 * 1024;
const DEFAULT_HEADER_TIMEOUT_MS = 10_000;

export type WebForwardOptions = Omit<ForwardOptions, 'queue'> & {
  queue?: string;
  /** Ms a connection may take to send its first request head (default 10000). */
  headerTimeoutMs?: number;
};

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 502: 'Bad Gateway', 504: 'Gateway Timeout' };

export class WebForwardTunnel extends ForwardTunnel {
  private readonly headerTimeoutMs: number;
  /** Connections whose stream is not open yet (reading the head, or opening the stream). */
  private readonly pending = new Set<net.Socket>();

  constructor(options: WebForwardOptions) {
    super({ ...options, queue: options.queue ?? '(by X-AMQP-Server-Queue header)', name: options.name ?? 'webclient' });
    this.headerTimeoutMs = options.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS;
  }

  /** Connections still reading their first request head or opening their stream. */
  get pendingConnections(): number {
    return this.pending.size;
  }

  protected override async release(): Promise<void> {
    // Not piped yet, so stop() has no pipe to end: they would hold the listener's close forever.
    for (const tcp of this.pending) tcp.destroy();
    await super.release();
  }

  protected override onLocal(tcp: net.Socket): void {
    const peer = `${tcp.remoteAddress}:${tcp.remotePort}`;
    if (!this.acceptOrRefuse(tcp, peer)) return;
    this.pending.add(tcp);
    tcp.once('close', () => this.pending.delete(tcp));
    tcp.on('error', () => undefined);
    let head = Buffer.alloc(0);
    let answered = false;

    /** Answer with an error status and close (the client's FIN, or the timer, ends it). */
    const reply = (status: number, problem: string): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      tcp.off('data', onData);
      tcp.off('end', onEnd);
      this.recordError(problem);
      this.connLog().warn(`answered ${status} to ${peer}: ${problem}`);
      const body = `amqp-tunnel: ${problem}\n`;
      // Read and drop whatever else comes, so closing never turns into an RST that could eat the answer.
      tcp.resume();
      if (!tcp.destroyed && !tcp.writableEnded) {
        tcp.end(
          `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      // A client that never closes its side is let go after the same bound.
      setTimeout(() => tcp.destroy(), this.headerTimeoutMs).unref();
    };

    const timer = setTimeout(
      () => reply(408, `no complete request head within ${this.headerTimeoutMs} ms`),
      this.headerTimeoutMs,
    );
    timer.unref();
    const onEnd = (): void => reply(400, 'the client ended its side before the request head was complete');
    tcp.once('end', onEnd);

    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0 && head.length <= MAX_HEAD) return;
      clearTimeout(timer);
      tcp.off('data', onData);
      tcp.pause();
      const queue = end < 0 ? undefined : headerValue(head.subarray(0, end).toString('latin1'), QUEUE_HEADER);
      if (queue === undefined) {
        reply(400, end < 0 ? 'request header block too large' : `missing ${QUEUE_HEADER} header`);
        return;
      }
      try {
        parseQueue(queue);
      } catch (err) {
        reply(400, describeError(err));
        return;
      }
      const link = this.acceptOrRefuse(tcp, peer);
      if (!link) return;
      let stream: StreamSocket;
      try {
        stream = link.connect(queue, { allowHalfOpen: true, secret: this.secret });
      } catch (err) {
        reply(502, describeError(err));
        return;
      }
      this.openThen(tcp, stream, queue, head, peer, reply, onEnd);
    };
    tcp.on('data', onData);
  }

  /** Pipe once the stream is open; a stream that fails to open is answered with 502 or 504. */
  private openThen(
    tcp: net.Socket,
    stream: StreamSocket,
    queue: string,
    head: Buffer,
    peer: string,
    reply: (status: number, problem: string) => void,
    onEnd: () => void,
  ): void {
    const onOpenError = (err: Error): void => {
      tcp.off('close', onTcpClose);
      const code = err instanceof TunnelError ? err.code : (err as NodeJS.ErrnoException).code;
      reply(code === 'ETIMEDOUT' ? 504 : 502, describeError(err));
    };
    // The client gave up (or stop() destroyed it) while the stream was opening.
    const onTcpClose = (): void => {
      stream.off('error', onOpenError);
      stream.on('error', () => undefined);
      stream.destroy();
    };
    stream.once('error', onOpenError);
    tcp.once('close', onTcpClose);
    stream.once('connect', () => {
      stream.off('error', onOpenError);
      tcp.off('close', onTcpClose);
      tcp.off('end', onEnd); // from here on the pipe passes the client's end on
      stream.once('error', (err: Error) => this.recordError(err));
      this.pending.delete(tcp);
      tcp.unshift(head);
      this.track(tcp, stream, `${peer} -> ${queue}`);
      tcp.resume();
    });
  }
}

function headerValue(head: string, name: string): string | undefined {
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name) return line.slice(colon + 1).trim();
  }
  return undefined;
}

/** Route local HTTP/1.x connections to queues named by their first request's header. */
export function webForward(options: WebForwardOptions): WebForwardTunnel {
  return new WebForwardTunnel(options);
}
