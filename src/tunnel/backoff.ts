/**
 * Capped exponential backoff with jitter, for reconnecting to the broker.
 *
 * Defaults: 100 ms doubling to a 1 s cap, each delay drawn from [50 %, 100 %]
 * of its nominal value. The cap is small on purpose: a tunnel must be ready
 * again within 2 s after the broker is back, so no wait may be much longer
 * than a second. One TCP connect per second to a down broker costs it
 * nothing; the jitter keeps many tunnels from reconnecting in lockstep.
 */
export interface BackoffOptions {
  /** First delay in ms (default 100). */
  initialMs?: number;
  /** Largest delay in ms (default 1000). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Fraction of each delay that is random (0..1, default 0.5). */
  jitter?: number;
  /** Random source in [0, 1), for tests. */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 100;
    this.maxMs = options.maxMs ?? 1000;
    this.factor = options.factor ?? 2;
    this.jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
    this.random = options.random ?? Math.random;
  }

  /** Attempts since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next attempt, in ms. */
  next(): number {
    const nominal = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt++;
    return Math.round(nominal * (1 - this.jitter * this.random()));
  }

  /** Back to the first delay (after a success). */
  reset(): void {
    this.attempt = 0;
  }
}
