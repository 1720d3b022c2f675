/**
 * What the commands, the view and the debug support share: the services
 * built in activate(), and the plain summary of a tunnel that commands
 * return (for keybindings, tasks and tests).
 */
import type { Brokers } from './brokers';
import type { KeptTunnels } from './kept';
import type { TunnelLog } from './log';
import type { TunnelEntry, TunnelManager } from './manager';
import type { TunnelTree } from './tree';

export interface Services {
  brokers: Brokers;
  manager: TunnelManager;
  kept: KeptTunnels;
  log: TunnelLog;
  tree: TunnelTree;
}

export interface TunnelSummary {
  id: string;
  kind: 'forward' | 'publish';
  broker: string;
  queue: string;
  /** forward: the local address to connect to; publish: the local service. */
  address: string;
  state: string;
}

export function summary(e: TunnelEntry): TunnelSummary {
  return { id: e.id, kind: e.spec.kind, broker: e.spec.broker, queue: e.spec.queue, address: e.localAddress, state: e.state };
}
