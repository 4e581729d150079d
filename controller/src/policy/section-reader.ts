import type { SourcePos } from './types.js'

/** JsonLike is the slice of a jsonc-parser node the section readers need. */
export interface JsonLike { type: string, value?: unknown, children?: JsonLike[] }

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
