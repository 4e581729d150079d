/**
 * @warren/controller is the control plane: identities, devices, auth keys, the access
 * policy, and the map sessions that tell each node what it may see.
 */
export {}
