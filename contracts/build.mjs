#!/usr/bin/env node
// Compiles every contracts/src/*.sol with the pinned solc-js (package.json) and writes one artifact per
// deployable contract to contracts/artifacts/<Name>.json. The output is byte-for-byte reproducible: fixed
// compiler, fixed settings, sorted inputs, no metadata hash in the bytecode, stable JSON formatting.
//
//   node contracts/build.mjs              write contracts/artifacts/
//   node contracts/build.mjs --out DIR    write to DIR instead
//   node contracts/build.mjs --check      compile and compare with contracts/artifacts/ (exit 1 on diff)
//
// Warnings are fatal: our sources must compile cleanly.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC_DIR = join(HERE, "src");
const DEFAULT_OUT = join(HERE, "artifacts");

// Fixed settings. evmVersion is explicit (solc 0.8.37 defaults to osaka): cancun runs on anvil and on
// mainnet-like chains. bytecodeHash "none" drops the IPFS hash of the metadata from the bytecode, so
// comments and paths do not change it; each artifact records its source's sha256 instead.
export const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
  metadata: { bytecodeHash: "none", appendCBOR: true },
  outputSelection: {
    "*": {
      "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.deployedBytecode.immutableReferences"],
    },
  },
};

function sha256(text) {
  return createHash("sha256").update(text).digest("hex");
}

// Stable JSON: object keys sorted recursively, 2-space indent, trailing newline.
function stable(value) {
  if (Array.isArray(value)) return value.map(stable);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, stable(value[k])]));
  }
  return value;
}
const toJson = (value) => JSON.stringify(stable(value), null, 2) + "\n";

export function build() {
  const files = readdirSync(SRC_DIR).filter((f) => f.endsWith(".sol")).sort();
  if (files.length === 0) throw new Error(`no .sol files in ${SRC_DIR}`);
  const sources = {};
  for (const f of files) sources[`src/${f}`] = { content: readFileSync(join(SRC_DIR, f), "utf8") };

  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = (output.errors || []).filter((e) => e.type !== "Info");
  if (problems.length > 0) {
    for (const e of problems) console.error(e.formattedMessage || e.message);
    throw new Error(`solc reported ${problems.length} error(s)/warning(s)`);
  }

  const solcVersion = solc.version();
  const settingsHash = sha256(JSON.stringify(stable(SETTINGS)));
  const artifacts = {};
  for (const sourceName of Object.keys(output.contracts).sort()) {
    for (const [contractName, c] of Object.entries(output.contracts[sourceName])) {
      if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts
      if (artifacts[contractName]) throw new Error(`duplicate contract name ${contractName}`);
      artifacts[contractName] = {
        contractName,
        sourceName,
        sourceSha256: sha256(sources[sourceName].content),
        solcVersion,
        settingsHash,
        settings: { evmVersion: SETTINGS.evmVersion, optimizer: SETTINGS.optimizer, metadata: SETTINGS.metadata },
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
        immutableReferences: c.evm.deployedBytecode.immutableReferences || {},
      };
    }
  }
  return artifacts;
}

function main(argv) {
  let out = DEFAULT_OUT;
  let check = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out") out = resolve(argv[++i] ?? "");
    else if (argv[i] === "--check") check = true;
    else throw new Error(`unknown argument ${argv[i]} (use --out DIR or --check)`);
  }
  const t0 = process.hrtime.bigint();
  const artifacts = build();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;

  if (check) {
    const stale = [];
    for (const [name, a] of Object.entries(artifacts)) {
      const path = join(DEFAULT_OUT, `${name}.json`);
      if (!existsSync(path) || readFileSync(path, "utf8") !== toJson(a)) stale.push(name);
    }
    if (stale.length > 0) {
      console.error(`stale artifacts (run node contracts/build.mjs): ${stale.join(", ")}`);
      process.exit(1);
    }
    console.log(`artifacts up to date (${Object.keys(artifacts).length} contracts, compiled in ${ms.toFixed(0)} ms)`);
    return;
  }
  mkdirSync(out, { recursive: true });
  for (const [name, a] of Object.entries(artifacts)) writeFileSync(join(out, `${name}.json`), toJson(a));
  console.log(`wrote ${Object.keys(artifacts).length} artifacts to ${out} (solc ${solc.version()}, ${ms.toFixed(0)} ms)`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2));
}
