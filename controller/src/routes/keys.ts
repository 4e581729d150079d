import { CreateAuthKeyRequest, CreateAuthKeyResponse, AuthKeyResponse, AuthKeyList } from '@warren/protocol'
import { okResponse, createdResponse, byField, type ControllerPlugin } from './controller-plugin.js'
import { IdParams, NoBody } from './schemas.js'

/** authKeyRoutes are `warren admin keys ...`: GET and POST /v1/authkeys, POST /v1/authkeys/:id/expire. */
export const authKeyRoutes: ControllerPlugin = (app, { state, actor }) => {
  app.get('/v1/authkeys', { schema: { response: okResponse(AuthKeyList) } }, async () => ({ authKeys: state.listAuthKeys().sort(byField('created')) }))
  app.post('/v1/authkeys', { schema: { body: CreateAuthKeyRequest, response: createdResponse(CreateAuthKeyResponse) } }, async (req, reply) => {
    void reply.code(201)
    return await state.createAuthKey(req.body, actor(req))
  })
  app.post('/v1/authkeys/:id/expire', { schema: { params: IdParams, body: NoBody, response: okResponse(AuthKeyResponse) } }, async req => {
    return { authKey: await state.expireAuthKey(req.params.id, actor(req)) }
  })
}
