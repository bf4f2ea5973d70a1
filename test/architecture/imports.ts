// The TypeScript import graph of the repository, for the layering test: every relative import,
// re-export and dynamic import() of every .ts file under src/, test/ and bench/, resolved to a
// repository path, and whether it is type-only (erased at run time). Read from the sources
// (this file runs from dist/test/architecture/), parsed with the TypeScript compiler.
// Fails: throws if a relative import names a file that does not exist.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The repository root (this file runs from dist/test/architecture/). */
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface Edge {
  /** Importing file, repository-relative ("src/queue/queue.ts"). */
  from: string;
  /** Imported file, repository-relative. */
  to: string;
  /** `import type`, `export type`, or only type-only names: no run-time dependency. */
  typeOnly: boolean;
  line: number;
}

function walk(dir: string, out: string[]): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every .ts file under the given top-level folders, repository-relative, sorted. */
export function sourceFiles(tops: readonly string[] = ['src', 'test', 'bench']): string[] {
  return tops
    .flatMap((t) => walk(join(REPO_ROOT, t), []))
    .map((p) => relative(REPO_ROOT, p))
    .sort();
}

function typeOnlyImport(d: ts.ImportDeclaration): boolean {
  const c = d.importClause;
  if (!c) return false; // a side-effect import
  if (c.isTypeOnly) return true;
  if (c.name) return false;
  const b = c.namedBindings;
  if (!b || ts.isNamespaceImport(b)) return false;
  return b.elements.length > 0 && b.elements.every((e) => e.isTypeOnly);
}

function typeOnlyExport(d: ts.ExportDeclaration): boolean {
  if (d.isTypeOnly) return true;
  const c = d.exportClause;
  return (
    c !== undefined && ts.isNamedExports(c) && c.elements.length > 0 && c.elements.every((e) => e.isTypeOnly)
  );
}

/** The relative imports of one file. */
export function importsOf(file: string): Edge[] {
  const text = readFileSync(join(REPO_ROOT, file), 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: Edge[] = [];
  const add = (spec: string, typeOnly: boolean, node: ts.Node): void => {
    if (!spec.startsWith('.')) return; // node: built-ins and packages
    const abs = resolve(REPO_ROOT, dirname(file), spec.replace(/\.js$/, '.ts'));
    const to = relative(REPO_ROOT, abs);
    if (!existsSync(abs)) throw new Error(`${file}: import of a missing file ${spec}`);
    out.push({ from: file, to, typeOnly, line: sf.getLineAndCharacterOfPosition(node.getStart()).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, typeOnlyImport(node), node);
    } else if (
      ts.isExportDeclaration(node) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      add(node.moduleSpecifier.text, typeOnlyExport(node), node);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      add(node.arguments[0].text, false, node);
    } else if (ts.isImportTypeNode(node)) {
      const a = node.argument;
      if (ts.isLiteralTypeNode(a) && ts.isStringLiteral(a.literal)) add(a.literal.text, true, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** Cycles of run-time imports among `files` (each cycle once, as a list of files). */
export function cycles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) {
    if (e.typeOnly) continue;
    const l = next.get(e.from) ?? [];
    if (!l.includes(e.to)) l.push(e.to);
    next.set(e.from, l);
  }
  // Tarjan's strongly connected components: every component of more than one file (or a file
  // importing itself) is a cycle.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const strong = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    on.add(v);
    for (const w of next.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (next.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of [...next.keys()].sort()) if (!idx.has(v)) strong(v);
  return out;
}
