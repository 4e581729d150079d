import { formatIpAddress, ipBits, prefixRange } from '@warren/protocol'
import { parseCidr } from './addr.js'
import { didYouMean } from './errors.js'
import type { JsonLike, PolicyReader } from './section-reader.js'
import type { Cidr, IpSet, Policy } from './types.js'

/**
 * IP sets, as in Tailscale: named lists of addresses built by operations in order,
 * `"ipsets": {"ipset:prod": ["add 10.0.0.0/16", "remove 10.0.9.0/24", "add ipset:extra"]}`,
 * and named as `ipset:prod` in the src and dst of acls and grants. A target is an address,
 * a CIDR, a host alias or another IP set; a set of only additions may leave out `add`.
 * Users, groups and tags are not addresses, so they cannot be in a set; neither can a
 * set contain itself, directly or through others.
 */

const NAME = /^ipset:[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/i
const OPERATION = /^(add|remove)\s+(\S+)$/

interface Op { remove: boolean, target: string, node: JsonLike }
interface Range { family: 4 | 6, first: bigint, last: bigint }

/** parseIpsets reads `ipsets` into each set's CIDRs; it needs the policy's hosts, so it runs after them. */
export function parseIpsets<N extends JsonLike> (section: N, policy: Policy, r: PolicyReader<N>): Map<string, IpSet> {
  const ops = new Map<string, { ops: Op[], node: N }>()
  for (const prop of r.object(section, 'ipsets') ?? []) {
    const [keyNode, value] = prop.children as [N, N]
    const name = String(keyNode.value)
    if (!NAME.test(name)) { r.err(keyNode, `IP set name "${name}" must be "ipset:" and a name (for example ipset:office)`); continue }
    if (ops.has(name)) { r.err(keyNode, `IP set ${name} is defined twice`); continue }
    ops.set(name, { ops: readOps(value, name, r), node: keyNode })
  }
  const out = new Map<string, IpSet>()
  const resolving: string[] = []
  const resolve = (name: string): Range[] => {
    const done = out.get(name)
    if (done !== undefined) return done.cidrs.map(toRange)
    resolving.push(name)
    let ranges: Range[] = []
    for (const op of ops.get(name)!.ops) {
      const target = targetRanges(op, name)
      ranges = op.remove ? subtract(ranges, target) : union([...ranges, ...target])
    }
    resolving.pop()
    out.set(name, { cidrs: ranges.flatMap(toCidrs), pos: r.pos(ops.get(name)!.node) })
    return ranges
  }
  const targetRanges = (op: Op, within: string): Range[] => {
    const t = op.target
    if (t.startsWith('ipset:')) {
      if (!ops.has(t)) { r.err(op.node as N, `${within}: IP set ${t} is not defined in "ipsets"`, didYouMean(t, ops.keys())); return [] }
      if (resolving.includes(t)) {
        r.err(op.node as N, `${within}: IP sets cannot contain themselves: ${[...resolving.slice(resolving.indexOf(t)), t].join(' -> ')}`)
        return []
      }
      return resolve(t)
    }
    const cidr = policy.hosts.get(t)?.cidr ?? parseCidr(t)
    if (cidr !== undefined) return [toRange(cidr)]
    r.err(op.node as N, targetError(t, within), didYouMean(t, [...policy.hosts.keys(), ...ops.keys()]))
    return []
  }
  for (const name of ops.keys()) resolve(name)
  return out
}

/** readOps reads one set's operations; a set with a `remove` must say `add` before every other target, as in Tailscale. */
function readOps<N extends JsonLike> (n: N, name: string, r: PolicyReader<N>): Op[] {
  const out: Op[] = []
  const bare: Array<{ value: string, node: N }> = []
  for (const { value, node } of r.strings(n, name)) {
    const m = OPERATION.exec(value.trim())
    if (m !== null) { out.push({ remove: m[1] === 'remove', target: m[2]!, node }); continue }
    if (/\s/.test(value.trim()) || value.trim() === '') {
      r.err(node, `${name}: "${value}" is not an operation: write "add TARGET" or "remove TARGET" (an address, CIDR, host or ipset:NAME)`)
      continue
    }
    bare.push({ value, node })
    out.push({ remove: false, target: value, node })
  }
  if (out.some(op => op.remove)) {
    for (const b of bare) r.err(b.node, `${name} removes addresses, so each target needs its operation`, `write "add ${b.value}"`)
  }
  return out
}

function targetError (t: string, within: string): string {
  if (t === 'autogroup:internet') return `${within}: autogroup:internet cannot be in an IP set: it is the internet through exit nodes, not a set of addresses; write it in a rule's dst`
  if (t === '*' || /^(tag|group|autogroup|user):/.test(t) || t.includes('@')) {
    return `${within}: "${t}" cannot be in an IP set: IP sets hold addresses, CIDRs, hosts and other IP sets, not users, groups or tags`
  }
  return `${within}: "${t}" is not an address, a CIDR, a host in "hosts" or an ipset:`
}

// ---------- address ranges ----------

function toRange (c: Cidr): Range {
  return { family: c.family, ...prefixRange(c) }
}

/** union merges ranges that overlap or touch, sorted by family and start. */
function union (ranges: Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a.family - b.family || (a.first < b.first ? -1 : a.first > b.first ? 1 : 0))
  const out: Range[] = []
  for (const x of sorted) {
    const last = out.at(-1)
    if (last !== undefined && last.family === x.family && x.first <= last.last + 1n) {
      if (x.last > last.last) last.last = x.last
    } else out.push({ ...x })
  }
  return out
}

/** subtract returns the addresses of `a` that are not in `b`. */
function subtract (a: readonly Range[], b: readonly Range[]): Range[] {
  let pieces = a.map(x => ({ ...x }))
  for (const cut of b) {
    pieces = pieces.flatMap(p => {
      if (p.family !== cut.family || cut.last < p.first || cut.first > p.last) return [p]
      const keep: Range[] = []
      if (cut.first > p.first) keep.push({ family: p.family, first: p.first, last: cut.first - 1n })
      if (cut.last < p.last) keep.push({ family: p.family, first: cut.last + 1n, last: p.last })
      return keep
    })
  }
  return pieces
}

/** toCidrs splits a range into the fewest CIDRs that cover exactly it. */
function toCidrs (range: Range): Cidr[] {
  const bits = ipBits(range.family)
  const out: Cidr[] = []
  let first = range.first
  while (first <= range.last) {
    // the largest block that starts at `first` (aligned) and ends inside the range
    let size = 0
    while (size < bits && (first & ((1n << BigInt(size + 1)) - 1n)) === 0n && first + (1n << BigInt(size + 1)) - 1n <= range.last) size++
    out.push(parseCidr(`${formatIpAddress(range.family, first)}/${bits - size}`)!)
    first += 1n << BigInt(size)
  }
  return out
}
