#!/usr/bin/env node
// The `warren` executable. npm links this file (it exists before any build, unlike
// dist/), and it runs the compiled CLI.
try {
  await import('../dist/src/bin/warren.js')
} catch (e) {
  if (e?.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('dist/src/bin/warren.js')) {
    process.stderr.write('warren: the CLI is not built yet: run `npm run build` in the Warren checkout first\n')
    process.exit(1)
  }
  throw e
}
