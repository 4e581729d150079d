/**
 * NftablesFirewall enforces the filter in the kernel through `nft`, in one table that Warren
 * owns (`table inet warren`); no other table is read or changed.
 *
 * Every change is one atomic transaction. The first apply (and any apply after the kernel's
 * table turned out to differ from what we applied) replaces the whole table with one
 * `nft -f -`; later applies send only element adds and deletes, so a one-peer change costs a
 * few elements whatever the size of the mesh. The compile is incremental as well: each `set`
 * keeps its compile and the next one patches it (the firewall's RulesetCompiler), so a one-peer change
 * does not recompile or diff the whole filter.
 *
 * Element updates go to a long-lived `nft -i` (nft-session.ts), one input line per
 * transaction, when the runner can open one and the update is small (under 256 KiB; larger
 * ones, rare, go to `nft --check -f -` then `nft -f -`). A process per update paid more for its
 * exit than for the update: after a batch that deletes elements, the kernel makes an exiting
 * nft wait for an RCU grace period when it closes its netlink socket (8-19 ms measured), so a
 * peer leaving cost twice a peer joining. The sessions start at the first element update;
 * they do not keep the daemon alive, `release()` ends them and leaves the table, `close()`
 * ends both.
 *
 * Every transaction is checked before it is applied: rebuilds and the removal with
 * `nft --check -f -`, element updates with a second long-lived session, `nft --check -i`,
 * which hands the same line to the kernel to validate and discard. The check costs most of an
 * element update (the kernel's abort of a checked batch waits for an RCU grace period, about
 * 8 ms; the apply itself about 1 ms), and the kernel applies a batch whole or not at all
 * anyway, so a refused apply changes nothing either. If nft refuses a change, the previous
 * rules stay in force and `set` throws, quoting nft; when a refused update is explained by the
 * kernel's table no longer being what we applied, it is rebuilt. If the applying session
 * breaks during an update (nft exits, does not answer in time, prints what it should not),
 * the outcome is unknown: the table is read back, and `set` throws if it is as before, else
 * rebuilds it; the next update starts a fresh session.
 *
 * The table also holds the state of the flows this node opened (ruleset.ts, flowChains), in
 * dynamic sets that element updates never touch. A rebuild starts them empty: replies in
 * connections the node had open are then dropped until the node opens them anew. Rebuilds
 * happen only when the kernel's table is missing or not what we applied (first start, a
 * changed interface, an edit behind our back, an older layout after an upgrade).
 *
 * The table is kernel state: it outlives the daemon (fail-closed). `close()` deletes it.
 */
import { WarrenError, createSerialQueue, type FilterRule } from '@warren/protocol'
import { diffCompiled, type CompiledFilter } from './compiled-filter.js'
import { parseKernelTable, type KernelTable } from './kernel-table.js'
import { checkRulesetOptions, renderDeleteScript, renderElementScript, renderTableScript, type RulesetOptions } from './nft-render.js'
import { createRulesetCompiler } from './ruleset-compiler.js'
import { compileRoutes, type CompiledRoutes } from './route-rules.js'
import { diffSets, SET_NAMES, type SetElements } from './set-elements.js'
import type { CommandRunner, Firewall, FirewallContext, SharedPortRules } from './types.js'
import { countEgress, countEgressChanges, renderEgressScript, sameSharedLayout } from './shared-port-rules.js'
import { condenseNftError, createNftSession, NftRefusedError, type NftSession } from './nft-session.js'

/** element updates up to this size go to the nft session; larger ones to `nft -f -` */
export const SESSION_MAX_SCRIPT_BYTES = 256 * 1024

export interface NftablesFirewallInit {
  runner: CommandRunner
  /** table name, `warren` by default; tests use their own */
  table?: string
  /** give up on an element update through the nft session after this long; default 10 s */
  sessionTimeoutMs?: number
  /** only `inet`: one table that judges IPv4 and IPv6 alike, so neither is left open */
  family?: 'inet'
}

/** ApplyReport says what the last `set` did to the kernel. */
export interface ApplyReport {
  kind: 'none' | 'elements' | 'rebuild'
  /** element adds plus deletes (for a rebuild: all elements) */
  elements: number
  /** bytes of the nft script sent */
  scriptBytes: number
}

export interface NftablesFirewall extends Firewall {
  /**
   * sync reads the kernel's table back and, if it is missing or differs from what was last
   * applied (someone deleted or edited it), rebuilds it atomically.
   */
  sync: () => Promise<'unchanged' | 'rebuilt' | 'nothing-applied'>
  /** lastApply reports the last `set`, for metrics and tests. */
  lastApply: () => ApplyReport | undefined
  /** release ends the nft session (if one runs) and leaves the table in force, as on daemon stop */
  release: () => Promise<void>
  /** sessionPid is the pid of the running `nft -i`, undefined when none runs (for tests) */
  sessionPid: () => number | undefined
}

/**
 * Applied is a ruleset the kernel holds: its elements, and the compile they came from when
 * we made them (then the next compile reuses it and the diff costs what changed).
 */
interface Applied { interfaceName: string, sets: () => SetElements, compiled?: CompiledFilter, sharedPort?: SharedPortRules, routes?: CompiledRoutes, routesDigest: string }

function sameSets (a: SetElements, b: SetElements): boolean {
  return diffSets(a, b).size === 0
}

/** holds says whether a read-back table holds what `a` describes: interface, elements and shared-port rules. */
function holds (k: Applied | undefined, a: Applied): boolean {
  return k !== undefined && k.interfaceName === a.interfaceName && k.routesDigest === a.routesDigest && sameSets(k.sets(), a.sets()) &&
    sameSharedLayout(k.sharedPort, a.sharedPort) && countEgressChanges(k.sharedPort, a.sharedPort) === 0
}

function firstLines (text: string): string {
  return condenseNftError(text.trim()).split('\n').slice(0, 6).join('\n')
}

/** readKernel returns a table as the kernel holds it, or undefined when it is absent. */
async function readKernel (runner: CommandRunner, table: string): Promise<KernelTable | undefined> {
  const r = await runner.run(['nft', '-j', '-n', 'list', 'table', 'inet', table], { allowFail: true })
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.stderr)) return undefined
    throw new WarrenError('firewall_read_failed', `could not read nftables table inet ${table}: ${firstLines(r.stderr)}`, { status: 500 })
  }
  return parseKernelTable(r.stdout)
}

/** adopt trusts a kernel table that has our layout, so a restarted daemon sends only a diff. */
function adopt (k: KernelTable | undefined): Applied | undefined {
  if (k === undefined || !k.marked || k.interfaceName === undefined) return undefined
  const sets = k.sets
  return { interfaceName: k.interfaceName, sets: () => sets, routesDigest: k.routesDigest ?? '', ...(k.sharedPort !== undefined ? { sharedPort: k.sharedPort } : {}) }
}

/** Unconfirmed marks an element update whose outcome the session could not tell. */
class Unconfirmed extends WarrenError {}

/** createNftablesFirewall makes the real firewall; nothing runs until `up` or `set`. */
export function createNftablesFirewall (init: NftablesFirewallInit): NftablesFirewall {
  const { runner } = init
  const table = init.table ?? 'warren'
  if (init.family !== undefined && init.family !== 'inet') {
    throw new WarrenError('bad_firewall_config', `nftables family "${String(init.family)}" is not supported; Warren uses one inet table for IPv4 and IPv6`, { field: 'family' })
  }
  checkRulesetOptions({ table, interfaceName: 'x' })
  /** applied is what the kernel holds as far as we know; undefined means "read it back first" */
  let applied: Applied | undefined
  let report: ApplyReport | undefined
  const queue = createSerialQueue()
  /** compiler keeps the parse of every source between this firewall's compiles */
  const compiler = createRulesetCompiler()
  /** the nft sessions for element updates, one that checks and one that applies; started at the first one (runners with `open` only) */
  let checker: NftSession | undefined
  let session: NftSession | undefined

  /** serial runs one operation at a time, so two `set`s never interleave their transactions. */
  const serial = queue.run

  /**
   * transact applies a script as one transaction, after `nft --check` when `check` is set;
   * on refusal nothing changed and it throws.
   */
  async function transact (script: string, what: string, check: boolean): Promise<void> {
    if (check) {
      const r = await runner.run(['nft', '--check', '-f', '-'], { input: script, allowFail: true })
      if (r.exitCode !== 0) {
        throw new WarrenError('firewall_apply_failed', `nftables refused ${what} of table inet ${table} at the check; the previous rules stay in force. nft said:\n${firstLines(r.stderr)}`, { status: 500 })
      }
    }
    const apply = await runner.run(['nft', '-f', '-'], { input: script, allowFail: true })
    if (apply.exitCode !== 0) {
      applied = undefined
      throw new WarrenError('firewall_apply_failed', `nftables refused ${what} of table inet ${table}; nothing of it was applied (a transaction applies whole or not at all), so the previous rules stay in force. nft said:\n${firstLines(apply.stderr)}`, { status: 500 })
    }
  }

  /**
   * transactElements applies an element script as one transaction: through the nft session
   * when the runner can open one and the script is small, else as `nft -f -`. On refusal
   * nothing changed and it throws; when the session broke it throws Unconfirmed.
   */
  async function transactElements (script: string, what: string): Promise<void> {
    if (runner.open === undefined || Buffer.byteLength(script) >= SESSION_MAX_SCRIPT_BYTES) return await transact(script, what, true)
    const timeout = init.sessionTimeoutMs !== undefined ? { timeoutMs: init.sessionTimeoutMs } : {}
    checker ??= createNftSession({ runner, check: true, ...timeout })
    session ??= createNftSession({ runner, ...timeout })
    try {
      await checker.apply(script)
    } catch (e) {
      // Nothing was applied either way: a check never changes the kernel.
      const said = e instanceof NftRefusedError ? `nft said:\n${firstLines(e.said)}` : `the check did not complete: ${e instanceof Error ? e.message : String(e)}`
      throw new WarrenError('firewall_apply_failed', `nftables refused ${what} of table inet ${table} at the check; the previous rules stay in force. ${said}`, { status: 500, cause: e })
    }
    try {
      await session.apply(script)
    } catch (e) {
      applied = undefined
      if (e instanceof NftRefusedError) {
        throw new WarrenError('firewall_apply_failed', `nftables refused ${what} of table inet ${table}; nothing of it was applied (a transaction applies whole or not at all), so the previous rules stay in force. nft said:\n${firstLines(e.said)}`, { status: 500, cause: e })
      }
      throw new Unconfirmed('firewall_apply_failed', `nft did not confirm ${what} of table inet ${table}: ${e instanceof Error ? e.message : String(e)}`, { status: 500, cause: e })
    }
  }

  /** endSession stops the nft session, if one runs; the next element update starts another. */
  async function endSession (): Promise<void> {
    const s = [checker, session]
    checker = undefined
    session = undefined
    await Promise.all(s.map(async x => await x?.close()))
  }

  async function rebuild (next: Applied): Promise<void> {
    const sets = next.sets()
    const shared = next.sharedPort !== undefined ? { sharedPort: next.sharedPort } : {}
    const script = renderTableScript(sets, { table, interfaceName: next.interfaceName, ...shared, ...(next.routes !== undefined ? { routes: next.routes } : {}) })
    await transact(script, 'the rebuild', true)
    applied = next
    report = { kind: 'rebuild', elements: SET_NAMES.reduce((n, s) => n + sets[s].length, countEgress(next.sharedPort)), scriptBytes: Buffer.byteLength(script) }
  }

  async function set (filter: FilterRule[], ctx: FirewallContext): Promise<void> {
    const shared = ctx.sharedPort !== undefined ? { sharedPort: ctx.sharedPort } : {}
    const opts: RulesetOptions = { table, interfaceName: ctx.interfaceName, ...shared }
    checkRulesetOptions(opts)
    const compiled = compiler.compileIncremental(filter, applied?.compiled)
    const routes = compileRoutes(ctx.subnetRouter?.filter ?? [], ctx.subnetRouter)
    const next: Applied = { interfaceName: ctx.interfaceName, sets: compiled.sets, compiled, ...shared, routesDigest: routes?.digest ?? '', ...(routes !== undefined ? { routes } : {}) }
    if (applied === undefined) applied = adopt(await readKernel(runner, table))
    if (applied === undefined || applied.interfaceName !== next.interfaceName || applied.routesDigest !== next.routesDigest ||
      !sameSharedLayout(applied.sharedPort, next.sharedPort)) return await rebuild(next)
    const diff = applied.compiled !== undefined ? diffCompiled(applied.compiled, compiled) : diffSets(applied.sets(), compiled.sets())
    // only the egress maps of the shared-port rules change by elements; the rest rebuilt above
    const egressScript = renderEgressScript(applied.sharedPort, next.sharedPort, table)
    const egressChanges = countEgressChanges(applied.sharedPort, next.sharedPort)
    if (diff.size === 0 && egressScript === '') {
      report = { kind: 'none', elements: 0, scriptBytes: 0 }
      return
    }
    const script = renderElementScript(diff, table) + egressScript
    const before = applied
    try {
      await transactElements(script, `an update of ${diff.size + egressChanges} elements`)
    } catch (err) {
      // The kernel may no longer hold what we applied (table deleted or edited): then
      // rebuild it whole. If it does, the refusal is real: report it, rules unchanged.
      // After an unconfirmed update the same read-back tells whether it applied.
      const kernel = adopt(await readKernel(runner, table))
      if (holds(kernel, before)) {
        applied = before
        if (err instanceof Unconfirmed) {
          throw new WarrenError('firewall_apply_failed', `${err.message}; the table read back as before, so the previous rules stay in force`, { status: 500, cause: err.cause })
        }
        throw err
      }
      return await rebuild(next)
    }
    applied = next
    report = { kind: 'elements', elements: diff.size + egressChanges, scriptBytes: Buffer.byteLength(script) }
  }

  return {
    up: () => serial(async () => {
      const r = await runner.run(['nft', '--version'], { allowFail: true })
      if (r.exitCode !== 0) {
        throw new WarrenError('nft_missing', `nft does not run (${firstLines(r.stderr) || `exit ${r.exitCode}`}); install nftables (apt install nftables) and run the daemon as root`, { status: 500 })
      }
      applied = adopt(await readKernel(runner, table))
    }),
    set: (filter, ctx) => serial(() => set(filter, ctx)),
    close: () => serial(async () => {
      await endSession()
      await transact(renderDeleteScript(table), 'the removal', true)
      applied = undefined
    }),
    release: () => serial(endSession),
    sessionPid: () => session?.pid,
    sync: () => serial(async () => {
      if (applied === undefined) return 'nothing-applied'
      const kernel = adopt(await readKernel(runner, table))
      if (holds(kernel, applied)) return 'unchanged'
      await rebuild(applied)
      return 'rebuilt'
    }),
    lastApply: () => report
  }
}
