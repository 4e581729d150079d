import { Obj, UserName, CreateUserRequest, UserResponse, UserList, SetUserRoleRequest } from '@warren/protocol'
import { okResponse, createdResponse, byField, type ControllerPlugin } from './controller-plugin.js'

const UserParams = Obj({ name: UserName })

/** userRoutes are `warren admin users ...`: GET and POST /v1/users, POST /v1/users/:name/role, DELETE /v1/users/:name. */
export const userRoutes: ControllerPlugin = (app, { state, actor }) => {
  app.get('/v1/users', { schema: { response: okResponse(UserList) } }, async () => ({ users: state.listUsers().sort(byField('name')) }))
  app.post('/v1/users', { schema: { body: CreateUserRequest, response: createdResponse(UserResponse) } }, async (req, reply) => {
    void reply.code(201)
    return { user: await state.createUser(req.body, actor(req)) }
  })
  app.post('/v1/users/:name/role', { schema: { params: UserParams, body: SetUserRoleRequest, response: okResponse(UserResponse) } }, async req => {
    return { user: await state.setUserRole(req.params.name, req.body.role, actor(req)) }
  })
  app.delete('/v1/users/:name', { schema: { params: UserParams, response: okResponse(UserResponse) } }, async req => {
    return { user: await state.deleteUser(req.params.name, actor(req)) }
  })
}
