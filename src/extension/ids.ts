/**
 * Every id the extension shares with package.json: commands, views, the
 * view container, context keys, settings. The code uses these constants and
 * test/unit/extension-manifest.test.ts checks that package.json contributes
 * exactly the same ids, so an id is never typed twice by hand.
 *
 * This module imports nothing (not even vscode), so unit tests can load it.
 */
export const COMMANDS = {
  forward: 'amqpTunnel.forward',
  publish: 'amqpTunnel.publish',
  stop: 'amqpTunnel.stopTunnel',
  restart: 'amqpTunnel.restartTunnel',
  remove: 'amqpTunnel.removeTunnel',
  copyAddress: 'amqpTunnel.copyLocalAddress',
  openInBrowser: 'amqpTunnel.openInBrowser',
  keep: 'amqpTunnel.keepTunnel',
  forget: 'amqpTunnel.forgetTunnel',
  showLog: 'amqpTunnel.showLog',
  addBroker: 'amqpTunnel.addBroker',
  setBrokerPassword: 'amqpTunnel.setBrokerPassword',
  removeBroker: 'amqpTunnel.removeBroker',
  /** A tunnel secret per tunnel or per broker, in the secret store (tunnelSecrets.ts). */
  setTunnelSecret: 'amqpTunnel.setTunnelSecret',
  attachDebugger: 'amqpTunnel.attachDebugger',
  /** The "Published on <broker>" sections (discoveryTree.ts, discoveryAttach.ts). */
  refreshPublished: 'amqpTunnel.refreshPublished',
  attachPublished: 'amqpTunnel.attachPublished',
  copyLaunchConfiguration: 'amqpTunnel.copyLaunchConfiguration',
  /** `${command:amqpTunnel.localPort}` in launch configurations (hidden from the palette). */
  localPort: 'amqpTunnel.localPort',
} as const;

/** The task type for preLaunchTask (taskDefinitions) and its problem matcher (`$amqp-tunnel`). */
export const TASK_TYPE = 'amqp-tunnel';
export const PROBLEM_MATCHER = 'amqp-tunnel';

export const VIEW_CONTAINER = 'amqpTunnel';
export const VIEWS = {
  tunnels: 'amqpTunnel.tunnels',
} as const;

/** Context keys set with `setContext`, used in `when` clauses. */
export const CONTEXT = {
  hasTunnels: 'amqpTunnel.hasTunnels',
} as const;

export const CONFIG_SECTION = 'amqpTunnel';
export const SETTINGS = {
  brokers: 'brokers',
  tunnels: 'tunnels',
  /** Publishes from this window do not answer discovery (`amqp-tunnel list`, the view). */
  unlisted: 'unlisted',
  /** v2 `resume`: seconds open connections are held through a broker connection drop (0: reset at once). */
  resumeGrace: 'resumeGrace',
} as const;

/** The output channel's name (also what "Show Log" opens). */
export const LOG_CHANNEL = 'AMQP Tunnel';

/** The command that reveals the view container (VS Code derives it from the container id). */
export const SHOW_VIEW_COMMAND = `workbench.view.extension.${VIEW_CONTAINER}`;
