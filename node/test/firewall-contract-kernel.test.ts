/**
 * The firewall contract (firewall-contract.ts) run against NftablesFirewall and the real
 * kernel, in a fresh network namespace of its own that this file creates and removes (also
 * when a case fails or the process ends early). What passes is read back from the kernel
 * (`nft -j list table`) and traced, so the kernel's table is held to filterAllows exactly as
 * the fake's is. Skips when not root or when `nft`/`ip` are missing.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createCommandRunner, type CommandRunner, type CommandSession } from '../src/runner/index.js'
import { createNftablesFirewall } from '../src/firewall/nftables.js'
import { parseKernelTable } from '../src/firewall/kernel-table.js'
import { dumpRuleset, traceBurst, type RulesetState } from '../src/firewall/tracer.js'
import { firewallContract } from './firewall-contract.js'
import { skipUnlessKernel } from './kernel-fixtures.js'

await skipUnlessKernel('the kernel firewall contract (run in a network namespace of its own)')
const host = createCommandRunner()

const tag = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`.slice(-7)
const NS = `wcc${tag}`
const removeNamespace = (): void => { try { execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' }) } catch {} }
process.once('exit', removeNamespace)
t.teardown(removeNamespace)
await host.run(['ip', 'netns', 'add', NS])
const inNs = createCommandRunner({ netns: NS })

/** readBack is our table as the kernel holds it, undefined when it holds none of our layout. */
async function readBack (table: string): Promise<RulesetState | undefined> {
  const r = await inNs.run(['nft', '-j', '-n', 'list', 'table', 'inet', table], { allowFail: true })
  if (r.exitCode !== 0) return undefined
  const k = parseKernelTable(r.stdout)
  if (!k.marked || k.interfaceName === undefined) return undefined
  return { interfaceName: k.interfaceName, sets: k.sets, ...(k.sharedPort !== undefined ? { sharedPort: k.sharedPort } : {}), ...(k.rejectLimit !== undefined ? { rejectLimit: k.rejectLimit } : {}) }
}

/**
 * refusingRunner runs commands in the namespace; once armed, it adds a line nft refuses
 * (a port out of range) to the next transaction, whether sent by `nft -f` or a session.
 * Without `sessions` it cannot open long-lived commands, so every change goes by `nft -f`.
 */
function refusingRunner (table: string, sessions: boolean): { runner: CommandRunner, arm: () => void } {
  let armed = false
  const bad = `add element inet ${table} allow4 { 100.64.0.9 . 6 . 70000 }`
  const run: CommandRunner['run'] = async (argv, opts) => {
    if (!armed || !argv.includes('-f')) return await inNs.run(argv, opts)
    armed = false
    return await inNs.run(argv, { ...opts, input: `${opts?.input ?? ''}${bad}\n` })
  }
  if (!sessions) return { runner: { run }, arm: () => { armed = true } }
  const runner: CommandRunner = {
    run,
    open: async (argv, opts) => {
      const s = await inNs.open!(argv, opts)
      const w = Object.create(s) as CommandSession
      w.write = text => {
        if (!armed) return s.write(text)
        armed = false
        return s.write(text.replace('\n', `; ${bad}\n`))
      }
      return w
    }
  }
  return { runner, arm: () => { armed = true } }
}

let cases = 0
for (const sessions of [true, false]) {
  t.test(sessions ? 'element updates through nft sessions' : 'every change through nft -f', async t => {
    firewallContract(t, async t => {
      const table = `wc${tag}${cases++}`
      const { runner, arm } = refusingRunner(table, sessions)
      const fw = createNftablesFirewall({ runner, table })
      t.teardown(async () => {
        await fw.release()
        await inNs.run(['nft', 'delete', 'table', 'inet', table], { allowFail: true })
      })
      return {
        firewall: fw,
        trace: async packets => traceBurst(await readBack(table), packets),
        dump: async () => dumpRuleset(await readBack(table)),
        sharedPort: async () => (await readBack(table))?.sharedPort,
        lastApply: fw.lastApply,
        refuseNext: arm
      }
    })
  })
}
