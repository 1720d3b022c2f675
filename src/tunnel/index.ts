/**
 * Tunnels: publish a local TCP port on a queue, forward a local port to a
 * published queue, over the stream library.
 *
 *     const pub = publish({ target: '9229', queue: 'my-app', broker });
 *     await pub.ready;
 *     const fwd = forward({ queue: 'my-app', bind: '0', broker });
 *     await fwd.ready; // fwd.address.port is the local port
 */
export { publish, PublishTunnel, type PublishOptions } from './publish';
export { forward, ForwardTunnel, type ForwardOptions } from './forward';
export { Tunnel, type TunnelOptions, type TunnelState, type TunnelStats, type ConnectionStats, type StateChange } from './tunnel';
export { pipe, describePipeResult, type Pipe, type PipeResult } from './pipe';
export { Backoff, type BackoffOptions } from './backoff';
export { brokerTransport, type Transport, type BrokerLink } from './transport';
export { parseBind, parseTarget, parsePort, parseQueue, formatHostPort, DEFAULT_HOST, type HostPort, type AddressOptions } from './spec';
export { parseTunnelEntry, type TunnelListEntry } from './entry';
export { detectProtocol, classifyCommandLine, parseProcNetTcp, parseCmdline, parseInspectorVersion, parseInspectorList, DEBUG_PROTOCOLS, type DebugProtocol, type Detection } from './detect';
export { listPublished, DiscoveryWatch, DiscoveryResponder, parsePublisherInfo, publisherInfo, DISCOVERY_EXCHANGE, type PublisherInfo, type DiscoveryWatchOptions } from './discovery';
export { webForward, WebForwardTunnel, QUEUE_HEADER, type WebForwardOptions } from './webforward';
