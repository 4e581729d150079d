import { Type } from '@sinclair/typebox'
import { MIN_PROTOCOL_VERSION, negotiateVersion, nodeForVersion, isWarrenError, Obj, ControllerInfo, RegisterRequest, RegisterResponse } from '@warren/protocol'
import type { ControllerState } from '../state.js'
import type { ControllerMetrics } from '../metrics.js'
import { okResponse, type ControllerApp } from './controller-plugin.js'

/** ControllerInfoQuery is GET /v1/machine/key's query: the protocol version the node speaks (absent: the first). */
const ControllerInfoQuery = Obj({ version: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,5}$', description: 'a protocol version' })) })

export interface MachineRoutesOptions {
  state: ControllerState
  metrics?: ControllerMetrics
  /** registrations per client address per window; absent: no rate limit */
  registerLimit?: { max: number, windowMs: number }
}

/**
 * machineRoutes are what nodes call on the public server without an API key:
 * GET /v1/machine/key (the controller's key, protocol version and domain) and
 * POST /v1/machine/register (a signed registration, rate limited per address).
 */
export function machineRoutes (opts: MachineRoutesOptions): (app: ControllerApp) => void {
  const { state, metrics, registerLimit } = opts
  return app => {
    // A node that names no version is from before versions were negotiated: it speaks the first one.
    app.get('/v1/machine/key', { schema: { querystring: ControllerInfoQuery, response: okResponse(ControllerInfo) } }, async req => {
      return { version: negotiateVersion(req.query.version === undefined ? MIN_PROTOCOL_VERSION : Number(req.query.version)), controllerKey: state.controllerKey.publicKey, domain: state.domain }
    })
    app.post('/v1/machine/register', {
      schema: { body: RegisterRequest, response: okResponse(RegisterResponse) },
      ...(registerLimit !== undefined ? { config: { rateLimit: { max: registerLimit.max, timeWindow: registerLimit.windowMs } } } : {})
    }, async req => {
      try {
        const node = await state.register(req.body)
        metrics?.registrations.inc({ result: 'ok' })
        return { node: nodeForVersion(node, req.body.version) }
      } catch (e) {
        metrics?.registrations.inc({ result: isWarrenError(e) ? e.code : 'internal' })
        throw e
      }
    })
  }
}
