// Bundle src/ into ../build (index.html, canvas.js, canvas.css) and record a hash of the sources there, so a
// test can tell when the committed build no longer matches them. Run through `make canvas`.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const HERE = dirname(fileURLToPath(import.meta.url));
const OUT = join(HERE, "..", "build");

// The same walk and hash as tests/unit/test_ui_canvas_build.py: sorted paths, each path then its bytes.
function sources() {
  const files = ["build.mjs", "package.json", "package-lock.json"];
  const walk = (dir) => {
    for (const entry of readdirSync(join(HERE, dir), { withFileTypes: true })) {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else files.push(rel);
    }
  };
  walk("src");
  return files.sort();
}

function sourceHash() {
  const h = createHash("sha256");
  for (const rel of sources()) {
    h.update(`${rel}\0`);
    h.update(readFileSync(join(HERE, rel)));
    h.update("\0");
  }
  return h.digest("hex");
}

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
await build({
  entryPoints: { canvas: join(HERE, "src", "index.jsx") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  legalComments: "eof",
  outdir: OUT,
  logLevel: "warning",
});
writeFileSync(
  join(OUT, "index.html"),
  `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Canvas</title><link rel="stylesheet" href="./canvas.css"></head>
<body><div id="root"></div><script src="./canvas.js"></script></body>
</html>
`,
);
writeFileSync(join(OUT, "SOURCES.sha256"), `${sourceHash()}\n`);
console.log(`built ${relative(process.cwd(), OUT)}`);
