import type { SectionReader } from './auto-approvers.js'
import type { Selector, SourcePos } from './types.js'

/** JsonLike is the slice of a jsonc-parser node the section parsers need. */
export interface JsonLike { type: string, value?: unknown, offset: number, children?: JsonLike[] }

/**
 * PolicyReader is what the policy parser lends the parsers of sections kept in their own
 * modules: shape checks, errors and warnings at the right place, and its alias reader.
 */
export interface PolicyReader<N extends JsonLike> extends SectionReader<N> {
  array: (n: N, what: string) => N[] | undefined
  warn: (n: N, reason: string, suggestion?: string) => void
  /** selector reads one alias (`*`, user, group, tag, autogroup, host, CIDR, IP set), reporting what it cannot */
  selector: (value: string, n: N) => Selector | undefined
  pos: (n: N) => SourcePos
}
