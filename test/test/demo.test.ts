import t from 'tap'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { netnsSkipReason, execCommand } from '../src/index.js'

/**
 * The demo is what a new user runs first (`npm run demo`), so CI runs it too: it must
 * bring up the mesh, show the policy at work, and leave nothing behind.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const demo = join(root, 'test', 'dist', 'src', 'demo.js')

t.test('the demo shows the mesh and the policy, then removes everything', { skip: netnsSkipReason(), timeout: 580_000 }, async t => {
  const r = await execCommand([process.execPath, demo, '--once'], { allowFail: true, timeoutMs: 570_000 })
  const out = r.stdout + r.stderr
  t.equal(r.exitCode, 0, r.exitCode === 0 ? 'the demo exits cleanly' : `the demo failed:\n${out.slice(-3000)}`)
  t.match(out, /^\s*state: Running, controller https:\S+ \(connected\)$/m, 'status shows a running node')
  t.match(out, /pong from db \(100\.\d+\.\d+\.\d+\)/, 'ping by name over the mesh')
  t.match(out, /laptop \(alice, group:eng\) -> db:5432\s+connects/, 'an allowed port connects')
  t.match(out, /laptop \(alice\)\s+-> db:22\s+blocked/, 'a port no rule allows is blocked')
  t.match(out, /phone\s+\(bob\)\s+-> db:5432\s+blocked/, 'a user outside the group is blocked')
  t.match(out, /phone's peers: laptop\s/, 'a peer the policy hides is not sent')
  t.match(out, /no answer \(NXDOMAIN\)/, 'and has no MagicDNS answer')
  t.match(out, /is allowed by:\s+rule 2 \(line 9\)/, 'explain names the rule')
  // Other tests may run at the same time: look only for this demo's namespaces.
  const prefix = /\(namespace (\S+)-ctl\)/.exec(out)?.[1]
  t.ok(prefix, 'the demo names its namespaces')
  const after = (await execCommand(['ip', 'netns', 'list'])).stdout
  const left = after.split('\n').filter(l => prefix !== undefined && l.startsWith(`${prefix}-`))
  t.same(left, [], 'no network namespace of the demo is left behind')
})
