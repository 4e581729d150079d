/**
 * UNSAFE_TEXT_CHARS is the regex character class (without brackets) of characters that
 * free text may not hold: C0 controls (so also NUL, tab, line breaks and the ESC that
 * starts ANSI escapes), DEL, C1 controls, the Unicode line and paragraph separators, and
 * the bidi marks, embeddings, overrides and isolates that can make text display as
 * something other than what it is. Written with \u escapes so it reads the same with and
 * without the regex `u` flag (JSON Schema validators differ).
 */
export const UNSAFE_TEXT_CHARS = '\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069'

const UNSAFE = new RegExp(`[${UNSAFE_TEXT_CHARS}]`, 'g')
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

/**
 * escapeUnsafeText shows each unsafe character as an escape (`\n`, `\x1b`, `\u202e`), so
 * text stored before input was checked cannot move the cursor, recolour or reorder a
 * terminal when printed.
 */
export function escapeUnsafeText (s: string): string {
  return s.replace(UNSAFE, c => {
    const code = c.charCodeAt(0)
    return NAMED[c] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`)
  })
}
