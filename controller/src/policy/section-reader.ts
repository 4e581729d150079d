import type { Selector, SourcePos } from './types.js'

/** JsonLike is the slice of a jsonc-parser node the section readers need. */
export interface JsonLike { type: string, value?: unknown, offset: number, children?: JsonLike[] }

/**
 * SectionReader is what the policy parser lends a section parser in another module
 * (autoApprovers, postures): shape checks that report errors at the right line, positions,
 * and the user-token bookkeeping that turns unknown users into warnings.
 */
export interface SectionReader<N extends JsonLike> {
  object: (n: N, what: string) => N[] | undefined
  strings: (n: N, what: string) => Array<{ value: string, node: N }>
  err: (n: N, reason: string, suggestion?: string) => void
  pos: (n: N) => SourcePos
  useUser: (token: string, n: N) => void
}

/**
 * PolicyReader is a SectionReader with more of the parser for the sections that need it
 * (ipsets, nodeAttrs): arrays, warnings, and its alias reader.
 */
export interface PolicyReader<N extends JsonLike> extends SectionReader<N> {
  array: (n: N, what: string) => N[] | undefined
  warn: (n: N, reason: string, suggestion?: string) => void
  /**
   * selector reads one alias (`*`, user, group, tag, autogroup, host, CIDR, IP set), reporting
   * what it cannot; as a destination (the default) or as a source (role autogroups)
   */
  selector: (value: string, n: N, side?: 'src' | 'dst') => Selector | undefined
}
