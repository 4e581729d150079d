import { escapeUnsafeText } from '@warren/protocol'

/**
 * output: how commands print. People get aligned tables and relative times; scripts
 * pass --json and get JSON with ISO times.
 */
import { cliIo } from './cli-io.js'

/** Column describes one table column: its header and how to show a row's value. */
export interface Column<T> {
  header: string
  value: (row: T) => string
}

/**
 * formatTable aligns rows under upper-case headers, two spaces apart, no trailing blanks.
 * Control, line-break and bidi characters in cells are shown escaped, so stored text
 * cannot corrupt the terminal or the table.
 */
export function formatTable<T> (rows: T[], columns: Array<Column<T>>): string {
  const cells = [columns.map(c => c.header.toUpperCase()), ...rows.map(r => columns.map(c => escapeUnsafeText(c.value(r))))]
  const widths = columns.map((_, i) => Math.max(...cells.map(row => row[i]!.length)))
  return cells.map(row => row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n'
}

/** printTable prints a table, or `empty` when there are no rows. */
export function printTable<T> (rows: T[], columns: Array<Column<T>>, empty: string): void {
  cliIo().stdout.write(rows.length === 0 ? `${empty}\n` : formatTable(rows, columns))
}

/** printJson prints a value as indented JSON followed by a newline. */
export function printJson (value: unknown): void {
  cliIo().stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

/** printLine prints one line for people. */
export function printLine (line = ''): void {
  cliIo().stdout.write(`${line}\n`)
}

/** relativeTime says how far `iso` is from `now` in the largest fitting unit ("5m ago", "in 23h"). */
export function relativeTime (iso: string | undefined, now = Date.now()): string {
  if (iso === undefined || iso === '') return '-'
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return iso
  const diff = t - now
  const abs = Math.abs(diff)
  if (abs < 5_000) return 'just now'
  if (abs > 365 * 86_400_000) return iso.slice(0, 10)
  const units: Array<[string, number]> = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]]
  // A key made "for 24h" and listed a moment later still says "in 1d", not "in 23h".
  const [unit, ms] = units.find(([, ms]) => abs >= ms * 0.98)!
  const n = Math.floor(abs / ms + 0.02)
  return diff < 0 ? `${n}${unit} ago` : `in ${n}${unit}`
}
