#!/usr/bin/env node
// Compiles every contracts/src/*.sol with the pinned solc-js (package.json) and writes one artifact per
// deployable contract to keeper/contracts/artifacts/<Name>.json (inside the Python package, so the wheel
// ships them and runtime code loads them with keeper.contracts.our_artifact). The output is byte-for-byte
// reproducible: fixed compiler, fixed settings, sorted inputs, no metadata hash in the bytecode, stable
// JSON formatting. Every artifact records the EVM version it was built for (`evmVersion`).
//
// Two builds of the executor come from the one source, contracts/src/LiquidationExecutor.sol:
// - LiquidationExecutor (evmVersion cancun): its per-call state lives in transient storage (EIP-1153);
// - LiquidationExecutorLegacy (evmVersion paris): for chains without EIP-1153. The source is rewritten
//   mechanically before compiling: each `<type> private transient <name>;` state variable loses the
//   `transient` keyword (so it becomes an ordinary storage variable) and the contract is renamed. This is
//   equivalent only because the source resets every transient variable at the end of the call that sets
//   it (a transient slot would be cleared at the end of the transaction anyway; a storage slot must be
//   cleared by hand, and the reset also refunds most of the storage write). Any transient access the
//   rewrite misses (another declaration form, tload/tstore in assembly) fails the paris compilation, so
//   the legacy build cannot silently keep EIP-1153 opcodes. paris rather than shanghai: no PUSH0 either,
//   so the same bytecode runs on chains that stopped before Shanghai.
//
//   node contracts/build.mjs              write keeper/contracts/artifacts/
//   node contracts/build.mjs --out DIR    write to DIR instead
//   node contracts/build.mjs --check      compile and compare with keeper/contracts/artifacts/ (exit 1 on diff)
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
const DEFAULT_OUT = join(HERE, "..", "keeper", "contracts", "artifacts");

// Fixed settings. evmVersion is explicit (solc 0.8.37 defaults to osaka): cancun runs on anvil and on
// mainnet-like chains (LEGACY below for the others). bytecodeHash "none" drops the IPFS hash of the metadata from the bytecode, so
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

// The pre-Cancun build of the executor (see the header).
export const LEGACY = {
  source: "src/LiquidationExecutor.sol",
  contract: "LiquidationExecutor",
  name: "LiquidationExecutorLegacy",
  evmVersion: "paris",
};
const TRANSIENT_DECL = /^(\s*[A-Za-z_][A-Za-z0-9_]*\s+(?:private|internal)\s+)transient\s+(?=[A-Za-z_][A-Za-z0-9_]*\s*;)/gm;

/// The legacy source: transient state variables -> storage, contract renamed. Throws if nothing matched.
export function legacySource(content) {
  const count = (content.match(TRANSIENT_DECL) || []).length;
  if (count === 0) throw new Error(`${LEGACY.source}: no transient state variables to rewrite`);
  const header = new RegExp(`^contract ${LEGACY.contract} \\{$`, "m");
  if (!header.test(content)) throw new Error(`${LEGACY.source}: no "contract ${LEGACY.contract} {" line`);
  return content.replace(TRANSIENT_DECL, "$1").replace(header, `contract ${LEGACY.name} {`);
}

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

function compile(sources, settings) {
  const input = { language: "Solidity", sources, settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = (output.errors || []).filter((e) => e.type !== "Info");
  if (problems.length > 0) {
    for (const e of problems) console.error(e.formattedMessage || e.message);
    throw new Error(`solc reported ${problems.length} error(s)/warning(s) (evmVersion ${settings.evmVersion})`);
  }
  return output;
}

function artifactOf(c, fields, settings) {
  return {
    ...fields,
    solcVersion: solc.version(),
    settingsHash: sha256(JSON.stringify(stable(settings))),
    evmVersion: settings.evmVersion,
    settings: { evmVersion: settings.evmVersion, optimizer: settings.optimizer, metadata: settings.metadata },
    abi: c.abi,
    bytecode: "0x" + c.evm.bytecode.object,
    deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    immutableReferences: c.evm.deployedBytecode.immutableReferences || {},
  };
}

export function build() {
  const files = readdirSync(SRC_DIR).filter((f) => f.endsWith(".sol")).sort();
  if (files.length === 0) throw new Error(`no .sol files in ${SRC_DIR}`);
  const sources = {};
  for (const f of files) sources[`src/${f}`] = { content: readFileSync(join(SRC_DIR, f), "utf8") };

  const output = compile(sources, SETTINGS);
  const artifacts = {};
  for (const sourceName of Object.keys(output.contracts).sort()) {
    for (const [contractName, c] of Object.entries(output.contracts[sourceName])) {
      if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts
      if (artifacts[contractName]) throw new Error(`duplicate contract name ${contractName}`);
      artifacts[contractName] = artifactOf(
        c,
        { contractName, sourceName, sourceSha256: sha256(sources[sourceName].content) },
        SETTINGS,
      );
    }
  }

  // The legacy executor: the rewritten source alone, for LEGACY.evmVersion.
  const original = sources[LEGACY.source].content;
  const legacyName = `src/${LEGACY.name}.sol`;
  const legacySettings = { ...SETTINGS, evmVersion: LEGACY.evmVersion };
  const legacyOut = compile({ [legacyName]: { content: legacySource(original) } }, legacySettings);
  if (artifacts[LEGACY.name]) throw new Error(`duplicate contract name ${LEGACY.name}`);
  artifacts[LEGACY.name] = artifactOf(
    legacyOut.contracts[legacyName][LEGACY.name],
    {
      contractName: LEGACY.name,
      sourceName: LEGACY.source,
      sourceSha256: sha256(original),
      derivation: "transient state variables turned into storage (reset at the end of each call); renamed",
    },
    legacySettings,
  );
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
