#!/usr/bin/env node
// Compile a .ksy with the npm build of kaitai-struct-compiler (it has no CLI of its own).
// Usage: node tools/ksc.js <target-language> <file.ksy> <out-dir>
// Installed by `npm ci` (package.json / package-lock.json at the repo root; `make pytest`
// runs it). Exits non-zero with the compiler's message on any error.
"use strict";
const fs = require("fs");
const path = require("path");
const yaml = require("js-yaml");
const compiler = require("kaitai-struct-compiler");

async function main() {
  const [lang, ksyPath, outDir] = process.argv.slice(2);
  if (!lang || !ksyPath || !outDir) {
    console.error("usage: node tools/ksc.js <lang> <file.ksy> <out-dir>");
    process.exit(2);
  }
  const ksy = yaml.load(fs.readFileSync(ksyPath, "utf8"));
  const files = await compiler.compile(lang, ksy, null, false);
  fs.mkdirSync(outDir, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(outDir, name), text);
    console.log(path.join(outDir, name));
  }
}

main().catch((e) => {
  console.error("ksc: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
