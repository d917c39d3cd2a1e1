// Compile chain/contracts/*.sol with solc-js into chain/build/<Contract>.json (ABI + bytecode).
// Deterministic: the same sources and settings always give byte-identical JSON, so a test can tell
// when the committed build is stale. Usage: node chain/compile.mjs [--src DIR] [--out DIR]
// (--src compiles test-only contracts, which may import ../../../chain/contracts/*.sol as "contracts/...").
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const srcIndex = process.argv.indexOf("--src");
const contractsDir = srcIndex > 0 ? path.resolve(process.argv[srcIndex + 1]) : path.join(here, "contracts");
const outIndex = process.argv.indexOf("--out");
const outDir = outIndex > 0 ? path.resolve(process.argv[outIndex + 1]) : path.join(here, "build");

const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

const sources = {};
for (const name of fs.readdirSync(contractsDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[`contracts/${name}`] = { content: fs.readFileSync(path.join(contractsDir, name), "utf8") };
}

function findImports(importPath) {
  const own = path.join(here, importPath); // "contracts/X.sol" from test contracts
  if (importPath.startsWith("contracts/") && fs.existsSync(own)) return { contents: fs.readFileSync(own, "utf8") };
  const candidate = path.join(root, "node_modules", importPath);
  if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  return { error: `import not found: ${importPath} (run \`npm ci\`)` };
}

const output = JSON.parse(
  solc.compile(JSON.stringify({ language: "Solidity", sources, settings: SETTINGS }), { import: findImports }),
);
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
const version = solc.version();
for (const [file, contracts] of Object.entries(output.contracts)) {
  if (!file.startsWith("contracts/")) continue;
  for (const [name, c] of Object.entries(contracts)) {
    if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts
    const artifact = {
      contractName: name,
      sourceName: file,
      compiler: { version, settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion } },
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
    };
    fs.writeFileSync(path.join(outDir, `${name}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
    console.log(`compiled ${name} (${c.evm.deployedBytecode.object.length / 2} bytes deployed)`);
  }
}
