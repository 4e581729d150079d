import {
  PolicyCheckRequest, PolicyCheckResponse, PolicyDiffRequest, PolicyDiffResponse, PolicyExplainRequest, PolicyExplainResponse,
  PolicyHistory, PolicyInfo, RollbackPolicyRequest, SetPolicyRequest, SetPolicyResponse
} from '@warren/protocol'
import { errorResponses, type ControllerPlugin } from '../app.js'
import { policyServiceFor, type PolicyService } from '../policy-service.js'

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
    const ok = <T>(schema: T) => ({ 200: schema, ...errorResponses })
    app.get('/v1/policy', { schema: { response: ok(PolicyInfo) } }, async () => {
      return service.info()
    })
    app.put('/v1/policy', { schema: { body: SetPolicyRequest, response: ok(SetPolicyResponse) } }, async req => {
      const body = req.body as SetPolicyRequest
      return await service.set(body.text, actor(req), body.message)
    })
    app.get('/v1/policy/history', { schema: { response: ok(PolicyHistory) } }, async () => ({ versions: service.history() }))
    app.post('/v1/policy/rollback', { schema: { body: RollbackPolicyRequest, response: ok(SetPolicyResponse) } }, async req => {
      const body = req.body as RollbackPolicyRequest
      return await service.rollback(body.version, actor(req), body.message)
    })
    app.post('/v1/policy/check', { schema: { body: PolicyCheckRequest, response: ok(PolicyCheckResponse) } }, async req => {
      return await service.check((req.body as PolicyCheckRequest).text)
    })
    app.post('/v1/policy/diff', { schema: { body: PolicyDiffRequest, response: ok(PolicyDiffResponse) } }, async req => {
      return await service.diff((req.body as PolicyDiffRequest).text)
    })
    app.post('/v1/policy/explain', { schema: { body: PolicyExplainRequest, response: ok(PolicyExplainResponse) } }, async req => {
      const body = req.body as PolicyExplainRequest
      return await service.explain(body.src, body.dst, body.port, body.proto)
    })
  }
}
