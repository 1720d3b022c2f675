/**
 * Everything the CLI prints. Human mode: one line per event on stderr, and a
 * live status line when stderr is a TTY. JSON mode: one JSON object per line
 * on stdout ({"time","event",...}). Messages reaching here are already free
 * of passwords (the library and tunnels print scrubbed URLs); `redactUrl` is
 * applied once more as a belt-and-braces measure.
 */
import { redactUrl } from '../stream';
import type { Logger } from '../common/logger';
import { formatHostPort, type StateChange, type Tunnel, type TunnelStats } from '../tunnel';
import { describePipeResult, type ConnectionStats, type PipeResult } from '../tunnel';
import { ForwardTunnel } from '../tunnel';
import { describeError } from '../common/errors';

export class Output {
  private statusShown = false;
  private statusTimer?: NodeJS.Timeout;
  private lastBytes = 0;
  private readonly tty: boolean;
  /** Until the tunnels are ready, human mode prints only the outcome (one line on failure), unless --verbose. */
  starting = true;

  constructor(
    readonly json: boolean,
    readonly verbose: boolean,
    private readonly out: NodeJS.WriteStream = process.stdout,
    private readonly err: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = !json && Boolean(err.isTTY);
  }

  /** A machine-readable event (JSON mode) or nothing. */
  event(name: string, fields: Record<string, unknown>): void {
    if (!this.json) return;
    this.out.write(`${JSON.stringify({ time: new Date().toISOString(), event: name, ...fields })}\n`);
  }

  /** A human line (stderr), or a 'log' event in JSON mode. */
  line(level: 'debug' | 'info' | 'warn' | 'error', message: string): void {
    const text = redactUrl(message);
    if (level === 'debug' && !this.verbose) return;
    if (this.json) {
      this.event('log', { level, message: text });
      return;
    }
    if (this.starting && !this.verbose) return;
    this.clearStatus();
    const prefix = level === 'warn' ? 'warning: ' : level === 'error' ? 'error: ' : '';
    this.err.write(`${new Date().toTimeString().slice(0, 8)} ${prefix}${text}\n`);
  }

  /** The one-line fatal error, without time stamp, for usage and start-up failures. */
  fatal(message: string, hint?: string): void {
    if (this.json) this.event('error', { message: redactUrl(message) });
    this.clearStatus();
    this.err.write(`amqp-tunnel: ${redactUrl(message)}${hint ? ` (${hint})` : ''}\n`);
  }

  logger(): Logger {
    return {
      debug: (m) => this.line('debug', m),
      info: (m) => this.line('info', m),
      warn: (m) => this.line('warn', m),
      error: (m) => this.line('error', m),
    };
  }

  /** Report a tunnel's state changes and connections. */
  watch(tunnel: Tunnel, brokerSafe: string): void {
    tunnel.on('state', (c: StateChange) => {
      const address = tunnel instanceof ForwardTunnel && tunnel.address ? formatHostPort(tunnel.address) : undefined;
      const target = 'target' in tunnel ? formatHostPort((tunnel as unknown as { target: { host: string; port: number } }).target) : undefined;
      this.event('state', {
        tunnel: tunnel.name,
        kind: tunnel.kind,
        queue: tunnel.queue,
        state: c.state,
        previous: c.previous,
        address,
        target,
        error: c.error ? describeError(c.error) : undefined,
        held: c.held,
      });
      if (this.json) return;
      if (c.state === 'ready' && c.previous === 'starting') {
        this.starting = false;
        // One short line that says "ready", also where stderr is no terminal (a container, systemd, a CI log).
        if (tunnel.kind === 'publish') this.line('info', `ready: publishing ${target} on queue '${tunnel.queue}' (${brokerSafe})`);
        else this.line('info', `ready: forwarding ${address} -> queue '${tunnel.queue}' (${brokerSafe})`);
      } else if (c.state === 'ready') {
        this.line('info', `${tunnel.name}: broker connection back; ready`);
      } else if (c.state === 'reconnecting' && c.held !== undefined) {
        this.line('warn', `${tunnel.name}: broker connection lost; reconnecting, ${c.held} stream${c.held === 1 ? '' : 's'} held`);
      } else if (c.state === 'reconnecting') {
        this.line('warn', `${tunnel.name}: broker connection lost; open connections were reset; reconnecting`);
      }
    });
    tunnel.on('blocked', (reason: string) => {
      this.event('blocked', { tunnel: tunnel.name, reason });
      if (!this.json) this.line('warn', `${tunnel.name}: blocked by the broker: ${reason} — transfers wait until the broker's alarm clears`);
    });
    tunnel.on('unblocked', () => {
      this.event('unblocked', { tunnel: tunnel.name });
      if (!this.json) this.line('info', `${tunnel.name}: no longer blocked by the broker; transfers go on`);
    });
    tunnel.on('connection', (c: ConnectionStats) => this.event('connection', { tunnel: tunnel.name, id: c.id, peer: c.peer, stream: c.stream }));
    tunnel.on('connectionClosed', (c: ConnectionStats, r: PipeResult) =>
      this.event('connectionClosed', {
        tunnel: tunnel.name,
        id: c.id,
        peer: c.peer,
        tcpToStream: r.tcpToStream,
        streamToTcp: r.streamToTcp,
        durationMs: r.durationMs,
        error: r.error ? describeError(r.error) : undefined,
        summary: describePipeResult(r),
      }),
    );
  }

  /** Live status line on a TTY, refreshed every second. */
  startStatus(stats: () => TunnelStats[]): void {
    if (!this.tty) return;
    this.statusTimer = setInterval(() => {
      const all = stats();
      const bytes = all.reduce((n, s) => n + s.tcpToStream + s.streamToTcp, 0);
      const rate = bytes - this.lastBytes;
      this.lastBytes = bytes;
      const held = all.reduce((n, s) => n + (s.held ?? 0), 0);
      const states = [...new Set(all.map((s) => (s.state === 'reconnecting' && s.held !== undefined ? `reconnecting, ${held} stream${held === 1 ? '' : 's'} held` : s.state)))].join('/');
      const active = all.reduce((n, s) => n + s.activeConnections, 0);
      const total = all.reduce((n, s) => n + s.totalConnections, 0);
      const up = all.reduce((n, s) => n + s.tcpToStream, 0);
      const down = all.reduce((n, s) => n + s.streamToTcp, 0);
      this.err.write(`\r\x1b[K${states} | ${active} open, ${total} total | out ${size(up)} in ${size(down)} | ${size(rate)}/s`);
      this.statusShown = true;
    }, 1000);
    this.statusTimer.unref();
  }

  stopStatus(): void {
    clearInterval(this.statusTimer);
    this.clearStatus();
  }

  private clearStatus(): void {
    if (!this.statusShown) return;
    this.err.write('\r\x1b[K');
    this.statusShown = false;
  }
}

function size(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
