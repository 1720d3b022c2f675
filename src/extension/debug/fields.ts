/**
 * The plain logic of debugging through a tunnel (no vscode import, so it is
 * unit-tested without an editor): where each debugger wants the host and
 * port it attaches to, the `amqpTunnel` property of a debug configuration
 * and the `amqp-tunnel` task definition, and the lines the task prints
 * (package.json's problem matcher watches for them; a unit test checks that
 * the two agree).
 *
 * Host and port fields per debug type:
 *
 *     node, pwa-node, chrome, pwa-chrome, msedge, pwa-msedge   address, port
 *     debugpy, python                                          connect.host, connect.port
 *     java                                                     hostName, port
 *     go                                                       host, port
 *     anything else (the fallback)                             host, port
 */
import { queueNameProblem } from '../../stream/url';

export type FieldStyle = 'js' | 'python' | 'java' | 'go' | 'fallback';

const STYLES: Record<string, FieldStyle> = {
  node: 'js',
  'pwa-node': 'js',
  chrome: 'js',
  'pwa-chrome': 'js',
  msedge: 'js',
  'pwa-msedge': 'js',
  debugpy: 'python',
  python: 'python',
  java: 'java',
  go: 'go',
};

/** Which field names a debug type uses for the address it attaches to. */
export function fieldStyle(type: string): FieldStyle {
  return STYLES[type] ?? 'fallback';
}

/**
 * Write `host` and `port` into `config` where its debugger reads them, and
 * return the names of the fields written ("connect.port" for nested ones).
 */
export function applyLocalAddress(config: Record<string, unknown>, host: string, port: number): string[] {
  switch (fieldStyle(String(config.type ?? ''))) {
    case 'js':
      config.address = host;
      config.port = port;
      return ['address', 'port'];
    case 'python': {
      const connect = config.connect && typeof config.connect === 'object' ? (config.connect as Record<string, unknown>) : {};
      config.connect = { ...connect, host, port };
      // debugpy also reads the older top-level fields; leave no stale ones to contradict `connect`.
      delete config.host;
      delete config.port;
      return ['connect.host', 'connect.port'];
    }
    case 'java':
      config.hostName = host;
      config.port = port;
      return ['hostName', 'port'];
    case 'go':
    case 'fallback':
      config.host = host;
      config.port = port;
      return ['host', 'port'];
  }
}

/** The `amqpTunnel` property of a debug configuration. */
export interface AmqpTunnelProperty {
  /** The queue the remote side publishes its debug port on. */
  queue: string;
  /** A broker name from `amqpTunnel.brokers` (default: the first one). */
  broker?: string;
  /** Local port to listen on (default: reuse a running forward of the queue, else a free port). */
  localPort?: number;
  /** Stop the forward when the debug session ends (default: true when this configuration started it). */
  stopWhenDone?: boolean;
}

/** The `amqp-tunnel` task's definition (tasks.json). */
export interface TunnelTaskDefinition {
  type: string;
  queue: string;
  broker?: string;
  localPort: number;
}

function portProblem(value: unknown, what: string, allowZero: boolean): string | undefined {
  if (typeof value === 'string' && /^\d+$/.test(value)) value = Number(value);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (allowZero ? 0 : 1) || value > 65535) {
    return `${what} must be a port number (${allowZero ? 0 : 1}-65535), not ${JSON.stringify(value)}`;
  }
  return undefined;
}

/** Read the `amqpTunnel` property, or say in a sentence what is wrong with it. */
export function parseAmqpTunnelProperty(value: unknown): AmqpTunnelProperty | string {
  if (typeof value === 'string') value = { queue: value };
  if (!value || typeof value !== 'object' || Array.isArray(value)) return '"amqpTunnel" must be an object such as { "queue": "my-app-debug" }';
  const v = value as Record<string, unknown>;
  if (typeof v.queue !== 'string' || v.queue === '') return '"amqpTunnel" needs a "queue": the queue the remote side publishes its debug port on';
  const qp = queueNameProblem(v.queue);
  if (qp) return `"amqpTunnel.queue": ${qp}`;
  if (v.broker !== undefined && typeof v.broker !== 'string') return '"amqpTunnel.broker" must be the name of a broker in the amqpTunnel.brokers setting';
  if (v.localPort !== undefined) {
    const pp = portProblem(v.localPort, '"amqpTunnel.localPort"', true);
    if (pp) return pp;
  }
  if (v.stopWhenDone !== undefined && typeof v.stopWhenDone !== 'boolean') return '"amqpTunnel.stopWhenDone" must be true or false';
  return {
    queue: v.queue,
    broker: v.broker as string | undefined,
    localPort: v.localPort === undefined ? undefined : Number(v.localPort),
    stopWhenDone: v.stopWhenDone as boolean | undefined,
  };
}

/** Read an `amqp-tunnel` task definition, or say in a sentence what is wrong with it. */
export function parseTaskDefinition(def: Record<string, unknown>): TunnelTaskDefinition | string {
  if (typeof def.queue !== 'string' || def.queue === '') return 'the task needs a "queue": the queue the remote side publishes its debug port on';
  const qp = queueNameProblem(def.queue);
  if (qp) return `"queue": ${qp}`;
  if (def.broker !== undefined && typeof def.broker !== 'string') return '"broker" must be the name of a broker in the amqpTunnel.brokers setting';
  const pp = portProblem(def.localPort, '"localPort"', false);
  if (pp) return `${pp} — the launch configuration attaches to this port`;
  return { type: String(def.type), queue: def.queue, broker: def.broker as string | undefined, localPort: Number(def.localPort) };
}

/**
 * A string of digits in a port field becomes a number (`${command:...}`
 * variables always substitute strings, and some debuggers check the type).
 */
export function numericPorts(config: Record<string, unknown>): void {
  const fix = (o: Record<string, unknown>, key: string): void => {
    if (typeof o[key] === 'string' && /^\d{1,5}$/.test(o[key] as string)) o[key] = Number(o[key]);
  };
  fix(config, 'port');
  if (config.connect && typeof config.connect === 'object') fix(config.connect as Record<string, unknown>, 'port');
}

// ---- the task's output lines ----------------------------------------------------

/** Every line the task prints starts with this. */
export const TASK_LINE_PREFIX = 'amqp-tunnel:';

/** The lines that open and close the task's "busy" phase (package.json problemMatchers background patterns). */
export const TASK_LINES = {
  starting: (queue: string, broker: string, local: string): string => `${TASK_LINE_PREFIX} starting a forward of queue '${queue}' (broker '${broker}') to ${local}`,
  ready: (local: string, queue: string, brokerAddress: string): string =>
    `${TASK_LINE_PREFIX} ready: ${local} leads to queue '${queue}' at ${brokerAddress}; the debugger can attach`,
  failed: (cause: string): string => `${TASK_LINE_PREFIX} failed: ${cause}`,
} as const;

/** The patterns package.json must contribute (checked by test/unit/extension-debug.test.ts). */
export const TASK_BEGINS_PATTERN = `^${TASK_LINE_PREFIX} starting `;
export const TASK_ENDS_PATTERN = `^${TASK_LINE_PREFIX} (ready|failed):`;

/** What to tell a user whose queue has no publisher. */
export function nothingPublishedMessage(queue: string, brokerName: string, brokerAddress: string): string {
  return (
    `nothing is published on queue '${queue}' at ${brokerAddress} (broker '${brokerName}') — ` +
    `start the publisher on the remote machine, for example: amqp-tunnel publish 9229 --queue ${queue}`
  );
}
