/**
 * The controller's certificate. Standalone TLS relays make and load theirs the same
 * way, so the code lives in @warren/relay.
 */
export { loadOrCreateTls, certificateFingerprint, CERT_FILE, KEY_FILE, type ServerTls as ControllerTls, type LoadTlsOptions } from '@warren/relay'
