#!/usr/bin/env node
// shape.js - checks the shape of src/: no module cycle, no function over MAX_FUNC lines, no file
// over MAX_FILE lines (`make test-shape`, part of `make test`).
//
// A module is a .c/.h pair of src/ (src/store.c and src/store.h are "store"); everything under
// src/providers/ is the one module "providers". Module A depends on module B when a file of A
// includes a header of B, or a .c file of A calls (or takes the address of) a function that B
// defines and does not keep static. A function
// is a definition whose opening brace stands alone in column 0; its length counts the lines from
// its name to its closing brace in column 0.
//
//   node tests/tools/shape.js [--graph]    --graph prints every module's dependencies
'use strict';
const fs = require('fs');
const path = require('path');

const MAX_FUNC = 120;
const MAX_FILE = 1200;
const SRC = path.join(__dirname, '..', '..', 'src');

function moduleOf(rel) {
	if (rel.startsWith('providers/')) return 'providers';
	return rel.replace(/\.[ch]$/, '');
}

function listFiles(dir, rel = '') {
	let out = [];
	for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
		const r = rel ? `${rel}/${ent.name}` : ent.name;
		if (ent.isDirectory()) out = out.concat(listFiles(path.join(dir, ent.name), r));
		else if (/\.[ch]$/.test(ent.name)) out.push(r);
	}
	return out.sort();
}

// Comments and string/char literals blanked, line structure kept.
function stripCode(text) {
	let out = '';
	let i = 0;
	const n = text.length;
	while (i < n) {
		const c = text[i];
		const d = text[i + 1];
		if (c === '/' && d === '*') {
			const end = text.indexOf('*/', i + 2);
			const stop = end < 0 ? n : end + 2;
			out += text.slice(i, stop).replace(/[^\n]/g, ' ');
			i = stop;
		} else if (c === '/' && d === '/') {
			while (i < n && text[i] !== '\n') { out += ' '; i++; }
		} else if (c === '"' || c === '\'') {
			out += c;
			i++;
			while (i < n && text[i] !== c && text[i] !== '\n') {
				if (text[i] === '\\') { out += ' '; i++; }
				out += ' ';
				i++;
			}
			if (i < n) { out += text[i]; i++; }
		} else {
			out += c;
			i++;
		}
	}
	return out;
}

const files = listFiles(SRC);
const code = new Map();
const raw = new Map();
for (const f of files) {
	const t = fs.readFileSync(path.join(SRC, f), 'utf8');
	raw.set(f, t);
	code.set(f, stripCode(t));
}

const problems = [];

// Functions: a '{' alone in column 0 opens a definition; its name is the identifier before the
// first '(' on the lines above it (back to the previous blank line, '}' or ';').
const defs = new Map(); // name -> module (non-static definitions)
const funcs = [];
for (const f of files.filter((x) => x.endsWith('.c'))) {
	const lines = code.get(f).split('\n');
	for (let i = 0; i < lines.length; i++) {
		if (lines[i] !== '{') continue;
		let start = i - 1;
		while (start > 0 && lines[start - 1].trim() !== '' && !/[;}]\s*$/.test(lines[start - 1]) &&
		       !/^\s*#/.test(lines[start - 1]))
			start--;
		const sig = lines.slice(start, i).join(' ');
		const m = /([A-Za-z_][A-Za-z0-9_]*)\s*\(/.exec(sig);
		if (!m) continue; // an initialiser, not a function
		let end = i + 1;
		while (end < lines.length && lines[end] !== '}') end++;
		const len = end - start + 1;
		funcs.push({ file: f, name: m[1], line: start + 1, len });
		if (!/^\s*static\b/.test(sig) && !/\bstatic\b/.test(sig.slice(0, m.index)))
			defs.set(m[1], moduleOf(f));
		i = end;
	}
}

for (const fn of funcs)
	if (fn.len > MAX_FUNC)
		problems.push(`src/${fn.file}:${fn.line}: ${fn.name}() is ${fn.len} lines (at most ${MAX_FUNC})`);
for (const f of files) {
	const n = raw.get(f).split('\n').length - (raw.get(f).endsWith('\n') ? 1 : 0);
	if (n > MAX_FILE) problems.push(`src/${f}: ${n} lines (at most ${MAX_FILE})`);
}

// jansson's texts: json_dumps allocates through the gauge of call memory (jsonx.c) and its text is
// given back with free(), which leaves it counted; the router makes its texts with jsonx_dumps.
for (const f of files)
	for (const m of code.get(f).matchAll(/\bjson_dumps\s*\(/g)) {
		const line = code.get(f).slice(0, m.index).split('\n').length;
		problems.push(`src/${f}:${line}: json_dumps() leaves its text counted in the gauge of call memory: use jsonx_dumps()`);
	}

// Module graph.
const headers = new Map(); // "store.h", "providers/provider.h" -> module
for (const f of files) if (f.endsWith('.h')) headers.set(f, moduleOf(f));
const edges = new Map(); // module -> Map(dep -> reason)
function addEdge(a, b, why) {
	if (a === b) return;
	if (!edges.has(a)) edges.set(a, new Map());
	if (!edges.get(a).has(b)) edges.get(a).set(b, why);
}
for (const f of files) {
	const mod = moduleOf(f);
	if (!edges.has(mod)) edges.set(mod, new Map());
	const dir = path.dirname(f) === '.' ? '' : path.dirname(f) + '/';
	for (const m of raw.get(f).matchAll(/^\s*#\s*include\s+"([^"]+)"/gm)) {
		const target = path.normalize(dir + m[1]).replace(/\\/g, '/');
		if (headers.has(target)) addEdge(mod, headers.get(target), `src/${f} includes ${m[1]}`);
	}
	if (!f.endsWith('.c')) continue; // a header's prototypes are declarations, not uses
	for (const m of code.get(f).matchAll(/(?<![.>]\s*)\b([A-Za-z_][A-Za-z0-9_]*)\b/g)) {
		const owner = defs.get(m[1]);
		if (owner && owner !== mod) addEdge(mod, owner, `src/${f} uses ${m[1]}()`);
	}
}

// Cycles: strongly connected components of more than one module (Tarjan).
let index = 0;
const idx = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const sccs = [];
function strong(v) {
	idx.set(v, index);
	low.set(v, index);
	index++;
	stack.push(v);
	onStack.add(v);
	for (const w of (edges.get(v) || new Map()).keys()) {
		if (!idx.has(w)) {
			strong(w);
			low.set(v, Math.min(low.get(v), low.get(w)));
		} else if (onStack.has(w)) {
			low.set(v, Math.min(low.get(v), idx.get(w)));
		}
	}
	if (low.get(v) === idx.get(v)) {
		const comp = [];
		let w;
		do {
			w = stack.pop();
			onStack.delete(w);
			comp.push(w);
		} while (w !== v);
		if (comp.length > 1) sccs.push(comp.sort());
	}
}
for (const v of [...edges.keys()].sort()) if (!idx.has(v)) strong(v);
for (const comp of sccs) {
	const inside = new Set(comp);
	const why = [];
	for (const a of comp)
		for (const [b, reason] of edges.get(a))
			if (inside.has(b)) why.push(`    ${a} -> ${b}: ${reason}`);
	problems.push(`module cycle: ${comp.join(', ')}\n${why.join('\n')}`);
}

if (process.argv.includes('--graph'))
	for (const [a, deps] of [...edges.entries()].sort())
		console.log(`${a}: ${[...deps.keys()].sort().join(' ')}`);

for (const p of problems) console.error(p);
const longest = funcs.reduce((a, b) => (b.len > a.len ? b : a), { len: 0 });
const biggest = files.reduce((a, f) => {
	const n = raw.get(f).split('\n').length;
	return n > a.n ? { f, n } : a;
}, { n: 0 });
console.log(`shape: ${edges.size} modules, ${funcs.length} functions (longest ${longest.name}() ` +
	    `${longest.len} lines), largest file src/${biggest.f}; ${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
