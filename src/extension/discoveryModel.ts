/**
 * The plain logic of the "Published on <broker>" section and one-click
 * attach (no vscode import, so it is unit-tested without an editor): which
 * debugger a detected protocol needs, the attach configuration for a
 * published entry, and the words and icons the view and the pick list show.
 */
import { age, type DebugProtocol, type PublisherInfo } from '../tunnel/discovery';

export interface DebuggerNeed {
  /** What the user calls it. */
  label: string;
  /** Debug types, preferred first; the first one installed is used. */
  types: string[];
  /** The extension that provides the first type, for "open it in the Extensions view". */
  extensionId: string;
  extensionName: string;
  /** Fields the attach configuration needs besides the address. */
  extra: Record<string, unknown>;
}

/**
 * The one table of debuggers the extension attaches with: by detected
 * protocol (one-click attach of a published entry) and, in this order, the
 * "What runs on the remote side?" pick (Attach Debugger on a forward, and a
 * published entry whose protocol was not detected).
 */
export const DEBUGGERS: Record<Exclude<DebugProtocol, 'unknown'>, DebuggerNeed> = {
  node: { label: 'Node.js', types: ['node', 'pwa-node'], extensionId: 'ms-vscode.js-debug', extensionName: 'JavaScript Debugger', extra: {} },
  python: { label: 'Python (debugpy)', types: ['debugpy', 'python'], extensionId: 'ms-python.debugpy', extensionName: 'Python Debugger', extra: { justMyCode: false } },
  java: { label: 'Java', types: ['java'], extensionId: 'vscjava.vscode-java-debug', extensionName: 'Debugger for Java', extra: {} },
  go: { label: 'Go (Delve)', types: ['go'], extensionId: 'golang.go', extensionName: 'Go', extra: { mode: 'remote' } },
};

/** The debuggers in pick order. */
export const DEBUGGER_LIST: readonly DebuggerNeed[] = Object.values(DEBUGGERS);

/** The debugger that runs debug type `type` ('pwa-node' is Node.js), if it is one of ours. */
export function debuggerOfType(type: string): DebuggerNeed | undefined {
  return DEBUGGER_LIST.find((d) => d.types.includes(type));
}

export interface DebuggerRow {
  label: string;
  /** The installed type, or which extension is missing. */
  description: string;
  need: DebuggerNeed;
  /** The installed type, undefined when the debugger's extension is missing. */
  type?: string;
}

/** The "What runs on the remote side?" rows: installed debuggers say their type, missing ones which extension they need. */
export function debuggerRows(installed: Set<string>): DebuggerRow[] {
  return DEBUGGER_LIST.map((need) => {
    const type = installedType(need, installed);
    return { label: need.label, description: type ? `type "${type}"` : `not installed: needs the ${need.extensionName} extension (${need.extensionId})`, need, type };
  });
}

/** The sentence for a debugger whose extension is missing. */
export function missingDebuggerMessage(need: DebuggerNeed): string {
  return `attaching to ${need.label} needs the ${need.extensionName} extension (${need.extensionId}), which is not installed — install it from the Extensions view, then attach again`;
}

/** The debugger a detected protocol needs, or undefined when the protocol is unknown. */
export function debuggerFor(protocol: DebugProtocol): DebuggerNeed | undefined {
  return protocol === 'unknown' ? undefined : DEBUGGERS[protocol];
}

/** The installed debug type to use for `need`, or undefined when none of its types is installed. */
export function installedType(need: DebuggerNeed, installed: Set<string>): string | undefined {
  return need.types.find((t) => installed.has(t));
}

/**
 * The attach configuration for a published entry: the `amqpTunnel` property
 * makes the extension start (or reuse) a forward of the queue and write its
 * address into the debugger's fields. Fit for launch.json as it is.
 */
export function attachConfiguration(info: Pick<PublisherInfo, 'queue'>, broker: string, type: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type, request: 'attach', name: `Attach to ${info.queue} over AMQP`, amqpTunnel: { queue: info.queue, broker }, ...extra };
}

/** The codicon for a protocol in the view. */
export function protocolIcon(protocol: DebugProtocol): string {
  switch (protocol) {
    case 'node':
      return 'symbol-event';
    case 'python':
      return 'symbol-namespace';
    case 'java':
      return 'coffee';
    case 'go':
      return 'symbol-interface';
    default:
      return 'plug';
  }
}

/** "3m", "2h": how long ago `iso` was (the same words as `amqp-tunnel list`). */
export const uptime = age;

/** The protocol as words: "Node.js (node.js/v22.3.0)", "Java (JDWP)", "unknown protocol". */
export function protocolText(info: Pick<PublisherInfo, 'protocol' | 'runtime'>): string {
  const need = debuggerFor(info.protocol);
  if (!need) return 'unknown protocol';
  return info.runtime ? `${need.label.replace(/ \(.*\)$/, '')} (${info.runtime})` : need.label;
}

/** The one-line description of an entry in the view and in the pick list. */
export function entryDescription(info: PublisherInfo): string {
  return [info.protocol === 'unknown' ? 'unknown' : info.protocol, `${info.host} pid ${info.pid}`, info.target].join(' · ');
}

/** A longer line: what runs there, since when, and whether a secret is needed. */
export function entryDetail(info: PublisherInfo, now = Date.now()): string {
  const parts = [protocolText(info)];
  if (info.title) parts.push(info.title);
  parts.push(`up ${uptime(info.startedAt, now)}`);
  if (info.secretRequired) parts.push('tunnel secret required');
  return parts.join(' · ');
}

/** What the announcements (the "Published on" lists) tell the presence check of the ready forwards. */
export interface AnnouncedPresence {
  /** Indexes of forwards whose queue a publisher just announced: present, without a passive check. */
  present: number[];
  /** A forward's publisher left the lists (said goodbye or stopped answering): check the queues now. */
  recheck: boolean;
}

/**
 * The publishers the "Published on" lists show now (`listed`) and at the
 * last change (`before`), as `broker\0queue` keys, against the ready
 * forwards: a forward whose queue is listed has a publisher (it announced
 * itself once it listened); a forward whose publisher dropped out of the
 * lists needs a check, since a publisher that announces nothing (the Go
 * library, --unlisted) is found only by the passive check.
 */
export function announcedPresence(forwards: ReadonlyArray<{ broker: string; queue: string; publisher?: boolean }>, listed: ReadonlySet<string>, before: ReadonlySet<string>): AnnouncedPresence {
  const present: number[] = [];
  let recheck = false;
  forwards.forEach((f, i) => {
    const key = presenceKey(f.broker, f.queue);
    if (listed.has(key)) {
      if (f.publisher !== true) present.push(i);
    } else if (before.has(key) && f.publisher === true) {
      recheck = true;
    }
  });
  return { present, recheck };
}

export function presenceKey(broker: string, queue: string): string {
  return `${broker}\0${queue}`;
}
