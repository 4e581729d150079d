import {
  ControllerInfo, RegisterResponse, PROTOCOL_VERSION, REGISTER_DOMAIN,
  checkProtocolVersion, negotiateVersion, registerSigningPayload, signMessage, wireGuardProof, wireGuardPublicKey, validate,
  type MachineKeyPair, type Node, type RegisterRequest
} from '@warren/protocol'
import { expectOk, type JsonTransport } from '@warren/sdk/transport'

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
 * signedRegistration fetches the controller's key, then signs a registration with the
 * machine key and proves possession of the WireGuard key against the controller's key.
 */
export async function signedRegistration (transport: JsonTransport, init: RegisterInit): Promise<{ controller: ControllerInfo, req: RegisterRequest }> {
  // The controller answers with the version both speak (the lower one), which the registration then uses.
  const infoRes = await transport.request('GET', `/v1/machine/key?version=${PROTOCOL_VERSION}`)
  const controller = validate(ControllerInfo, expectOk(infoRes, 'fetching the controller key'), 'controller info')
  checkProtocolVersion(controller.version, 'the controller')
  const unsigned: Omit<RegisterRequest, 'signature' | 'wgProof'> = {
    version: negotiateVersion(controller.version),
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
  return { controller, req }
}

/**
 * registerNode signs a registration (signedRegistration) and posts it. A refusal (bad
 * auth key, expired, unknown node) becomes a WarrenError with the controller's own code
 * and message.
 */
export async function registerNode (transport: JsonTransport, init: RegisterInit): Promise<Registration> {
  const { controller, req } = await signedRegistration(transport, init)
  const res = await transport.request('POST', '/v1/machine/register', req)
  const body = validate(RegisterResponse, expectOk(res, 'registering'), 'registration answer')
  return { controller, node: body.node }
}
