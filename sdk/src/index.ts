/**
 * @warren/sdk is what apps embed: a LocalAPI client for the daemon and an admin API
 * client for the controller.
 */
export {}
