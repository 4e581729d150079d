/** Machine-key signatures are checked by the map and the TLS relay alike; the check lives in @warren/relay. */
export { verifyMachineSignature } from '@warren/relay'
