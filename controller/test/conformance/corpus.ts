import { gunzipSync } from 'node:zlib'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { TailscaleSshRule } from './ssh-rules.js'

/**
 * The Tailscale conformance corpus (test/fixtures/conformance/tailscale, see its README):
 * policies sent to Tailscale's control plane with its answer and, for accepted ones, the
 * packet filter it computed for every node of a fixed topology.
 */

/** CATEGORIES are the corpus files, in the order the table lists them. */
export const CATEGORIES = ['acl', 'routes', 'policytest', 'grant', 'nodeattrs', 'ssh', 'sshtest'] as const
export type Category = typeof CATEGORIES[number]

/** TailscaleFilterRule is one entry of a node's `packetFilter` as Tailscale sent it. */
export interface TailscaleFilterRule {
  IPProto: number[] | null
  Srcs: string[] | null
  Dsts: Array<{ Net: string, Ports: { First: number, Last: number } }> | null
}

/** TailscaleRule is one entry of a node's `packetFilterRules`; only its capability grants (`CapGrant`) are read. */
export interface TailscaleRule {
  SrcIPs: string[] | null
  CapGrant?: Array<{ Dsts: string[], CapMap: Record<string, unknown[] | null> }> | null
}

export interface TopologyNode {
  hostname: string
  tags: string[]
  user?: string
  ipv4: string
  ipv6: string
  routable_ips: string[]
  approved_routes: string[]
}

/** CorpusRecord is one policy with Tailscale's answer. */
export interface CorpusRecord {
  id: string
  category: Category
  description: string
  /** the policy as sent: HuJSON text, or a JSON object */
  policy: string | object
  tailscale_status: number
  tailscale_error: string | null
  topology: {
    users: Array<{ id: number, name: string, email?: string }>
    nodes: Record<string, TopologyNode>
  }
  /** per captured node (a node of the topology may be missing): its filter, its capability rules, its SSH rules and its capability map (name -> values) */
  nodes: Record<string, { packetFilter: TailscaleFilterRule[] | null, packetFilterRules?: TailscaleRule[] | null, sshRules?: TailscaleSshRule[] | null, capMap?: Record<string, unknown> | null } | undefined> | null
}

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/conformance/tailscale/', import.meta.url))

/** loadCategory reads one corpus file (gzip, one JSON record a line). */
export function loadCategory (category: Category): CorpusRecord[] {
  const text = gunzipSync(readFileSync(`${FIXTURES}${category}.jsonl.gz`)).toString('utf8')
  return text.split('\n').filter(line => line.trim() !== '').map(line => JSON.parse(line) as CorpusRecord)
}

/** policyText is the policy as Warren reads it: the text Tailscale got. */
export function policyText (r: CorpusRecord): string {
  return typeof r.policy === 'string' ? r.policy : JSON.stringify(r.policy, null, 2)
}
