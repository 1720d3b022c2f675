/**
 * The one error class of the project. Every failure a user can see carries a
 * stable string `code` (Node's meaning where one fits: ECONNREFUSED,
 * ECONNRESET, ETIMEDOUT, EPIPE, EADDRINUSE; `ERR_AMQP_*` otherwise), the
 * underlying `cause`, and a message that blames the right party and says
 * what to do. Messages never contain secrets: callers pass scrubbed URLs.
 */
export type ErrorCode =
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'ETIMEDOUT'
  | 'EPIPE'
  | 'EADDRINUSE'
  | 'ENOTFOUND'
  | 'ERR_AMQP_AUTH'
  | 'ERR_AMQP_VHOST'
  | 'ERR_AMQP_ACCESS'
  | 'ERR_AMQP_TLS'
  | 'ERR_AMQP_BROKER'
  | 'ERR_AMQP_CLOSED'
  | 'ERR_INVALID_URL'
  | 'ERR_INVALID_ARG'
  | 'ERR_TARGET_REFUSED'
  /** A tunnel secret is missing on one side, or the two sides' secrets differ. */
  | 'ERR_AMQP_SECRET';

export class TunnelError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = 'TunnelError';
  }
}

/** True when `err` is a TunnelError with one of the given codes. */
export function hasCode(err: unknown, ...codes: ErrorCode[]): err is TunnelError {
  return err instanceof TunnelError && codes.includes(err.code);
}

/** A short, secret-free description of anything thrown, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
