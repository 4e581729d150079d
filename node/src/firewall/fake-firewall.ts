/**
 * Fakes of the firewall for tests, judged by the tracer (tracer.ts):
 * - createFakeFirewall: a Firewall holding the ruleset in memory, for the engine's tests.
 * - createFakeNft: a CommandRunner that understands the `nft` scripts NftablesFirewall
 *   sends, so the real firewall can be tested, diffs included, without root.
 */
import { WarrenError, type FilterRule } from '@warren/protocol'
import { diffSets, emptySets, SET_NAMES, type SetName } from './set-elements.js'
import { checkRulesetOptions, renderElementScript, renderTableScript, RULESET_MARKER } from './nft-render.js'
import { countEgress, countEgressChanges, egressMaps, parseSharedPortComment, renderEgressScript, sameSharedLayout, sharedPortComment, SHARED_PORT_MARKER, type EgressMapName } from './shared-port-rules.js'
import type { ApplyReport } from './nftables.js'
import { REJECT_LIMIT } from './flow-chains.js'
import { createRulesetCompiler } from './ruleset-compiler.js'
import { dumpRuleset, parseElement, traceBurst, traceRuleset, type RulesetState, type TracePacket, type Verdict } from './tracer.js'
import type { CommandResult, CommandRunner, Firewall, FirewallContext, SharedPortRules } from './types.js'

// ---------- FakeFirewall ----------

export interface FakeFirewall extends Firewall {
  /** dump is the applied ruleset as sorted text ('' when none) */
  dump: () => string
  trace: (p: TracePacket) => Verdict
  /** traceBurst judges packets in order, their rejects sharing one rate limit (see traceBurst) */
  traceBurst: (packets: TracePacket[]) => Verdict[]
  /** sharedPort is the shared-port rules applied, undefined when none */
  sharedPort: () => SharedPortRules | undefined
  /** changes counts element adds/deletes and rebuilds, to show that a repeated set does nothing */
  changes: () => number
  /** lastApply reports the last `set` as NftablesFirewall does: nothing, an element update, or a rebuild */
  lastApply: () => ApplyReport | undefined
  /** refuseNext makes the next change refused, as nft refuses a transaction: it throws and changes nothing */
  refuseNext: (said: string) => void
  isUp: () => boolean
}

/** createFakeFirewall makes an in-memory Firewall that validates and compiles like the real one. */
export function createFakeFirewall (opts: { table?: string } = {}): FakeFirewall {
  const table = opts.table ?? 'warren'
  const compiler = createRulesetCompiler()
  let state: RulesetState | undefined
  let changes = 0
  let report: ApplyReport | undefined
  let refusal: string | undefined
  let up = false
  /** commit applies a change unless a refusal is pending, which it throws instead, as nft would */
  const commit = (what: string): void => {
    if (refusal === undefined) return
    const said = refusal
    refusal = undefined
    throw new WarrenError('firewall_apply_failed', `nftables refused ${what} of table inet ${table}; the previous rules stay in force. nft said:\n${said}`, { status: 500 })
  }
  return {
    async up () { up = true },
    async set (filter: FilterRule[], ctx: FirewallContext) {
      const shared = ctx.sharedPort !== undefined ? { sharedPort: ctx.sharedPort } : {}
      const o = { table, interfaceName: ctx.interfaceName, ...shared }
      checkRulesetOptions(o)
      const next: RulesetState = { interfaceName: ctx.interfaceName, sets: compiler.compileFilter(filter), ...shared, rejectLimit: REJECT_LIMIT }
      if (state === undefined || state.interfaceName !== next.interfaceName || !sameSharedLayout(state.sharedPort, next.sharedPort)) {
        commit('the rebuild')
        changes++
        report = { kind: 'rebuild', elements: SET_NAMES.reduce((n, set) => n + next.sets[set].length, countEgress(next.sharedPort)), scriptBytes: Buffer.byteLength(renderTableScript(next.sets, o)) }
      } else {
        const diff = diffSets(state.sets, next.sets)
        const size = diff.size + countEgressChanges(state.sharedPort, next.sharedPort)
        if (size > 0) commit(`an update of ${size} elements`)
        changes += size
        report = { kind: size === 0 ? 'none' : 'elements', elements: size, scriptBytes: Buffer.byteLength(renderElementScript(diff, table) + renderEgressScript(state.sharedPort, next.sharedPort, table)) }
      }
      state = next
    },
    async close () {
      commit('the removal')
      state = undefined
      up = false
    },
    dump: () => dumpRuleset(state),
    trace: p => traceRuleset(state, p),
    traceBurst: packets => traceBurst(state, packets),
    sharedPort: () => state?.sharedPort,
    changes: () => changes,
    lastApply: () => report,
    refuseNext: said => { refusal = said },
    isUp: () => up
  }
}

// ---------- FakeNft ----------

/** FakeNftCall is one `nft` invocation the fake received. */
export interface FakeNftCall { argv: readonly string[], input?: string }

export interface FakeNft extends CommandRunner {
  calls: FakeNftCall[]
  /** tables holds each inet table by name; other tables are opaque strings the fake keeps */
  tables: Map<string, RulesetState>
  trace: (table: string, p: TracePacket) => Verdict
  traceBurst: (table: string, packets: TracePacket[]) => Verdict[]
  dump: (table: string) => string
  /** failNext makes the next matching call exit 1 with this message, to test failures */
  failNext: (match: (call: FakeNftCall) => boolean, stderr: string) => void
}

class NftError extends Error {}

/**
 * createFakeNft understands the subset of nft that Warren emits: atomic table
 * replacement, element add/delete, table delete, `-j -n list table`, `--check`, `--version`.
 * Like the kernel, it applies a script all or nothing and refuses deleting a missing element.
 */
export function createFakeNft (): FakeNft {
  const tables = new Map<string, RulesetState>()
  const calls: FakeNftCall[] = []
  const failures: Array<{ match: (c: FakeNftCall) => boolean, stderr: string }> = []
  const ok = (stdout = ''): CommandResult => ({ stdout, stderr: '', exitCode: 0 })

  function runScript (script: string, into: Map<string, RulesetState>): void {
    const lines = script.split('\n')
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim()
      if (line === '') continue
      let m: RegExpExecArray | null
      if ((m = /^add table inet (\w+)$/.exec(line)) !== null) {
        if (!into.has(m[1]!)) into.set(m[1]!, { interfaceName: '', sets: emptySets() })
      } else if ((m = /^delete table inet (\w+)$/.exec(line)) !== null) {
        if (!into.delete(m[1]!)) throw new NftError(`Error: No such file or directory\n${line}`)
      } else if ((m = /^table inet (\w+) \{$/.exec(line)) !== null) {
        const state: RulesetState = { interfaceName: '', sets: emptySets() }
        let set: SetName | undefined
        let inElements = false
        let inEgress: EgressMapName | undefined
        let shared: ReturnType<typeof parseSharedPortComment>
        const egress: Record<EgressMapName, Record<string, string>> = { egress4: {}, egress6: {} }
        for (i++; i < lines.length && lines[i] !== '}'; i++) {
          const l = lines[i]!.trim()
          const s = /^set (\w+) \{$/.exec(l)
          if (s !== null) set = s[1] as SetName
          if (/^(set|map|chain) /.test(l)) inEgress = /^map (egress[46]) \{$/.exec(l)?.[1] as EgressMapName | undefined
          const els = /^elements = \{ (.*) \}$/.exec(l)
          if (inEgress !== undefined && els !== null) for (const pair of els[1]!.split(', ')) Object.assign(egress[inEgress], egressPair(pair))
          const comment = new RegExp(`comment "(${SHARED_PORT_MARKER}[^"]*)"$`).exec(l)
          if (comment !== null) shared = parseSharedPortComment(comment[1]!)
          const iif = /^iifname "([^"]+)" jump mesh comment "(.*)"$/.exec(l)
          if (iif !== null && iif[2] === RULESET_MARKER) state.interfaceName = iif[1]!
          const limit = /^limit rate (\d+)\/second burst (\d+) packets reject with icmpx admin-prohibited$/.exec(l)
          if (limit !== null) state.rejectLimit = { rate: Number(limit[1]), burst: Number(limit[2]) }
          if (l === '}') inElements = false
          if (inElements && set !== undefined) state.sets[set].push(elementText(set, l.replace(/,$/, '')))
          if (l === 'elements = {') inElements = true
        }
        if (state.interfaceName === '') throw new NftError('fake nft: table without the mesh rule')
        if (shared !== undefined) state.sharedPort = { ...shared, egress: egress.egress4, ...(shared.controlAddress6 !== undefined ? { egress6: egress.egress6 } : {}) }
        into.set(m[1]!, state)
      } else if ((m = /^(add|delete) element inet (\w+) (egress[46]) \{ (.*) \}$/.exec(line)) !== null) {
        const sp = into.get(m[2]!)?.sharedPort
        const map = m[3] as EgressMapName
        if (sp === undefined || (map === 'egress6' && sp.egress6 === undefined)) throw new NftError(`Error: No such file or directory\n${line}`)
        const egress = { ...egressMaps(sp)[map] }
        for (const raw of m[4]!.split(', ')) {
          const pair = egressPair(raw)
          const name = Object.keys(pair)[0] ?? raw.replace(/"/g, '')
          if (m[1] === 'add') {
            if (egress[name] !== undefined) throw new NftError(`Error: Could not process rule: File exists\n${line}`)
            Object.assign(egress, pair)
          } else {
            if (egress[name] === undefined) throw new NftError(`Error: Could not process rule: No such file or directory\n${line}`)
            delete egress[name]
          }
        }
        into.get(m[2]!)!.sharedPort = { ...sp, [map === 'egress4' ? 'egress' : 'egress6']: egress }
      } else if ((m = /^(add|delete) element inet (\w+) (\w+) \{ (.*) \}$/.exec(line)) !== null) {
        const state = into.get(m[2]!)
        const set = m[3] as SetName
        if (state === undefined || !(SET_NAMES as readonly string[]).includes(set)) throw new NftError(`Error: No such file or directory\n${line}`)
        for (const raw of m[4]!.split(', ')) {
          const text = elementText(set, raw)
          const at = state.sets[set].indexOf(text)
          if (m[1] === 'add' && at < 0) state.sets[set] = [...state.sets[set], text]
          if (m[1] === 'delete') {
            if (at < 0) throw new NftError(`Error: Could not process rule: No such file or directory\n${line}`)
            state.sets[set] = state.sets[set].filter((_, k) => k !== at)
          }
        }
      } else {
        throw new NftError(`Error: syntax error\n${line}`)
      }
    }
  }

  /** egressPair reads `"eth0" : 10.0.0.1` ({} for a bare `"eth0"`, as a delete names it) */
  function egressPair (raw: string): Record<string, string> {
    const m = /^"([^"]+)" : ([\da-f.:]+)$/.exec(raw.trim())
    return m === null ? {} : { [m[1]!]: m[2]! }
  }

  function elementText (set: SetName, raw: string): string {
    try {
      parseElement(set, raw)
    } catch (err) {
      throw new NftError(`Error: ${(err as Error).message}`)
    }
    return raw
  }

  function listJson (name: string, state: RulesetState): string {
    const items: unknown[] = [{ metainfo: { version: 'fake' } }, { table: { family: 'inet', name } }]
    for (const set of SET_NAMES) {
      const elem = state.sets[set].map(text => ({ concat: text.split(' . ').map((f, k) => jsonField(f, k)) }))
      items.push({ set: { family: 'inet', table: name, name: set, ...(elem.length > 0 ? { elem } : {}) } })
    }
    items.push({ rule: { family: 'inet', table: name, chain: 'input', comment: RULESET_MARKER, expr: [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: state.interfaceName } }, { jump: { target: 'mesh' } }] } })
    const rl = state.rejectLimit
    if (rl !== undefined) items.push({ rule: { family: 'inet', table: name, chain: 'refuse', expr: [{ limit: { rate: rl.rate, burst: rl.burst, per: 'second' } }, { reject: { type: 'icmpx', expr: 3 } }] } })
    const sp = state.sharedPort
    if (sp !== undefined) {
      items.push({ map: { family: 'inet', table: name, name: 'egress4', type: 'ifname', map: 'ipv4_addr', elem: Object.entries(sp.egress) } })
      if (sp.egress6 !== undefined) items.push({ map: { family: 'inet', table: name, name: 'egress6', type: 'ifname', map: 'ipv6_addr', elem: Object.entries(sp.egress6) } })
      items.push({ rule: { family: 'inet', table: name, chain: 'sharedin', comment: sharedPortComment(sp), expr: [] } })
    }
    return JSON.stringify({ nftables: items })
  }

  function jsonField (f: string, k: number): unknown {
    if (k === 1) return Number(f)
    if (f.includes('/')) { const [addr, len] = f.split('/'); return { prefix: { addr, len: Number(len) } } }
    if (f.includes('-')) { const [a, b] = f.split('-'); return k === 0 ? { range: [a, b] } : { range: [Number(a), Number(b)] } }
    return k === 0 ? f : Number(f)
  }

  function copy (m: Map<string, RulesetState>): Map<string, RulesetState> {
    return new Map([...m].map(([k, v]) => [k, { ...v, sets: { ...v.sets } }]))
  }

  return {
    calls,
    tables,
    async run (argv, opts = {}) {
      const call: FakeNftCall = opts.input === undefined ? { argv } : { argv, input: opts.input }
      calls.push(call)
      const failAt = failures.findIndex(f => f.match(call))
      let result: CommandResult
      if (failAt >= 0) {
        result = { stdout: '', stderr: failures[failAt]!.stderr, exitCode: 1 }
        failures.splice(failAt, 1)
      } else if (argv[1] === '--version') {
        result = ok('nftables v1.0.6 (fake)\n')
      } else if (argv.join(' ').startsWith('nft -j -n list table inet ')) {
        const state = tables.get(argv[6]!)
        result = state === undefined ? { stdout: '', stderr: 'Error: No such file or directory', exitCode: 1 } : ok(listJson(argv[6]!, state))
      } else if (argv.at(-2) === '-f' && argv.at(-1) === '-') {
        const scratch = copy(tables)
        try {
          runScript(opts.input ?? '', scratch)
          if (!argv.includes('--check')) { tables.clear(); for (const [k, v] of scratch) tables.set(k, v) }
          result = ok()
        } catch (err) {
          if (!(err instanceof NftError)) throw err
          result = { stdout: '', stderr: err.message, exitCode: 1 }
        }
      } else {
        result = { stdout: '', stderr: `fake nft: unsupported ${argv.join(' ')}`, exitCode: 1 }
      }
      if (result.exitCode !== 0 && opts.allowFail !== true) throw new Error(`${argv.join(' ')} failed: ${result.stderr}`)
      return result
    },
    trace: (table, p) => traceRuleset(tables.get(table), p),
    traceBurst: (table, packets) => traceBurst(tables.get(table), packets),
    dump: table => dumpRuleset(tables.get(table)),
    failNext: (match, stderr) => { failures.push({ match, stderr }) }
  }
}
