/**
 * shuffled returns a seeded permutation, so table tests can replay their cases in many
 * orders (showing `set` does not depend on what came before) and still be repeatable.
 */
export function shuffled<T> (xs: readonly T[], seed: number): T[] {
  const out = [...xs]
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}
