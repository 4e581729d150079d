import {
  ControllerInfo, RegisterResponse, ErrorBody, WarrenError, PROTOCOL_VERSION, REGISTER_DOMAIN,
  checkProtocolVersion, registerSigningPayload, signMessage, wireGuardProof, wireGuardPublicKey, validate,
  type MachineKeyPair, type Node, type RegisterRequest
} from '@warren/protocol'
import type { JsonTransport } from '../transport/index.js'

/** RegisterInit is what a node sends to join (with an auth key) or to log in again (without). */
export interface RegisterInit {
  machineKey: MachineKeyPair
  /** the WireGuard private key; only its public key and a proof of possession leave the node */
  wireguardPrivateKey: string
  hostname: string
  authKey?: string
  requestTags?: string[]
  now?: () => number
}

/** Registration is the controller's answer: its info and this node as it stored it. */
export interface Registration {
  controller: ControllerInfo
  node: Node
}

/**
 * registerNode fetches the controller's key, signs the registration with the machine key,
 * proves possession of the WireGuard key and posts it. A refusal (bad auth key, expired,
 * unknown node) becomes a WarrenError with the controller's own code and message.
 */
export async function registerNode (transport: JsonTransport, init: RegisterInit): Promise<Registration> {
  const infoRes = await transport.request('GET', '/v1/machine/key')
  const controller = validate(ControllerInfo, expectOk(infoRes, 'fetching the controller key'), 'controller info')
  checkProtocolVersion(controller.version, 'the controller')
  const unsigned: Omit<RegisterRequest, 'signature' | 'wgProof'> = {
    version: PROTOCOL_VERSION,
    ...(init.authKey !== undefined ? { authKey: init.authKey } : {}),
    machineKey: init.machineKey.publicKey,
    wgKey: wireGuardPublicKey(init.wireguardPrivateKey),
    hostname: init.hostname,
    ...(init.requestTags !== undefined && init.requestTags.length > 0 ? { requestTags: init.requestTags } : {}),
    timestamp: (init.now ?? Date.now)()
  }
  const payload = registerSigningPayload(unsigned)
  const req: RegisterRequest = {
    ...unsigned,
    signature: signMessage(init.machineKey.secretKey, REGISTER_DOMAIN, payload),
    wgProof: wireGuardProof(init.wireguardPrivateKey, controller.controllerKey, REGISTER_DOMAIN, payload)
  }
  const res = await transport.request('POST', '/v1/machine/register', req)
  const body = validate(RegisterResponse, expectOk(res, 'registering'), 'registration answer')
  return { controller, node: body.node }
}

/** expectOk returns a 2xx body or throws the server's error as a WarrenError. */
export function expectOk (res: { status: number, body: unknown }, doing: string): unknown {
  if (res.status >= 200 && res.status < 300) return res.body
  throw errorFromResponse(res, doing)
}

/** errorFromResponse turns an `{error: {code, message}}` answer into a WarrenError. */
export function errorFromResponse (res: { status: number, body: unknown }, doing: string): WarrenError {
  try {
    const e = validate(ErrorBody, res.body).error
    return new WarrenError(e.code, e.message, { status: res.status, ...(e.field !== undefined ? { field: e.field } : {}) })
  } catch {
    const text = typeof res.body === 'string' ? res.body.slice(0, 200) : JSON.stringify(res.body ?? '').slice(0, 200)
    return new WarrenError('bad_response', `controller answered ${res.status} while ${doing}: ${text}`, { status: 502 })
  }
}
