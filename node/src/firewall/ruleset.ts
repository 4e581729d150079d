/**
 * ruleset turns a node's inbound packet filter (protocol FilterRule[]) into the nftables
 * ruleset that enforces it. The parts, each a file:
 * - addresses.ts, ports.ts: sources and port ranges read into numbers (protocol's IpPrefix);
 * - element-compile.ts: a filter compiled into canonical set elements (set-elements.ts);
 * - compiled-filter.ts, rule-align.ts, incremental-compile.ts: a compile kept for the next
 *   one, so a one-peer change costs what changed (compileIncremental, diffCompiled);
 * - ruleset-compiler.ts: the compiler object a firewall owns, holding the source cache;
 * - nft-render.ts, flow-chains.ts: the table, an element diff or the removal as nft text;
 * - kernel-table.ts: the elements read back from `nft -j list table`;
 * - tracer.ts: a packet run through the generated ruleset, which tests hold to protocol's
 *   reference `filterAllows`;
 * - route-rules.ts: a subnet router's forward filter, masquerade and interface lock;
 * - shared-port-rules.ts: the two stateless rules (and their egress map) that let the
 *   daemon's control socket share the WireGuard port, with their own tracer.
 *
 * The table judges only packets that arrive on the mesh interface; packets that leave by it
 * only record the flows this node opens, so that their replies pass (flowChains). A new
 * flow the filter forbids is rejected with an ICMP "administratively prohibited", within a
 * rate limit (refuseChain); anything else it forbids is dropped. Allowed
 * tuples live in sets with concatenated keys, so a packet costs at most four policy set
 * lookups, whatever the number of rules:
 *   allow4 / allow6:     one source address . protocol . one destination port (hash)
 *   allow4p / allow6p:   one source address . protocol, for any port or a portless protocol
 *                        such as ICMP (hash)
 *   allow4i / allow6i:   source range . protocol . port range (interval)
 *   allow4pi / allow6pi: source range . protocol, any port or portless (interval)
 * Peers are single addresses, so a mesh's elements mostly land in the hash sets, whose
 * lookups and updates cost the same at 10 or 10,000 peers; interval sets (nft's pipapo,
 * whose lookup and commit cost grows with their size) hold only CIDR sources and port
 * ranges wider than EXPAND_PORTS. Elements are disjoint and canonical, so the same filter
 * always yields the same elements, whatever the order of its rules.
 *
 * Semantics of a FilterRule as enforced here:
 * - `srcs`: IPv4/IPv6 addresses or CIDRs (host bits are ignored), or `*` for every address.
 * - `protos`: IANA numbers; an empty list allows nothing (fail-closed).
 * - `ports`: used only for protocols with ports (protocol's PROTOCOLS_WITH_PORTS); for the others the rule
 *   allows the protocol from its sources whatever `ports` holds.
 */
export { filterAllows, type FilterPacket } from '@warren/protocol'
export * from './addresses.js'
export * from './ports.js'
export * from './set-elements.js'
export * from './element-compile.js'
export * from './compiled-filter.js'
export * from './rule-align.js'
export * from './incremental-compile.js'
export * from './ruleset-compiler.js'
export * from './flow-chains.js'
export * from './nft-render.js'
export * from './kernel-table.js'
export * from './tracer.js'
export * from './shared-port-rules.js'
export * from './route-rules.js'
