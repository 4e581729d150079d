/**
 * The nft session on a fake `nft -i`: the line protocol, refusals, a dying or silent nft,
 * unexpected output, serial use; and NftablesFirewall's use of it over the fake kernel.
 * The same paths against the real nft and kernel are in firewall-kernel.test.ts.
 */
import t from 'tap'
import type { FilterRule } from '@warren/protocol'
import { CommandError, type CommandRunner, type CommandSession, type OutputStream, type SessionExit } from '../src/runner/index.js'
import { createNftSession, condenseNftError, NftRefusedError, NftSessionError } from '../src/firewall/nft-session.js'
import { createNftablesFirewall, SESSION_MAX_SCRIPT_BYTES } from '../src/firewall/nftables.js'
import { createFakeNft, type FakeNft } from '../src/testing.js'
import { peers } from './firewall-fixtures.js'

/** Reply is what the fake nft does with one transaction line. */
type Reply = { out?: Array<[string, OutputStream]> } | 'apply' | 'die' | 'hang'

interface FakeProc extends CommandSession {
  /** lines written to it, markers included */
  readonly lines: string[]
  /** say prints a line as if nft printed it */
  say: (line: string, stream: OutputStream) => void
  /** die makes it exit by itself */
  die: (exitCode: number) => void
}

let nextPid = 1000

/**
 * fakeProc behaves like `nft -i` on a pipe: it answers a marker (`list table inet X`) with
 * nft's three-line error, and each other line as `reply` says.
 */
function fakeProc (reply: (line: string) => Promise<Reply>): FakeProc {
  const listeners = new Set<(line: string, stream: OutputStream) => void>()
  const kept: Array<[string, OutputStream]> = []
  let running = true
  let work: Promise<unknown> = Promise.resolve()
  let hung = false
  let end!: (e: SessionExit) => void
  const exited = new Promise<SessionExit>(resolve => { end = resolve })
  const exit = (e: SessionExit): void => { if (running) { running = false; end(e) } }
  const lines: string[] = []
  const say = (line: string, stream: OutputStream): void => {
    if (!running) return
    if (listeners.size === 0) kept.push([line, stream])
    else for (const l of [...listeners]) l(line, stream)
  }
  const handle = async (line: string): Promise<void> => {
    if (!running || hung) return
    await new Promise(resolve => setImmediate(resolve))
    const marker = /^list table inet (\S+)$/.exec(line)
    if (marker !== null) {
      for (const l of ['Error: No such file or directory', line, ' '.repeat(16) + '^'.repeat(marker[1]!.length)]) say(l, 'stderr')
      return
    }
    const r = await reply(line)
    if (r === 'die') exit({ exitCode: 1, reason: 'exit 1' })
    else if (r === 'hang') hung = true
    else if (r !== 'apply') for (const [l, s] of r.out ?? []) say(l, s)
  }
  return {
    argv: ['nft', '-i'],
    pid: nextPid++,
    get running () { return running },
    lines,
    say,
    die: code => exit({ exitCode: code, reason: `exit ${code}` }),
    write (text) {
      if (!running) return false
      for (const line of text.split('\n').slice(0, -1)) {
        lines.push(line)
        work = work.then(async () => await handle(line))
      }
      return true
    },
    onLine (l) {
      listeners.add(l)
      for (const [line, s] of kept.splice(0)) l(line, s)
      return () => { listeners.delete(l) }
    },
    exited,
    async close () { exit({ exitCode: 0, reason: 'exit 0' }); return await exited },
    kill (signal = 'SIGKILL') { exit({ exitCode: -1, signal, reason: `killed by ${signal}` }) },
    ref () {},
    unref () {}
  }
}

/**
 * withSession gives a fake runner an `open` that starts fake `nft -i` processes. By default a
 * line is run as an `nft -f` transaction on the fake kernel (all or nothing), and a refusal
 * is printed the way nft prints it; `reply` may answer instead.
 */
function withSession (nft: FakeNft, reply?: (line: string, n: number) => Reply | undefined): { runner: CommandRunner, procs: FakeProc[], transactions: string[], checkProcs: FakeProc[], checks: string[] } {
  const procs: FakeProc[] = []
  const transactions: string[] = []
  const checkProcs: FakeProc[] = []
  const checks: string[] = []
  /** through one line as nft would: ok, or its error in nft's three lines */
  const through = async (argv: string[], line: string): Promise<Reply> => {
    const r = await nft.run(argv, { input: line.split('; ').join('\n') + '\n', allowFail: true })
    nft.calls.pop() // a line of the session, not an `nft -f` run
    if (r.exitCode === 0) return 'apply'
    const [said, quoted] = r.stderr.split('\n')
    return { out: [[said!, 'stderr'], [line, 'stderr'], [' '.repeat(Math.max(0, line.indexOf(quoted ?? ''))) + '^^^', 'stderr']] }
  }
  const runner: CommandRunner = {
    run: nft.run,
    open: async argv => {
      if (argv.join(' ') === 'nft --check -i') {
        const p = fakeProc(async line => {
          checks.push(line)
          return await through(['nft', '--check', '-f', '-'], line)
        })
        checkProcs.push(p)
        return p
      }
      if (argv.join(' ') !== 'nft -i') throw new Error(`unexpected ${argv.join(' ')}`)
      const p = fakeProc(async line => {
        transactions.push(line)
        const own = reply?.(line, transactions.length)
        if (own !== undefined) return own
        return await through(['nft', '-f', '-'], line)
      })
      procs.push(p)
      return p
    }
  }
  return { runner, procs, transactions, checkProcs, checks }
}

const IF = { interfaceName: 'warren0' }

async function setupTable (nft: FakeNft): Promise<void> {
  await createNftablesFirewall({ runner: nft, table: 'wtest' }).set(peers(3), IF)
  nft.calls.length = 0
}

const ADD = 'add element inet wtest allow4 { 100.64.9.1 . 6 . 22 }\nadd element inet wtest allow4 { 100.64.9.2 . 6 . 22 }\n'

t.test('one nft for many updates; each update is one line, its commands joined, then a marker', async t => {
  const nft = createFakeNft()
  await setupTable(nft)
  const { runner, procs } = withSession(nft)
  const s = createNftSession({ runner })
  t.equal(s.pid, undefined, 'nothing runs before the first update')
  await s.apply(ADD)
  await s.apply('delete element inet wtest allow4 { 100.64.9.1 . 6 . 22 }\n')
  await s.apply('\n')
  t.equal(procs.length, 1, 'one nft')
  t.equal(s.starts, 1)
  t.equal(s.pid, procs[0]!.pid)
  const [l0, m0, l1, m1, ...rest] = procs[0]!.lines
  t.equal(l0, 'add element inet wtest allow4 { 100.64.9.1 . 6 . 22 }; add element inet wtest allow4 { 100.64.9.2 . 6 . 22 }')
  t.match(m0, /^list table inet warren_sync_[0-9a-f]{8}_0$/)
  t.equal(l1, 'delete element inet wtest allow4 { 100.64.9.1 . 6 . 22 }')
  t.not(m1, m0, 'each marker is new')
  t.same(rest, [], 'an empty script sends nothing')
  t.match(nft.dump('wtest'), /allow4 100\.64\.9\.2 \. 6 \. 22/)
  t.notMatch(nft.dump('wtest'), /100\.64\.9\.1 /)
  t.same(nft.calls, [], 'no nft process ran')
  await s.close()
  t.equal(procs[0]!.running, false, 'close ends nft')
  t.equal(s.pid, undefined)
})

t.test('a refusal rejects with what nft said; nothing of the line applied, and the session goes on', async t => {
  const nft = createFakeNft()
  await setupTable(nft)
  const before = nft.dump('wtest')
  const { runner, procs } = withSession(nft)
  const s = createNftSession({ runner })
  const err = await s.apply('add element inet wtest allow4 { 100.64.9.1 . 6 . 22 }\ndelete element inet wtest allow4 { 100.64.9.9 . 6 . 22 }\n').catch(e => e)
  t.ok(err instanceof NftRefusedError)
  t.equal(err.code, 'nft_refused')
  t.match(err.said, /^Error: Could not process rule: No such file or directory\nadd element .*delete element inet wtest allow4 \{ 100\.64\.9\.9 \. 6 \. 22 \}\n\s*\^+$/)
  t.equal(nft.dump('wtest'), before, 'the good element of the line was not applied either')
  await s.apply(ADD)
  t.equal(procs.length, 1, 'the same nft takes the next update')
})

t.test('condenseNftError cuts a long quoted line to the part at fault', async t => {
  const line = 'add element inet w allow4 { ' + Array.from({ length: 400 }, (_, i) => `100.64.${i >> 8}.${i & 255} . 6 . 22`).join(', ') + ', 100.64.9.9 . 6 . 70000 }'
  const at = line.indexOf('70000')
  const text = `Error: Service out of range\n${line}\n${' '.repeat(at)}^^^^^\n`
  const short = condenseNftError(text)
  const [said, quoted, carets] = short.split('\n')
  t.equal(said, 'Error: Service out of range')
  t.ok(quoted!.length <= 170, `the quoted line is short (${quoted!.length})`)
  t.match(quoted, /^\.\.\..*100\.64\.9\.9 \. 6 \. 70000 \}$/)
  t.equal(quoted!.slice(carets!.indexOf('^'), carets!.lastIndexOf('^') + 1), '70000', 'the carets still point at the fault')
  t.equal(condenseNftError('Error: x\nshort line\n      ^^^^\n'), 'Error: x\nshort line\n      ^^^^', 'short lines stay as they are')
})

t.test('nft dying during an update rejects it, saying so; the next update starts a fresh nft', async t => {
  const nft = createFakeNft()
  await setupTable(nft)
  const { runner, procs } = withSession(nft, (_, n) => n === 1 ? 'die' : undefined)
  const s = createNftSession({ runner })
  const err = await s.apply(ADD).catch(e => e)
  t.ok(err instanceof NftSessionError)
  t.equal(err.code, 'nft_session_failed')
  t.match(err.message, /`nft -i` ended \(exit 1\) before it confirmed the update/)
  t.equal(s.pid, undefined)
  await s.apply(ADD)
  t.equal(procs.length, 2)
  t.equal(s.pid, procs[1]!.pid)

  procs[1]!.die(0) // between updates
  await procs[1]!.exited
  await s.apply('delete element inet wtest allow4 { 100.64.9.1 . 6 . 22 }\n')
  t.equal(procs.length, 3, 'an nft that ended while idle is replaced before the next update')
})

t.test('an nft that does not answer in time is killed; the update is rejected and the next starts afresh', async t => {
  const nft = createFakeNft()
  await setupTable(nft)
  const { runner, procs } = withSession(nft, (_, n) => n === 1 ? 'hang' : undefined)
  const s = createNftSession({ runner, timeoutMs: 200 })
  const started = Date.now()
  const err = await s.apply(ADD).catch(e => e)
  t.ok(err instanceof NftSessionError)
  t.match(err.message, /did not confirm the update within 200 ms/)
  t.comment(`rejected after ${Date.now() - started} ms`)
  t.equal(procs[0]!.running, false, 'the silent nft was killed')
  await s.apply(ADD)
  t.equal(procs.length, 2)
})

t.test('output nft does not print for element commands means the session is not trusted any more', async t => {
  const cases: Array<{ name: string, reply: (marker: string) => Reply, want: RegExp }> = [
    { name: 'a line on stdout', reply: () => ({ out: [['table inet wtest {', 'stdout']] }), want: /nft printed on stdout during the update, .*: table inet wtest \{/ },
    { name: 'stderr text without an error', reply: () => ({ out: [['Warning: something new', 'stderr']] }), want: /nft printed unexpected text during the update: Warning: something new/ },
    { name: 'the marker quoted without its error', reply: marker => ({ out: [[marker, 'stderr']] }), want: /marker without its error line/ }
  ]
  for (const c of cases) {
    const nft = createFakeNft()
    await setupTable(nft)
    // the update's line and its marker are written together, so the marker is known here
    const { runner, procs } = withSession(nft, (_, n) => n === 1 ? c.reply(procs[0]!.lines[1]!) : undefined)
    const s = createNftSession({ runner })
    const err = await s.apply(ADD).catch(e => e)
    t.ok(err instanceof NftSessionError, `${c.name}: the outcome is unknown`)
    t.match(err.message, c.want, c.name)
    t.equal(procs[0]!.running, false, `${c.name}: that nft was killed`)
    await s.apply(ADD)
    t.equal(procs.length, 2, `${c.name}: the next update has a fresh nft`)
  }
  const nft = createFakeNft()
  await setupTable(nft)
  const { runner, procs } = withSession(nft)
  const s = createNftSession({ runner })
  await s.apply(ADD)
  procs[0]!.say('something', 'stderr')
  t.equal(procs[0]!.running, false, 'output between updates: killed too')
})

t.test('updates run one at a time, in the order they were asked for', async t => {
  const nft = createFakeNft()
  await setupTable(nft)
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  const { runner, procs } = withSession(nft)
  const slow: CommandRunner = { run: runner.run, open: async argv => { await gate; return await runner.open!(argv) } }
  const s = createNftSession({ runner: slow })
  const done: number[] = []
  const all = [1, 2, 3].map(async i => { await s.apply(`add element inet wtest allow4 { 100.64.9.${i} . 6 . 22 }\n`); done.push(i) })
  release()
  await Promise.all(all)
  t.same(done, [1, 2, 3])
  t.equal(procs.length, 1, 'one nft, started once')
  t.same(procs[0]!.lines.filter((_, k) => k % 2 === 0), [1, 2, 3].map(i => `add element inet wtest allow4 { 100.64.9.${i} . 6 . 22 }`))
})

t.test('bad input and an nft that cannot start', async t => {
  const nft = createFakeNft()
  const { runner } = withSession(nft)
  const s = createNftSession({ runner })
  await t.rejects(s.apply('add element inet wtest allow4 { 100.64.9.1 . 6 . 22 } # comment\n'), { code: 'bad_nft_script', message: /cannot hold a comment/ })
  t.throws(() => createNftSession({ runner: nft }), { code: 'bad_firewall_config', message: /needs a command runner that can open/ })
  let tries = 0
  const missing: CommandRunner = { run: nft.run, open: async argv => { tries++; throw new CommandError(argv, 127, 'nft: command not found (is it installed and on PATH?)') } }
  const m = createNftSession({ runner: missing })
  await t.rejects(m.apply(ADD), /nft: command not found/)
  await t.rejects(m.apply(ADD), /nft: command not found/)
  t.equal(tries, 2, 'each update tries to start nft again')
})

t.test('NftablesFirewall: element updates go through the session, rebuilds and large updates through nft -f', async t => {
  const nft = createFakeNft()
  const { runner, procs, transactions, checks, checkProcs } = withSession(nft)
  const fw = createNftablesFirewall({ runner, table: 'wtest' })
  await fw.set(peers(300, 150), IF)
  t.equal(fw.lastApply()?.kind, 'rebuild')
  t.same(nft.calls.filter(c => c.input !== undefined).map(c => c.argv.join(' ')), ['nft --check -f -', 'nft -f -'], 'the first apply is a checked rebuild')
  t.equal(procs.length, 0, 'no session before the first element update')
  const from = nft.calls.length
  await fw.set(peers(300), IF)
  await fw.set(peers(300, 7), IF)
  t.same(nft.calls.slice(from), [], 'no nft process for the element updates')
  t.same(transactions, [
    'add element inet wtest allow4 { 100.64.1.44 . 6 . 22, 100.64.1.44 . 6 . 8150 }',
    'delete element inet wtest allow4 { 100.64.0.14 . 6 . 22, 100.64.0.14 . 6 . 8007 }'])
  t.same(checks, transactions, 'each was checked first, by the checking session')
  t.equal(fw.lastApply()?.kind, 'elements')
  t.equal(fw.sessionPid(), procs[0]!.pid)
  t.equal(nft.dump('wtest').split('\n').length, 299 * 2 + 1)

  // A change larger than a session line may be goes to nft -f.
  const many = 6000
  await fw.set(peers(many), IF)
  const big = nft.calls.at(-1)!
  t.equal(big.argv.join(' '), 'nft -f -')
  t.equal(nft.calls.at(-2)!.argv.join(' '), 'nft --check -f -', 'checked first too')
  t.ok(Buffer.byteLength(big.input!) >= SESSION_MAX_SCRIPT_BYTES, `the ${Buffer.byteLength(big.input!)}-byte update went to nft -f`)
  t.equal(fw.lastApply()?.kind, 'elements')
  t.equal(transactions.length, 2)
  await fw.set(peers(many, 9), IF)
  t.equal(transactions.length, 3, 'the next small update uses the session again')
  t.equal(procs.length, 1)

  await fw.release()
  t.equal(procs[0]!.running, false, 'release ends nft')
  t.equal(checkProcs[0]!.running, false, 'both sessions')
  t.ok(nft.tables.has('wtest'), 'and leaves the table')
  await fw.set(peers(many), IF)
  t.equal(procs.length, 2, 'the next update starts a new session')
  await fw.close()
  t.equal(procs[1]!.running, false, 'close ends nft')
  t.equal(checkProcs[1]!.running, false, 'both sessions')
  t.notOk(nft.tables.has('wtest'), 'and deletes the table')
})

t.test('NftablesFirewall: a refused update through the session fails as before, rules unchanged', async t => {
  const nft = createFakeNft()
  let refuse = true
  const { runner, procs } = withSession(nft, line => {
    if (!refuse || !line.includes('100.64.0.10 ')) return undefined
    refuse = false
    return { out: [['Error: Could not process rule: Cannot allocate memory', 'stderr'], [line, 'stderr'], ['^^^', 'stderr']] }
  })
  const fw = createNftablesFirewall({ runner, table: 'wtest' })
  await fw.set(peers(5), IF)
  const before = nft.dump('wtest')
  const err = await fw.set(peers(6), IF).catch(e => e)
  t.equal(err.code, 'firewall_apply_failed')
  t.match(err.message, /refused an update of 2 elements of table inet wtest; nothing of it was applied .*so the previous rules stay in force\. nft said:\nError: Could not process rule: Cannot allocate memory\nadd element inet wtest allow4/)
  t.equal(nft.dump('wtest'), before)
  t.equal(procs[0]!.running, true, 'a refusal keeps the session')
  await fw.set(peers(7), IF)
  t.equal(fw.lastApply()?.kind, 'elements', 'the rules in force are known: the next set is an element update')
})

t.test('NftablesFirewall: an update refused at its check never reaches the applying session', async t => {
  const nft = createFakeNft()
  const { runner, transactions, checks } = withSession(nft)
  const fw = createNftablesFirewall({ runner, table: 'wtest' })
  await fw.set(peers(5), IF)
  const before = nft.dump('wtest')
  nft.failNext(c => c.argv.join(' ') === 'nft --check -f -', 'Error: Could not process rule: No such file or directory\nadd element inet wtest allow4')
  const err = await fw.set(peers(6), IF).catch(e => e)
  t.equal(err.code, 'firewall_apply_failed')
  t.match(err.message, /refused an update of 2 elements of table inet wtest at the check; the previous rules stay in force\. nft said:\nError: Could not process rule: No such file or directory/)
  t.equal(checks.length, 1, 'the check ran')
  t.same(transactions, [], 'nothing was sent to be applied')
  t.equal(nft.dump('wtest'), before)
  await fw.set(peers(6), IF)
  t.equal(transactions.length, 1, 'the next update goes through')
})

t.test('NftablesFirewall: when the session breaks, the table read back decides: throw if unchanged, else rebuild', async t => {
  const nft = createFakeNft()
  let mode: 'die-before' | 'die-after' | undefined
  const { runner, procs } = withSession(nft, () => {
    if (mode === 'die-before') { mode = undefined; return 'die' }
    return undefined
  })
  const fw = createNftablesFirewall({ runner, table: 'wtest' })
  await fw.set(peers(5), IF)
  await fw.set(peers(6), IF) // starts the session
  const before = nft.dump('wtest')

  mode = 'die-before'
  const err = await fw.set(peers(7), IF).catch(e => e)
  t.equal(err.code, 'firewall_apply_failed')
  t.match(err.message, /^nft did not confirm an update of 2 elements of table inet wtest: `nft -i` ended \(exit 1\) before it confirmed the update; the table read back as before, so the previous rules stay in force$/)
  t.equal(nft.dump('wtest'), before)

  // applied, then nft died before it answered: the read-back differs from both, so rebuild
  const wrapped: CommandRunner = {
    run: runner.run,
    open: async argv => {
      const p = await runner.open!(argv)
      if (argv.includes('--check')) return p // the check passes; the applying nft dies
      const write = p.write.bind(p)
      return Object.assign(p, { write: (text: string) => { const ok = write(text.split('\n')[0] + '\n'); setTimeout(() => (p as FakeProc).die(1), 20); return ok } })
    }
  }
  const fw2 = createNftablesFirewall({ runner: wrapped, table: 'wtest' })
  await fw2.set(peers(8), IF)
  t.equal(fw2.lastApply()?.kind, 'rebuild', 'nft applied, then died unconfirmed: the table is rebuilt to the filter')
  t.equal(nft.dump('wtest').split('\n').length, 8 * 2 + 1)
})
