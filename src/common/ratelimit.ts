/**
 * Logging for problems that arrive from outside in bulk: malformed messages
 * on a control or data queue. Anyone who may publish on the broker can send
 * thousands a second, so logging each one would flood the user's log (and
 * the CLI's terminal, and the extension's output channel) and hide the one
 * line that matters. Instead each KIND of problem gets one line per
 * interval: the first occurrence at once, and, when more followed within
 * the interval, one line at its end that counts them and quotes the last.
 *
 * A kind is a short human label ("malformed connection request on 'q'"),
 * used in the count line. Kinds must come from a bounded set (constants, or
 * a constant per listener queue), never from the message itself: the state
 * kept is one entry per kind with a window open.
 */
import type { Logger } from './logger';

export interface RateLimitOptions {
  /** Milliseconds per kind between full lines (default 60 000). */
  intervalMs?: number;
}

interface KindState {
  suppressed: number;
  last: string;
  timer?: NodeJS.Timeout;
}

const DEFAULT_INTERVAL_MS = 60_000;

export class RateLimitedLogger {
  private readonly kinds = new Map<string, KindState>();
  private readonly intervalMs: number;

  constructor(
    private readonly logger: Logger,
    options: RateLimitOptions = {},
  ) {
    this.intervalMs = Math.max(1, options.intervalMs ?? DEFAULT_INTERVAL_MS);
  }

  /** Log `message` as a warning unless a line of this `kind` went out within the interval; then count it. */
  warn(kind: string, message: string): void {
    const state = this.kinds.get(kind);
    if (!state) {
      this.kinds.set(kind, { suppressed: 0, last: message, timer: this.startWindow(kind) });
      this.logger.warn(message);
      return;
    }
    state.suppressed++;
    state.last = message;
  }

  /** Write the counts still pending now and start over (for example when the connection closes). */
  flush(): void {
    for (const kind of [...this.kinds.keys()]) this.endWindow(kind);
  }

  private startWindow(kind: string): NodeJS.Timeout {
    const timer = setTimeout(() => this.endWindow(kind), this.intervalMs);
    // A quiet process must be able to exit with a window still open.
    timer.unref();
    return timer;
  }

  private endWindow(kind: string): void {
    const state = this.kinds.get(kind);
    if (!state) return;
    clearTimeout(state.timer);
    this.kinds.delete(kind);
    if (state.suppressed === 0) return;
    const ms = this.intervalMs;
    const span = ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`;
    this.logger.warn(`${kind}: ${state.suppressed} more within ${span}, not logged one by one; the last: ${state.last}`);
  }
}

/**
 * Text that came from the broker (a queue name, a reset reason), made safe
 * for one log line: control characters escaped, at most `max` characters.
 */
export function untrusted(text: string, max = 100): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  // JSON escapes newlines and other control characters, so a sender cannot forge log lines.
  return JSON.stringify(cut);
}
