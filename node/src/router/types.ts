/** RouterConfig is the desired addresses and routes of the mesh interface. */
export interface RouterConfig {
  interfaceName: string
  /** this node's own addresses with prefix length, such as 100.64.0.5/32 */
  addresses: string[]
  /** prefixes reached through the interface, such as 100.64.0.0/10 */
  routes: string[]
  mtu?: number
}

/** RouterChanges says what one `set` changed; all empty means nothing was touched. */
export interface RouterChanges {
  /** the link was brought up or its MTU changed */
  link: boolean
  addressesAdded: string[]
  addressesRemoved: string[]
  routesAdded: string[]
  routesRemoved: string[]
}

/**
 * Router is the adapter for the mesh interface's addresses and routes. `set` takes the
 * full desired state, changes only what differs, and changes nothing when called again.
 */
export interface Router {
  readonly interfaceName: string
  /** up checks that the interface exists and brings the link up */
  up: () => Promise<void>
  set: (desired: RouterConfig) => Promise<RouterChanges>
  /** close removes the addresses and routes that Warren put on the interface */
  close: () => Promise<void>
}
