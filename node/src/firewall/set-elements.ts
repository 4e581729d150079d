/**
 * set-elements names Warren's allow sets and holds their elements as canonical nft text:
 * per family, with or without a destination port, hash or interval (see ruleset.ts).
 */

/** SET_NAMES names Warren's sets: per family, with or without a port field, hash or interval. */
export const SET_NAMES = ['allow4', 'allow4p', 'allow4i', 'allow4pi', 'allow6', 'allow6p', 'allow6i', 'allow6pi'] as const
export type SetName = typeof SET_NAMES[number]

/** SetElements holds each set's elements as canonical `nft` element text, sorted. */
export type SetElements = Record<SetName, string[]>

/** EXPAND_PORTS: a port range of at most this many ports from one address becomes hash elements. */
export const EXPAND_PORTS = 16

/** setHasPorts says whether a set's key ends with a destination port. */
export function setHasPorts (set: SetName): boolean { return !set.slice(5).includes('p') }
/** setIsV6 says whether a set holds IPv6 sources. */
export const setIsV6 = (set: SetName): boolean => set.startsWith('allow6')
/** setIsInterval says whether a set holds ranges (nft's interval sets) rather than single keys. */
export const setIsInterval = (set: SetName): boolean => set.endsWith('i')

/** Element is one set element: the set it belongs to and its canonical text. */
export type Element = readonly [SetName, string]

/** emptySets is the elements of a filter that allows nothing. */
export function emptySets (): SetElements {
  return Object.fromEntries(SET_NAMES.map(n => [n, []])) as unknown as SetElements
}

/** toSets sorts elements into their sets, keeping their order. */
export function toSets (lists: Iterable<readonly Element[]>): SetElements {
  const sets = emptySets()
  for (const list of lists) for (const [set, text] of list) sets[set].push(text)
  return sets
}

/** SetDiff lists elements to delete and add, per set. */
export interface SetDiff { del: SetElements, add: SetElements, size: number }

/** diffSets compares two canonical element lists. */
export function diffSets (prev: SetElements, next: SetElements): SetDiff {
  const del = emptySets()
  const add = emptySets()
  let size = 0
  for (const name of SET_NAMES) {
    const before = new Set(prev[name])
    const after = new Set(next[name])
    del[name] = prev[name].filter(e => !after.has(e))
    add[name] = next[name].filter(e => !before.has(e))
    size += del[name].length + add[name].length
  }
  return { del, add, size }
}
