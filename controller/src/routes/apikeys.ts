import { CreateApiKeyRequest, CreateApiKeyResponse, ApiKeyResponse, ApiKeyList } from '@warren/protocol'
import { okResponse, createdResponse, byField, type ControllerPlugin } from './controller-plugin.js'
import { IdParams, NoBody } from './schemas.js'

/** apiKeyRoutes are `warren admin apikeys ...`: GET and POST /v1/apikeys, POST /v1/apikeys/:id/expire. */
export const apiKeyRoutes: ControllerPlugin = (app, { state, actor }) => {
  app.get('/v1/apikeys', { schema: { response: okResponse(ApiKeyList) } }, async () => ({ apiKeys: state.listApiKeys().sort(byField('created')) }))
  app.post('/v1/apikeys', { schema: { body: CreateApiKeyRequest, response: createdResponse(CreateApiKeyResponse) } }, async (req, reply) => {
    void reply.code(201)
    return await state.createApiKey(req.body, actor(req))
  })
  app.post('/v1/apikeys/:id/expire', { schema: { params: IdParams, body: NoBody, response: okResponse(ApiKeyResponse) } }, async req => {
    return { apiKey: await state.expireApiKey(req.params.id, actor(req)) }
  })
}
