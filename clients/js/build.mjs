// Builds the SDK: src/switchboard.ts -> dist/switchboard.js (one ES module, esbuild) and
// dist/switchboard.d.ts (tsc), after type-checking; and dist/yjs.js, the pinned Yjs of
// package.json (the npm package with its lib0, one ES module) that the /demo/ page loads by
// default, so the demo works with no network beyond the server. The output is deterministic
// (pinned esbuild, TypeScript and Yjs, no timestamps; Yjs minified, the SDK not), and dist/ is
// committed because the server embeds dist/switchboard.js and dist/yjs.js at compile time.
//
//   node build.mjs           type-check and write dist/
//   node build.mjs --check   type-check, build into a temporary directory and fail when the
//                            committed dist/ differs from the fresh build
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import ts from 'typescript';

const here = dirname(fileURLToPath(import.meta.url));
const entry = join(here, 'src/switchboard.ts');
const files = ['switchboard.js', 'switchboard.d.ts', 'yjs.js'];
const check = process.argv.includes('--check');

function typecheckAndDeclare(outDir) {
  const options = {
    target: ts.ScriptTarget.ES2020,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2020.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
    strict: true,
    noUnusedLocals: true,
    noUnusedParameters: true,
    noImplicitReturns: true,
    declaration: true,
    emitDeclarationOnly: true,
    removeComments: false,
    stripInternal: true,
    newLine: ts.NewLineKind.LineFeed,
    outDir,
    types: [],
  };
  const program = ts.createProgram([entry], options);
  const emitted = program.emit();
  const diagnostics = ts.getPreEmitDiagnostics(program).concat(emitted.diagnostics);
  if (diagnostics.length) {
    const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => here, getNewLine: () => '\n' };
    console.error((process.stderr.isTTY ? ts.formatDiagnosticsWithColorAndContext : ts.formatDiagnostics)(diagnostics, host));
    throw new Error(`TypeScript: ${diagnostics.length} error(s)`);
  }
}

async function build(outDir) {
  typecheckAndDeclare(outDir);
  await esbuild.build({
    entryPoints: [entry],
    outfile: join(outDir, 'switchboard.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    charset: 'utf8',
    legalComments: 'none',
    logLevel: 'warning',
    banner: { js: '// Switchboard browser SDK. Generated from clients/js/src by `npm run build`; do not edit.' },
  });
  const yjs = JSON.parse(readFileSync(join(here, 'node_modules/yjs/package.json'), 'utf8'));
  const lib0 = JSON.parse(readFileSync(join(here, 'node_modules/lib0/package.json'), 'utf8'));
  await esbuild.build({
    stdin: { contents: "export * from 'yjs';", resolveDir: here, sourcefile: 'yjs-entry.js' },
    outfile: join(outDir, 'yjs.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    charset: 'utf8',
    minify: true,
    legalComments: 'none',
    logLevel: 'warning',
    banner: {
      js: `// Yjs ${yjs.version} with lib0 ${lib0.version} (MIT, Kevin Jahns), bundled from the npm packages by clients/js/build.mjs for Switchboard's /demo/; do not edit.`,
    },
  });
  for (const f of files) if (!existsSync(join(outDir, f))) throw new Error(`build did not produce ${f}`);
}

if (check) {
  const tmp = mkdtempSync(join(tmpdir(), 'switchboard-sdk-'));
  try {
    await build(tmp);
    const stale = files.filter((f) => {
      const committed = join(here, 'dist', f);
      return !existsSync(committed) || !readFileSync(committed).equals(readFileSync(join(tmp, f)));
    });
    if (stale.length) {
      for (const f of stale) {
        const a = existsSync(join(here, 'dist', f)) ? readFileSync(join(here, 'dist', f), 'utf8').split('\n') : [];
        const b = readFileSync(join(tmp, f), 'utf8').split('\n');
        const i = a.findIndex((line, n) => line !== b[n]);
        const at = i < 0 ? Math.min(a.length, b.length) : i;
        console.error(`clients/js/dist/${f} differs from a fresh build (first difference at line ${at + 1}):`);
        console.error(`  committed: ${JSON.stringify(a[at] ?? '<end of file>')}`);
        console.error(`  fresh:     ${JSON.stringify(b[at] ?? '<end of file>')}`);
      }
      console.error('Run `cd clients/js && npm run build` and commit dist/.');
      process.exit(1);
    }
    console.log(`clients/js/dist is up to date (${files.map((f) => `${f} ${readFileSync(join(tmp, f)).length} bytes`).join(', ')})`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
} else {
  await build(join(here, 'dist'));
  console.log(`built ${files.map((f) => `dist/${f} (${readFileSync(join(here, 'dist', f)).length} bytes)`).join(', ')}`);
}
