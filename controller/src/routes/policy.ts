import {
  PolicyCheckRequest, PolicyCheckResponse, PolicyDiffRequest, PolicyDiffResponse, PolicyExplainRequest, PolicyExplainResponse,
  PolicyHistory, PolicyInfo, RollbackPolicyRequest, SetPolicyRequest, SetPolicyResponse
} from '@warren/protocol'
import { policyServiceFor, type PolicyService } from '../policy-service.js'
import { okResponse, type ControllerPlugin } from './controller-plugin.js'

/**
 * policyRoutes is the admin API behind `warren admin policy ...`:
 * GET /v1/policy, PUT /v1/policy {text, message?}, GET /v1/policy/history,
 * POST /v1/policy/rollback {version, message?}, POST /v1/policy/check {text?} (parse and
 * tests; without text, the policy in force: `test`), POST /v1/policy/diff {text},
 * POST /v1/policy/explain {src, dst, port, proto?}.
 * Without a service it uses the state's own (policyServiceFor), shared by both servers.
 */
export function policyRoutes (given?: PolicyService): ControllerPlugin {
  return async (app, { actor, state }) => {
    const service = given ?? await policyServiceFor(state)
    app.get('/v1/policy', { schema: { response: okResponse(PolicyInfo) } }, async () => {
      return service.info()
    })
    app.put('/v1/policy', { schema: { body: SetPolicyRequest, response: okResponse(SetPolicyResponse) } }, async req => {
      return await service.set(req.body.text, actor(req), req.body.message)
    })
    app.get('/v1/policy/history', { schema: { response: okResponse(PolicyHistory) } }, async () => ({ versions: service.history() }))
    app.post('/v1/policy/rollback', { schema: { body: RollbackPolicyRequest, response: okResponse(SetPolicyResponse) } }, async req => {
      return await service.rollback(req.body.version, actor(req), req.body.message)
    })
    app.post('/v1/policy/check', { schema: { body: PolicyCheckRequest, response: okResponse(PolicyCheckResponse) } }, async req => {
      return await service.check(req.body.text)
    })
    app.post('/v1/policy/diff', { schema: { body: PolicyDiffRequest, response: okResponse(PolicyDiffResponse) } }, async req => {
      return await service.diff(req.body.text)
    })
    app.post('/v1/policy/explain', { schema: { body: PolicyExplainRequest, response: okResponse(PolicyExplainResponse) } }, async req => {
      const { src, dst, port, proto } = req.body
      return await service.explain(src, dst, port, proto)
    })
  }
}
