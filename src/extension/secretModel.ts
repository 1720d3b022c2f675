/**
 * The words and rules behind tunnel secrets and safe defaults in the
 * extension, without vscode, so unit tests can load them.
 */
import { formatHostPort, type HostPort } from '../tunnel/spec';
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

/** The question before a forward listens on every interface. */
export function allInterfacesQuestion(queue: string, bind: HostPort): string {
  return `Forward '${queue}' on every network interface (${formatHostPort(bind)})? Anyone who can reach this machine on port ${bind.port} then reaches whatever the queue is published from (for a debug port: can run code there). To keep it to this machine, bind 127.0.0.1:${bind.port} instead.`;
}

/** Why a forward on every interface did not start when the user did not confirm it, and how to keep it local. */
export function bindNotConfirmedMessage(queue: string, bind: HostPort): string {
  const local = `127.0.0.1:${bind.port}`;
  return `listening on every network interface (${formatHostPort(bind)}) for queue '${queue}' was not confirmed — to keep the forward to this machine, bind ${local} instead (the tunnel's "bind" in amqpTunnel.tunnels, or the address typed into "Forward port over AMQP")`;
}

