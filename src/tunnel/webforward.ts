/**
 * The Go bridge's HTTP/1.x client mode: one local port for many published
 * queues. Each local connection is routed by the `X-AMQP-Server-Queue`
 * header of its first request; everything on that connection (including
 * later requests) then goes to that queue. A first request without the
 * header, or with a header block over 64 KiB, is answered with a 400.
 */
import type * as net from 'node:net';
import { describeError } from '../common/errors';
import { ForwardTunnel, type ForwardOptions } from './forward';
import { parseQueue } from './spec';

export const QUEUE_HEADER = 'x-amqp-server-queue';
const MAX_HEAD = 64 * 1024;

export type WebForwardOptions = Omit<ForwardOptions, 'queue'> & { queue?: string };

export class WebForwardTunnel extends ForwardTunnel {
  constructor(options: WebForwardOptions) {
    super({ ...options, queue: options.queue ?? '(by X-AMQP-Server-Queue header)', name: options.name ?? 'webclient' });
  }

  protected override onLocal(tcp: net.Socket): void {
    const peer = `${tcp.remoteAddress}:${tcp.remotePort}`;
    if (!this.acceptOrRefuse(tcp, peer)) return;
    let head = Buffer.alloc(0);
    const onError = (): void => undefined;
    tcp.on('error', onError);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0 && head.length <= MAX_HEAD) return;
      tcp.off('data', onData);
      tcp.pause();
      const queue = end < 0 ? undefined : headerValue(head.subarray(0, end).toString('latin1'), QUEUE_HEADER);
      let problem: string | undefined;
      if (queue === undefined) problem = end < 0 ? 'request header block too large' : `missing ${QUEUE_HEADER} header`;
      else {
        try {
          parseQueue(queue);
        } catch (err) {
          problem = describeError(err);
        }
      }
      if (problem || queue === undefined) {
        this.connLog().warn(`rejected request from ${peer}: ${problem}`);
        const body = `amqp-tunnel: ${problem}\n`;
        tcp.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
        return;
      }
      const link = this.acceptOrRefuse(tcp, peer);
      if (!link) return;
      tcp.off('error', onError);
      tcp.unshift(head);
      this.openStream(tcp, link, queue, `${peer} -> ${queue}`);
      tcp.resume();
    };
    tcp.on('data', onData);
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
