/** @warren/cli is the `warren` command. */
export {}
