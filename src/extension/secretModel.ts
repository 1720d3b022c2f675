/**
 * The words and rules behind tunnel secrets and safe defaults in the
 * extension, without vscode, so unit tests can load them.
 */
import type { HostPort } from '../tunnel/spec';
import { MIN_SECRET_BYTES } from '../stream/secure';

/** The one sentence on the risk of publishing without a secret, and what to do. */
export function unprotectedMessage(broker: string, queue: string, target: string): string {
  return `No tunnel secret is set for broker '${broker}', so anyone who can use it and knows the queue name '${queue}' can connect to ${target} (for a debug port: run code on this machine) — set one with "AMQP Tunnel: Set Tunnel Secret" here and the same secret on the other side.`;
}

/** What is wrong with a typed secret ('' is allowed: it removes the secret). */
export function secretInputProblem(value: string): string | undefined {
  if (value === '') return undefined;
  const n = Buffer.byteLength(value, 'utf8');
  if (n < MIN_SECRET_BYTES) {
    return `A tunnel secret needs at least ${MIN_SECRET_BYTES} bytes (this one has ${n}); for example the output of 'openssl rand -base64 32'.`;
  }
  return undefined;
}

/** True for an address that listens on every interface. */
export function isAllInterfaces(bind: HostPort): boolean {
  return bind.host === '0.0.0.0' || bind.host === '::' || bind.host === '[::]';
}

