/** Raw HTTP answers on upgrade sockets; the TLS relay writes them too, so they live in @warren/relay. */
export { writeRawError } from '@warren/relay'
