import dnsPacket, { type DecodedPacket } from 'dns-packet'
import type { MeshAnswer, MeshRecordsProvider } from './records.js'
import { HEADER_SIZE, RCODE, clientUdpLimit, echoable, respond, truncated } from './dns-message.js'
import type { DnsLogger, MagicDnsStats, QueryHandler } from './server-types.js'

/** QueryHandlerInit: where mesh answers come from and where the rest go. */
export interface QueryHandlerInit {
  records: MeshRecordsProvider
  forward: (q: DecodedPacket, raw: Buffer, udp: boolean) => Promise<Buffer>
  maxQuerySize: number
  stats: MagicDnsStats
  log: DnsLogger | undefined
}

/**
 * createQueryHandler builds the one function both listeners and `answer()` share, so a
 * query gets the same reply whichever way it arrives.
 */
export function createQueryHandler (init: QueryHandlerInit): QueryHandler {
  const { records, forward, maxQuerySize, stats, log } = init

  const local = (q: DecodedPacket, m: MeshAnswer, udp: boolean): Buffer => {
    stats.answeredLocally++
    const klass = q.questions![0]!.class ?? 'IN'
    const answers = klass === 'IN' || klass === 'ANY' ? m.answers : []
    const out = respond(q, RCODE[m.rcode], answers, m.authorities, dnsPacket.AUTHORITATIVE_ANSWER)
    return udp && out.length > clientUdpLimit(q) ? truncated(q, RCODE[m.rcode]) : out
  }

  return async (raw: Buffer, udp: boolean): Promise<Buffer | undefined> => {
    stats.queries++
    let q: DecodedPacket
    try {
      if (raw.length < HEADER_SIZE || raw.length > maxQuerySize) throw new Error('bad size')
      q = dnsPacket.decode(raw)
    } catch {
      stats.dropped++
      return undefined
    }
    if (q.type !== 'query') { stats.dropped++; return undefined }
    try {
      if (!echoable(raw, q.questions ?? [])) return respond({ ...q, questions: [] }, RCODE.FORMERR)
      if ((q as { opcode?: string }).opcode !== 'QUERY') return respond(q, RCODE.NOTIMP)
      if (q.questions?.length !== 1) return respond({ ...q, questions: [] }, RCODE.FORMERR)
      const question = q.questions[0]!
      const mesh = records.current()?.resolve(question.name, question.type)
      if (mesh !== undefined) return local(q, mesh, udp)
      return await forward(q, raw, udp)
    } catch (err) {
      // A query dns-packet can read but not write back (odd names or classes) is dropped.
      log?.debug({ err: String(err) }, 'MagicDNS: could not answer a query')
      stats.dropped++
      return undefined
    }
  }
}
