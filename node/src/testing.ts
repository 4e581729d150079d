/**
 * @warren/node/testing holds the fakes of the daemon's adapters, for tests and
 * benchmarks here and in other packages: each is a `createFakeX` factory in a file named
 * `fake-x.ts`. Also here: the packet tracer over a fake firewall's ruleset and small
 * network maps for MagicDNS tests. None of it is part of the public index.
 */
export * from './runner/fake-command-runner.js'
export * from './wireguard/fake-wireguard.js'
export * from './router/fake-router.js'
export * from './router/fake-sysctl.js'
export * from './router/fake-exit-routing.js'
export * from './firewall/fake-firewall.js'
export * from './daemon/fake-data-plane.js'
export * from './dns/fake-host-resolver.js'
export * from './dns/test-netmap.js'
export { traceRuleset, type TracePacket, type Verdict } from './firewall/tracer.js'
export * from './nat/fake-shared-port.js'
export * from './nat/fake-udp-relay-client.js'
export * from './nat/fake-loopback-shared-port.js'
export * from './nat/fake-tls-relay-client.js'
