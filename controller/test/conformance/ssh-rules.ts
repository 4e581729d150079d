import type { SshNodeRule } from '../../src/policy/index.js'

/** TailscaleSshRule is one entry of a node's `sshRules` as Tailscale sent it (tailcfg.SSHRule). */
export interface TailscaleSshRule {
  principals: Array<{ nodeIP?: string }> | null
  sshUsers: Record<string, string> | null
  action: { accept?: boolean, holdAndDelegate?: string } | null
  acceptEnv?: string[] | null
}

/**
 * sshRuleText writes one rule in a canonical form: principals as a sorted set (Tailscale
 * lists an address twice at times; order among them means nothing), the login map with
 * sorted keys, the action (accept, or check: Tailscale's hold-and-delegate) and acceptEnv.
 * Rule order is kept: a node applies the first rule that matches.
 */
function sshRuleText (principals: readonly string[], sshUsers: Readonly<Record<string, string>>, action: string, acceptEnv: readonly string[] | undefined): string {
  const users = Object.keys(sshUsers).sort().map(k => `${k}=${sshUsers[k]!}`).join(',')
  const env = acceptEnv === undefined || acceptEnv.length === 0 ? '' : ` env ${acceptEnv.join(',')}`
  return `${action} [${users}] from ${[...new Set(principals)].sort().join(',')}${env}`
}

function tailscaleText (r: TailscaleSshRule): string {
  const action = r.action?.holdAndDelegate !== undefined ? 'check' : r.action?.accept === true ? 'accept' : 'reject'
  return sshRuleText((r.principals ?? []).flatMap(p => p.nodeIP ?? []), r.sshUsers ?? {}, action, r.acceptEnv ?? undefined)
}

function warrenText (r: SshNodeRule): string {
  return sshRuleText(r.principals, r.sshUsers, r.action, r.acceptEnv)
}

/** sshDifferences compares one node's SSH rules, in order; each line names the first rule that differs. */
export function sshDifferences (tailscale: readonly TailscaleSshRule[] | null | undefined, warren: readonly SshNodeRule[]): string[] {
  const ts = (tailscale ?? []).map(tailscaleText)
  const w = warren.map(warrenText)
  const out: string[] = []
  for (let i = 0; i < Math.max(ts.length, w.length); i++) {
    if (ts[i] === w[i]) continue
    out.push(`ssh rule ${i + 1}: Tailscale ${ts[i] ?? '(none)'}; Warren ${w[i] ?? '(none)'}`)
    break
  }
  return out
}
