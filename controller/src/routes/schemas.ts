import { Obj, Id } from '@warren/protocol'

/** IdParams is the `:id` path parameter of auth and API key routes. */
export const IdParams = Obj({ id: Id })

/** NoBody is the body of an action that takes no input: absent, or `{}`. */
export const NoBody = Obj({})
