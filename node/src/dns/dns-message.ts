import dnsPacket, { type Answer, type DecodedPacket, type Question } from 'dns-packet'

/**
 * dns-message.ts holds the MagicDNS server's wire-level pieces: header flags, reply
 * encoding and the checks that compare a reply with its query.
 */

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const
export const FLAG_QR = 0x8000
export const FLAG_TC = dnsPacket.TRUNCATED_RESPONSE
const FLAG_RD = dnsPacket.RECURSION_DESIRED
const FLAG_CD = dnsPacket.CHECKING_DISABLED
export const HEADER_SIZE = 12
const MIN_UDP_PAYLOAD = 512
/** OUR_UDP_PAYLOAD is the EDNS size we advertise: the DNS flag day 2020 value. */
const OUR_UDP_PAYLOAD = 1232
const MAX_UDP_PAYLOAD = 4096

// dns-packet codes a single question at runtime but its types do not say so.
const questionCodec = (dnsPacket as unknown as { question: { decode: (buf: Buffer, offset: number) => Question, encode: (q: Question, buf: Buffer, offset: number) => Question, encodingLength: (q: Question) => number } }).question

/** clientUdpLimit is the largest UDP reply the client accepts: 512, or its EDNS size up to 4096. */
export function clientUdpLimit (q: DecodedPacket): number {
  const opt = (q.additionals ?? []).find(a => a.type === 'OPT') as { udpPayloadSize?: number } | undefined
  if (opt?.udpPayloadSize === undefined) return MIN_UDP_PAYLOAD
  return Math.max(MIN_UDP_PAYLOAD, Math.min(opt.udpPayloadSize, MAX_UDP_PAYLOAD))
}

/** sameQuestion checks that an upstream reply answers what we asked (DNS names are case-insensitive). */
export function sameQuestion (reply: Buffer, asked: Question): boolean {
  try {
    if (reply.readUInt16BE(4) !== 1) return false
    const got = questionCodec.decode(reply, HEADER_SIZE)
    return got.type === asked.type && got.name.toLowerCase() === asked.name.toLowerCase()
  } catch {
    return false
  }
}

/**
 * echoable says whether a query's questions encode back to the bytes they came as, so
 * that a reply can repeat them: dns-packet reads labels as UTF-8 text, and a stray byte
 * would come back as a different, even over-long, label.
 */
export function echoable (raw: Buffer, questions: Question[]): boolean {
  try {
    const again = Buffer.concat(questions.map(q => {
      const buf = Buffer.alloc(questionCodec.encodingLength(q))
      questionCodec.encode(q, buf, 0)
      return buf
    }))
    return raw.subarray(HEADER_SIZE, HEADER_SIZE + again.length).equals(again)
  } catch {
    return false
  }
}

/** withId copies a message under another 16-bit id, so upstream ids stay unguessable. */
export function withId (msg: Buffer, id: number): Buffer {
  const copy = Buffer.from(msg)
  copy.writeUInt16BE(id, 0)
  return copy
}

/** framed prefixes a message with its 16-bit length, as DNS over TCP sends it. */
export function framed (msg: Buffer): Buffer {
  const out = Buffer.alloc(2 + msg.length)
  out.writeUInt16BE(msg.length, 0)
  msg.copy(out, 2)
  return out
}

/** rcodeOf reads a reply's result code, so failing upstreams can be skipped. */
export function rcodeOf (msg: Buffer): number {
  return msg.readUInt16BE(2) & 0xf
}

/** respond encodes our own reply to a query, echoing its questions and EDNS presence. */
export function respond (q: DecodedPacket, rcode: number, answers: Answer[] = [], authorities: Answer[] = [], flags = 0): Buffer {
  const hasOpt = (q.additionals ?? []).some(a => a.type === 'OPT')
  return dnsPacket.encode({
    type: 'response',
    id: q.id,
    flags: flags | dnsPacket.RECURSION_AVAILABLE | ((q.flags ?? 0) & (FLAG_RD | FLAG_CD)) | rcode,
    questions: q.questions,
    answers,
    authorities,
    additionals: hasOpt ? [{ type: 'OPT', name: '.', udpPayloadSize: OUR_UDP_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : []
  })
}

/** truncated is the reply that tells a UDP client to ask again over TCP. */
export function truncated (q: DecodedPacket, rcode: number): Buffer {
  return respond(q, rcode, [], [], FLAG_TC)
}
