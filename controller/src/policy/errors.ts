import { WarrenError } from '@warren/protocol'

/**
 * PolicyError is one problem in a policy file, with its place. `message` is the full
 * line a person reads (`12:9: group:engg is not defined (did you mean group:eng?)`);
 * `reason` and `suggestion` are its parts for tools. Warnings use the same class.
 */
export class PolicyError extends WarrenError {
  readonly line: number
  readonly column: number
  readonly reason: string
  readonly suggestion?: string

  constructor (line: number, column: number, reason: string, suggestion?: string) {
    super('policy_invalid', `${line}:${column}: ${reason}${suggestion === undefined ? '' : ` (${suggestion})`}`, { status: 400 })
    this.line = line
    this.column = column
    this.reason = reason
    if (suggestion !== undefined) this.suggestion = suggestion
  }
}

/** editDistance is the Levenshtein distance, for "did you mean" suggestions. */
export function editDistance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length]!
}

/** closest returns the candidate nearest to `word` if it is near enough to be a typo. */
export function closest (word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  const w = word.toLowerCase()
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase())
    if (d < bestDistance || (d === bestDistance && best !== undefined && c < best)) { best = c; bestDistance = d }
  }
  if (best === undefined) return undefined
  return bestDistance <= Math.max(2, Math.floor(word.length / 4)) ? best : undefined
}

/** didYouMean formats a suggestion, or nothing when there is none. */
export function didYouMean (word: string, candidates: Iterable<string>): string | undefined {
  const c = closest(word, candidates)
  return c === undefined ? undefined : `did you mean ${c}?`
}
