import t from 'tap'
import { isWarrenError } from '@warren/protocol'
import { createFakeCommandRunner } from '../src/testing.js'
import { createCommandRunner, createRecordingRunner, CommandError, formatArgv, withSecretFile, type CommandEvent, type CommandSession, type OutputStream } from '../src/runner/index.js'

t.test('the real runner returns output and exit code, in the C locale', async t => {
  const run = createCommandRunner()
  const r = await run.run(['sh', '-c', 'echo "$LC_ALL"; echo oops >&2; exit 0'])
  t.equal(r.stdout, 'C\n')
  t.equal(r.stderr, 'oops\n')
  t.equal(r.exitCode, 0)
})

t.test('a failed command throws a CommandError naming argv, exit code and stderr', async t => {
  const run = createCommandRunner()
  const err = await run.run(['sh', '-c', 'echo "RTNETLINK answers: Operation not supported" >&2; exit 2']).catch(e => e)
  t.ok(err instanceof CommandError)
  t.ok(isWarrenError(err), 'is a WarrenError')
  t.equal(err.code, 'command_failed')
  t.equal(err.exitCode, 2)
  t.same(err.argv, ['sh', '-c', 'echo "RTNETLINK answers: Operation not supported" >&2; exit 2'])
  t.match(err.message, /^`sh -c 'echo "RTNETLINK answers: Operation not supported" >&2; exit 2'` failed \(exit 2\): RTNETLINK answers: Operation not supported$/)
})

t.test('onCommand sees argv, exit code and time, never the input', async t => {
  const events: unknown[] = []
  const run = createCommandRunner({ onCommand: e => events.push(e) })
  await run.run(['cat'], { input: 'secret-key' })
  await run.run(['sh', '-c', 'exit 4'], { allowFail: true })
  t.match(events, [{ argv: ['cat'], exitCode: 0, durationMs: Number }, { argv: ['sh', '-c', 'exit 4'], exitCode: 4 }])
  t.notMatch(JSON.stringify(events), /secret-key/)
})

t.test('allowFail returns the failure instead of throwing', async t => {
  const r = await createCommandRunner().run(['sh', '-c', 'exit 3'], { allowFail: true })
  t.equal(r.exitCode, 3)
})

t.test('a missing program reads as command not found', async t => {
  const err = await createCommandRunner().run(['warren-no-such-tool', 'x']).catch(e => e)
  t.ok(err instanceof CommandError)
  t.equal(err.exitCode, 127)
  t.match(err.message, /warren-no-such-tool: command not found/)
})

t.test('a command that outlives its timeout is stopped and reads as timed out', async t => {
  const run = createCommandRunner({ timeoutMs: 300 })
  const started = Date.now()
  // The command would outlive the test: only the timeout can end this run.
  const err = await run.run(['sh', '-c', 'echo started >&2; exec sleep 600']).catch(e => e)
  t.ok(err instanceof CommandError)
  t.match(err.message, /timed out after 300 ms; started/)
  t.comment(`returned after ${Date.now() - started} ms`)
})

t.test('a command that exits without reading its input still reports its exit code', async t => {
  const r = await createCommandRunner().run(['sh', '-c', 'exit 5'], { input: 'x'.repeat(1 << 20), allowFail: true })
  t.equal(r.exitCode, 5)
})

t.test('stdin reaches the command but never its error message', async t => {
  const run = createCommandRunner()
  const r = await run.run(['cat'], { input: 'secret-key' })
  t.equal(r.stdout, 'secret-key')
  const err = await run.run(['sh', '-c', 'cat >/dev/null; echo bad key >&2; exit 1'], { input: 'secret-key' }).catch(e => e)
  t.notMatch(err.message, /secret-key/)
  t.notMatch(JSON.stringify(err), /secret-key/)
})

t.test('env entries are set or removed per command', async t => {
  process.env.WARREN_RUNNER_TEST = 'inherited'
  const run = createCommandRunner()
  t.equal((await run.run(['sh', '-c', 'echo "[$WARREN_RUNNER_TEST]"'])).stdout, '[inherited]\n')
  t.equal((await run.run(['sh', '-c', 'echo "[$WARREN_RUNNER_TEST]"'], { env: { WARREN_RUNNER_TEST: undefined } })).stdout, '[]\n')
  delete process.env.WARREN_RUNNER_TEST
})

t.test('formatArgv quotes what a shell would need quoted', async t => {
  t.equal(formatArgv(['ip', 'link', 'add', 'wg0', 'type', 'wireguard']), 'ip link add wg0 type wireguard')
  t.equal(formatArgv(['echo', "it's here", '100.64.0.0/10']), "echo 'it'\\''s here' 100.64.0.0/10")
})

t.test('the fake runner records argv and answers from its table', async t => {
  const fake = createFakeCommandRunner()
  fake.on(/^wg show/, { stdout: 'dump' })
  fake.on('ip link add wg0 type wireguard', { exitCode: 2, stderr: 'Error: Unknown device type.' })
  t.equal((await fake.run(['wg', 'show', 'wg0', 'dump'])).stdout, 'dump')
  await t.rejects(fake.run(['ip', 'link', 'add', 'wg0', 'type', 'wireguard']), /failed \(exit 2\): Error: Unknown device type/)
  t.equal((await fake.run(['ip', 'link', 'add', 'wg0', 'type', 'wireguard'], { allowFail: true })).exitCode, 2)
  t.equal((await fake.run(['true'])).exitCode, 0, 'unmatched commands succeed')
  await fake.run(['wg', 'set', 'wg0', 'private-key', '/dev/stdin'], { input: 'k' })
  t.same(fake.calls.map(c => c.argv.join(' ')), [
    'wg show wg0 dump', 'ip link add wg0 type wireguard', 'ip link add wg0 type wireguard', 'true', 'wg set wg0 private-key /dev/stdin'])
  t.equal(fake.calls.at(-1)!.hadInput, true)
  t.equal(fake.matching(/^ip link/).length, 2)
  const strict = createFakeCommandRunner({ strict: true })
  await t.rejects(strict.run(['ip', 'addr']), /no rule for `ip addr`/)
})

t.test('the recording runner passes through and counts', async t => {
  const rec = createRecordingRunner(createCommandRunner())
  await rec.run(['true'])
  await rec.run(['sh', '-c', 'exit 0'], { input: 'x' })
  t.same(rec.calls, [{ argv: ['true'], hadInput: false }, { argv: ['sh', '-c', 'exit 0'], hadInput: true }])
})

t.test('commands run inside a network namespace when asked', { skip: process.getuid?.() !== 0 ? 'needs root to create a network namespace' : false }, async t => {
  const ns = `wr${process.pid.toString(36)}${Math.random().toString(36).slice(2, 7)}`
  const host = createCommandRunner()
  await host.run(['ip', 'netns', 'add', ns])
  t.teardown(() => host.run(['ip', 'netns', 'del', ns], { allowFail: true }))
  const inNs = createCommandRunner({ netns: ns })
  const links = JSON.parse((await inNs.run(['ip', '-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>
  t.same(links.map(l => l.ifname), ['lo'], 'a fresh namespace has only loopback')
  const err = await inNs.run(['ip', 'link', 'set', 'nosuchdev0', 'up']).catch(e => e)
  t.match(err.message, new RegExp(`in network namespace ${ns} failed`))
  const s = await inNs.open!(['sh', '-c', 'while read -r l; do ip -o link show; done'])
  s.write('\n')
  t.same(await linesOf(s, () => true).then(ls => ls.map(([l]) => l.split(':')[1]?.trim())), ['lo'], 'a session runs in the namespace too')
  await s.close()
})

t.test('withSecretFile hands a secret through a private file that is gone afterwards', async t => {
  const { statSync, existsSync, readFileSync } = await import('node:fs')
  const { dirname } = await import('node:path')
  let seen = ''
  const out = await withSecretFile('k3y', async path => {
    t.equal(statSync(path).mode & 0o777, 0o600, 'file is 0600')
    t.equal(statSync(dirname(path)).mode & 0o777, 0o700, 'its directory is 0700')
    t.equal(readFileSync(path, 'utf8'), 'k3y')
    seen = path
    return 42
  })
  t.equal(out, 42)
  t.notOk(existsSync(seen), 'deleted after use')
  await t.rejects(withSecretFile('k3y', async path => { seen = path; throw new Error('boom') }), /boom/)
  t.notOk(existsSync(seen), 'deleted after a failure too')
})

/** linesOf collects a session's output lines until `until` sees one it wants. */
function linesOf (s: CommandSession, until: (line: string, stream: OutputStream) => boolean, ms = 5000): Promise<Array<[string, OutputStream]>> {
  const got: Array<[string, OutputStream]> = []
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no matching line within ${ms} ms; got ${JSON.stringify(got)}`)) }, ms)
    const off = s.onLine((line, stream) => {
      got.push([line, stream])
      if (until(line, stream)) { clearTimeout(timer); off(); resolve(got) }
    })
  })
}

t.test('open keeps a command running: lines written reach it, its output comes back line by line', async t => {
  const events: CommandEvent[] = []
  const run = createCommandRunner({ onCommand: e => events.push(e) })
  const s = await run.open!(['sh', '-c', 'echo "locale $LC_ALL"; while read -r l; do echo "out $l"; echo "err $l" >&2; done; exit 3'])
  t.ok(s.running && typeof s.pid === 'number', 'it runs and has a pid')
  t.same(await linesOf(s, l => l.startsWith('locale')), [['locale C', 'stdout']], 'in the C locale; a line printed before anyone listened is kept')
  t.equal(s.write('one\ntwo\n'), true)
  // stdout and stderr are two pipes: their lines interleave in no fixed order
  const seen = new Set<string>()
  const got = await linesOf(s, l => seen.add(l).has('out two') && seen.has('err two'))
  t.same(got.filter(([, stream]) => stream === 'stdout').map(([l]) => l), ['out one', 'out two'])
  t.same(got.filter(([, stream]) => stream === 'stderr').map(([l]) => l), ['err one', 'err two'])
  t.same(events, [], 'onCommand waits for the end of the command')
  const exit = await s.close()
  t.same(exit, { exitCode: 3, reason: 'exit 3' }, 'close ends its input; it exits by itself')
  t.equal(s.running, false)
  t.equal(s.write('three\n'), false, 'a write after the end is refused, not thrown')
  t.match(events, [{ argv: ['sh', '-c', String], exitCode: 3, durationMs: Number }])
})

t.test('open: a command that ignores the end of its input is killed after the grace time', async t => {
  // The command would outlive the test: only the kill can end it.
  const s = await createCommandRunner().open!(['sh', '-c', 'trap "" TERM; exec sleep 600'])
  const started = Date.now()
  const exit = await s.close(200)
  t.equal(exit.signal, 'SIGKILL')
  t.equal(exit.reason, 'killed by SIGKILL')
  t.comment(`closed after ${Date.now() - started} ms`)
})

t.test('open: exited tells when the command dies by itself', async t => {
  const s = await createCommandRunner().open!(['sh', '-c', 'read -r l; echo "bye $l" >&2; exit 7'])
  s.write('now\n')
  t.same(await linesOf(s, () => true), [['bye now', 'stderr']])
  t.same(await s.exited, { exitCode: 7, reason: 'exit 7' })
  s.kill()
  t.equal(s.running, false, 'kill after the end does nothing')
})

t.test('open: a missing program reads as command not found; env entries are set or removed', async t => {
  const run = createCommandRunner()
  const err = await run.open!(['warren-no-such-tool', '-i']).catch(e => e)
  t.ok(err instanceof CommandError)
  t.equal(err.exitCode, 127)
  t.match(err.message, /warren-no-such-tool: command not found \(is it installed and on PATH\?\)/)
  process.env.WARREN_RUNNER_TEST = 'inherited'
  const kept = await run.open!(['sh', '-c', 'echo "[$WARREN_RUNNER_TEST]"'])
  const removed = await run.open!(['sh', '-c', 'echo "[$WARREN_RUNNER_TEST]"'], { env: { WARREN_RUNNER_TEST: undefined } })
  delete process.env.WARREN_RUNNER_TEST
  t.same(await linesOf(kept, () => true), [['[inherited]', 'stdout']])
  t.same(await linesOf(removed, () => true), [['[]', 'stdout']])
})

t.test('open: an idle, unreferenced session does not keep the process alive, and its command ends with it', async t => {
  const runner = new URL('../src/runner/index.js', import.meta.url).href
  const script = `
    const { createCommandRunner } = await import(${JSON.stringify(runner)})
    const s = await createCommandRunner().open(['cat'])
    s.unref()
    console.log(s.pid)`
  const { execFile } = await import('node:child_process')
  // execFile's timeout would kill a process that stays alive; that fails the test.
  const out = await new Promise<string>((resolve, reject) => execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 120_000 }, (e, stdout) => e === null ? resolve(stdout) : reject(e)))
  const pid = Number(out.trim())
  const gone = async (): Promise<boolean> => { try { process.kill(pid, 0); return false } catch { return true } }
  const deadline = Date.now() + 60_000
  while (!await gone() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  t.ok(await gone(), `cat (pid ${pid}) ended with it`)
})
