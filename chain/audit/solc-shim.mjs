#!/usr/bin/env node
// A `solc` command line backed by solc-js, for tools that drive the native compiler (crytic-compile, so
// Slither). It supports the two calls they make: `solc --version` and `solc --standard-json` (input on
// stdin, sources given by file URL). Native solc binaries are downloaded from outside the registries we
// may use, so the audit reuses the pinned npm compiler that builds the contracts.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const args = process.argv.slice(2);

if (args.includes("--version")) {
  console.log("solc, the solidity compiler commandline interface (solc-js shim)");
  console.log(`Version: ${solc.version()}`);
  process.exit(0);
}
if (!args.includes("--standard-json")) {
  console.error("solc-shim: only --version and --standard-json are supported");
  process.exit(2);
}

function readSource(p) {
  for (const candidate of [path.resolve(p), path.join(root, p), path.join(root, "node_modules", p)]) {
    if (fs.existsSync(candidate)) return fs.readFileSync(candidate, "utf8");
  }
  return null;
}

const input = JSON.parse(fs.readFileSync(0, "utf8"));
for (const [name, source] of Object.entries(input.sources || {})) {
  if (source.content !== undefined) continue;
  const content = readSource((source.urls || [name])[0]);
  if (content === null) {
    console.log(JSON.stringify({ errors: [{ severity: "error", type: "IOError", formattedMessage: `cannot read ${name}` }] }));
    process.exit(0);
  }
  input.sources[name] = { content };
}

function findImports(importPath) {
  const contents = readSource(importPath);
  return contents === null ? { error: `import not found: ${importPath} (run \`npm ci\`)` } : { contents };
}

process.stdout.write(solc.compile(JSON.stringify(input), { import: findImports }));
