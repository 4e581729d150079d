import t from 'tap'
import { sshDifferences, type TailscaleSshRule } from './conformance/ssh-rules.js'
import type { SshNodeRule } from '../src/policy/index.js'

// The conformance runner's comparison of SSH rules: it must see every difference a node
// would act on, and none that it would not.

const ACCEPT = { accept: true, allowAgentForwarding: true, allowLocalPortForwarding: true, allowRemotePortForwarding: true }
const CHECK = { holdAndDelegate: 'https://unused/machine/ssh/action/$SRC_NODE_ID/to/$DST_NODE_ID' }

function ts (ips: string[], sshUsers: Record<string, string>, action: TailscaleSshRule['action'] = ACCEPT): TailscaleSshRule {
  return { principals: ips.map(nodeIP => ({ nodeIP })), sshUsers, action }
}

function warren (ips: string[], sshUsers: Record<string, string>, action: 'accept' | 'check' = 'accept'): SshNodeRule {
  return { rule: 0, principals: ips, sshUsers, action }
}

t.test('the same rules agree, whatever the order and repetition of principals', async t => {
  t.same(sshDifferences([ts(['100.64.0.2', '100.64.0.1', '100.64.0.1'], { root: 'root', '*': '=' })], [warren(['100.64.0.1', '100.64.0.2'], { '*': '=', root: 'root' })]), [])
  t.same(sshDifferences(null, []), [], 'no rules on either side')
})

t.test('a different principal, login map, action, acceptEnv or rule order is a difference', async t => {
  const base = [ts(['100.64.0.1'], { root: 'root' }), ts(['100.64.0.1'], { root: '', ubuntu: 'ubuntu' })]
  const same = [warren(['100.64.0.1'], { root: 'root' }), warren(['100.64.0.1'], { root: '', ubuntu: 'ubuntu' })]
  t.same(sshDifferences(base, same), [])
  t.match(sshDifferences(base, [same[1]!, same[0]!]), [/^ssh rule 1: Tailscale accept \[root=root\] from 100.64.0.1; Warren accept \[root=,ubuntu=ubuntu\]/], 'order: a node applies the first match')
  t.match(sshDifferences(base, [warren(['100.64.0.9'], { root: 'root' }), same[1]!]), [/^ssh rule 1: .* Warren accept \[root=root\] from 100.64.0.9$/])
  t.match(sshDifferences(base, [warren(['100.64.0.1'], { root: 'root' }, 'check'), same[1]!]), [/^ssh rule 1: Tailscale accept .*; Warren check/])
  t.match(sshDifferences([ts(['100.64.0.1'], { root: 'root' }, CHECK)], [same[0]!]), [/^ssh rule 1: Tailscale check/], 'hold-and-delegate is a check')
  t.match(sshDifferences(base, [same[0]!]), [/^ssh rule 2: Tailscale accept \[root=,ubuntu=ubuntu\] from 100.64.0.1; Warren \(none\)$/], 'a missing rule')
  t.match(sshDifferences([{ ...base[0]!, acceptEnv: ['TERM'] }], [same[0]!]), [/env TERM; Warren accept \[root=root\] from 100.64.0.1$/])
})
