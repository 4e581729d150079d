/**
 * ports holds the port arithmetic of the compile: a rule's port ranges checked, sorted and
 * merged into a canonical list, and unions of such lists.
 */
import { WarrenError, type PortRange } from '@warren/protocol'

/** Ports is a sorted list of disjoint, non-adjacent inclusive port ranges. */
export type Ports = Array<[number, number]>

/** NO_PORTS stands for the ports of a portless protocol. */
export const NO_PORTS: Ports = [[0, 0]]

/** mergePorts sorts ranges and joins those that overlap or touch. */
export function mergePorts (ranges: Ports): Ports {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0] || a[1] - b[1])
  const out: Ports = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1])
    else out.push([r[0], r[1]])
  }
  return out
}

/** unionPorts merges two canonical port lists in one pass. */
export function unionPorts (a: Ports, b: Ports): Ports {
  const out: Ports = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    const r = j >= b.length || (i < a.length && a[i]![0] <= b[j]![0]) ? a[i++]! : b[j++]!
    const last = out[out.length - 1]
    if (last !== undefined && r[0] <= last[1] + 1) { if (r[1] > last[1]) last[1] = r[1] } else out.push([r[0], r[1]])
  }
  return out
}

function checkPorts (ports: PortRange[], where: string): Ports {
  return ports.map((p, i) => {
    const ok = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 65535
    if (!ok(p.first) || !ok(p.last) || p.first > p.last) {
      throw new WarrenError('bad_filter', `${where}.ports[${i}]: ${p.first}-${p.last} is not a port range; first and last must be 0-65535 with first <= last`, { field: `${where}.ports[${i}]` })
    }
    return [p.first, p.last]
  })
}

/**
 * rulePorts checks the i-th rule's ports and merges them; ports that are already sorted
 * and apart (as the controller sends them) skip the sort.
 */
export function rulePorts (ports: PortRange[], i: number): Ports {
  let canonical = true
  for (let k = 0; k < ports.length; k++) {
    const p = ports[k]!
    if (!(Number.isInteger(p.first) && Number.isInteger(p.last) && p.first >= 0 && p.first <= p.last && p.last <= 65535)) {
      return mergePorts(checkPorts(ports, `filter[${i}]`)) // throws, naming the range
    }
    if (k > 0 && p.first <= ports[k - 1]!.last + 1) canonical = false
  }
  return canonical ? ports.map(p => [p.first, p.last]) : mergePorts(checkPorts(ports, `filter[${i}]`))
}

/** samePorts compares two canonical port lists. */
export function samePorts (a: Ports, b: Ports): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i]![0] !== b[i]![0] || a[i]![1] !== b[i]![1]) return false
  return true
}
