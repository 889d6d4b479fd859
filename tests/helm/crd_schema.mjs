// The generated CRD schema against the agent's own validator, offline. Every policy example
// must pass both; every document of the invalid corpus must be refused by the agent
// (`meshmask policy validate`), and wherever the CRD schema refuses it too, at a JSON pointer
// the agent also names. Corpus files named schema-*.json must be caught by the schema (the API
// server refuses them at `kubectl apply`), agent-*.json only by the agent (what no schema can
// say: a key file, a JSONPath, a CIDR; the agent reports them in the resource's status).
//
// The schema is checked as the API server does with field validation Strict (kubectl's
// default): types, unknown fields, required, enum, pattern, lengths, bounds, list sizes,
// x-kubernetes-list-type set, and x-kubernetes-validations, whose CEL rules are evaluated by a
// small interpreter of the subset meshmask-crdgen writes (an unknown construct fails the test).
//
//   node crd_schema.mjs --npm DIR --cli MESHMASK --crds crds.yaml --examples DIR --invalid DIR
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const opt = {};
for (let i = 2; i < process.argv.length; i += 2) opt[process.argv[i].slice(2)] = process.argv[i + 1];
const require = createRequire(path.resolve(opt.npm, 'node_modules') + '/');
const yaml = require('js-yaml');

// ---- a CEL subset: || && ! == != in, has(), self.a.b, 'strings', [lists], (), true/false ----
function celTokens(src) {
	const re = /\s*(\|\||&&|==|!=|!|\(|\)|\[|\]|,|\.|'(?:[^'\\]|\\.)*'|[A-Za-z_][A-Za-z0-9_]*|\d+)/y;
	const out = [];
	re.lastIndex = 0;
	while (re.lastIndex < src.length) {
		if (/^\s*$/.test(src.slice(re.lastIndex))) break;
		const m = re.exec(src);
		if (!m) throw new Error(`CEL: cannot read at ${re.lastIndex}: ${src}`);
		out.push(m[1]);
	}
	return out;
}
export function celCompile(src) {
	const t = celTokens(src);
	let i = 0;
	const peek = () => t[i], next = () => t[i++];
	const expect = (x) => { if (t[i++] !== x) throw new Error(`CEL: expected ${x} in ${src}`); };
	function path() {
		if (next() !== 'self') throw new Error(`CEL: expected self in ${src}`);
		const keys = [];
		while (peek() === '.') { next(); keys.push(next()); }
		return keys;
	}
	function primary() {
		const x = peek();
		if (x === '(') { next(); const e = or(); expect(')'); return e; }
		if (x === 'has') {
			next(); expect('(');
			const keys = path();
			expect(')');
			return (self) => {
				let v = self;
				for (let k = 0; k < keys.length - 1; k++) v = v?.[keys[k]];
				return v !== null && typeof v === 'object' && Object.hasOwn(v, keys.at(-1));
			};
		}
		if (x === 'self') {
			const keys = path();
			return (self) => keys.reduce((v, k) => {
				if (v === null || typeof v !== 'object' || !Object.hasOwn(v, k))
					throw new Error(`no such key: ${k}`);
				return v[k];
			}, self);
		}
		if (x === '[') {
			next();
			const items = [];
			while (peek() !== ']') { items.push(or()); if (peek() === ',') next(); }
			next();
			return (self) => items.map((f) => f(self));
		}
		if (x === 'true' || x === 'false') { next(); return () => x === 'true'; }
		if (/^'/.test(x)) { next(); const s = x.slice(1, -1).replace(/\\(.)/g, '$1'); return () => s; }
		if (/^\d+$/.test(x)) { next(); return () => Number(x); }
		throw new Error(`CEL: unsupported construct at '${x}' in ${src}`);
	}
	function unary() {
		if (peek() === '!') { next(); const e = unary(); return (s) => !e(s); }
		return primary();
	}
	function cmp() {
		const l = unary();
		const op = peek();
		if (op === '==' || op === '!=') {
			next(); const r = unary();
			return op === '==' ? (s) => l(s) === r(s) : (s) => l(s) !== r(s);
		}
		if (op === 'in') { next(); const r = unary(); return (s) => r(s).includes(l(s)); }
		return l;
	}
	function and() {
		let l = cmp();
		while (peek() === '&&') { next(); const a = l, r = cmp(); l = (s) => a(s) && r(s); }
		return l;
	}
	function or() {
		let l = and();
		while (peek() === '||') { next(); const a = l, r = and(); l = (s) => a(s) || r(s); }
		return l;
	}
	const e = or();
	if (i !== t.length) throw new Error(`CEL: trailing tokens in ${src}`);
	return e;
}

// ---- structural schema validation (the API server's checks, field validation Strict) ----
const esc = (k) => String(k).replace(/~/g, '~0').replace(/\//g, '~1');
const typeOf = (v) => v === null ? 'null' : Array.isArray(v) ? 'array' :
	Number.isInteger(v) ? 'integer' : typeof v === 'number' ? 'number' : typeof v === 'boolean' ?
		'boolean' : typeof v;
const runes = (s) => [...s].length;
export function validate(schema, v, ptr, errs) {
	const t = typeOf(v);
	if (schema.type && t !== schema.type) { errs.push([ptr, `must be ${schema.type}`]); return; }
	if (t === 'object') {
		const props = schema.properties || {};
		for (const r of schema.required || [])
			if (!Object.hasOwn(v, r)) errs.push([`${ptr}/${esc(r)}`, 'Required value']);
		for (const [k, x] of Object.entries(v)) {
			if (props[k]) validate(props[k], x, `${ptr}/${esc(k)}`, errs);
			else if (schema.additionalProperties) validate(schema.additionalProperties, x, `${ptr}/${esc(k)}`, errs);
			else if (!schema['x-kubernetes-preserve-unknown-fields']) errs.push([`${ptr}/${esc(k)}`, 'unknown field']);
		}
		if (schema.minProperties && Object.keys(v).length < schema.minProperties)
			errs.push([ptr, `must have at least ${schema.minProperties} properties`]);
	}
	if (t === 'array') {
		if (schema.minItems && v.length < schema.minItems) errs.push([ptr, `must have at least ${schema.minItems} items`]);
		if (schema.maxItems && v.length > schema.maxItems) errs.push([ptr, `must have at most ${schema.maxItems} items`]);
		v.forEach((x, i) => validate(schema.items, x, `${ptr}/${i}`, errs));
		if (schema['x-kubernetes-list-type'] === 'set') {
			const seen = new Set();
			v.forEach((x, i) => {
				const k = JSON.stringify(x);
				if (seen.has(k)) errs.push([`${ptr}/${i}`, 'Duplicate value']);
				seen.add(k);
			});
		}
	}
	if (t === 'string') {
		if (schema.enum && !schema.enum.includes(v)) errs.push([ptr, 'Unsupported value']);
		if (schema.minLength && runes(v) < schema.minLength) errs.push([ptr, 'too short']);
		if (schema.maxLength && runes(v) > schema.maxLength) errs.push([ptr, 'too long']);
		if (schema.pattern && !new RegExp(schema.pattern, 'u').test(v)) errs.push([ptr, `must match ${schema.pattern}`]);
	}
	if (t === 'integer') {
		if (schema.minimum !== undefined && v < schema.minimum) errs.push([ptr, `must be >= ${schema.minimum}`]);
		if (schema.maximum !== undefined && v > schema.maximum) errs.push([ptr, `must be <= ${schema.maximum}`]);
	}
	for (const r of schema['x-kubernetes-validations'] || []) {
		let ok;
		try { ok = celCompile(r.rule)(v); } catch (e) { if (/^CEL/.test(e.message)) throw e; ok = false; }
		if (!ok) errs.push([ptr + (r.fieldPath || '').replace(/\./g, '/'), r.message]);
	}
}

// ---- the test -------------------------------------------------------------------------
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
	const crds = yaml.loadAll(fs.readFileSync(opt.crds, 'utf8')).filter(Boolean);
	const byKind = Object.fromEntries(crds.map((c) => [c.spec.names.kind, c.spec.versions[0].schema.openAPIV3Schema]));
	let n = 0, failed = 0;
	const ok = (cond, desc, diag) => {
		n++;
		if (cond) console.log(`ok ${n} - ${desc}`);
		else { failed++; console.log(`not ok ${n} - ${desc}`); if (diag) console.log(`#   ${diag}`); }
	};
	// Each CEL rule of the CRDs compiles with the interpreter (no construct it does not know).
	const walk = (s, f) => { if (!s || typeof s !== 'object') return; f(s); Object.values(s).forEach((x) => walk(x, f)); };
	let rules = 0, bad = [];
	walk(crds, (s) => (s['x-kubernetes-validations'] || []).forEach((r) => {
		rules++;
		try { celCompile(r.rule); } catch (e) { bad.push(e.message); }
	}));
	ok(rules > 0 && bad.length === 0, `every CEL rule of the CRDs is understood (${rules} rules)`, bad.join('; '));
	// A policy document checked as a MaskingPolicy and a ClusterMaskingPolicy resource.
	const schemaErrors = (doc) => {
		const out = [];
		for (const kind of ['MaskingPolicy', 'ClusterMaskingPolicy']) {
			const errs = [];
			const cr = { apiVersion: 'meshmask.io/v1alpha1', kind, metadata: { name: doc?.metadata?.name }, spec: doc?.spec };
			if (cr.spec === undefined) delete cr.spec;
			if (cr.metadata.name === undefined) delete cr.metadata.name;
			validate(byKind[kind], cr, '', errs);
			out.push(errs);
		}
		ok(JSON.stringify(out[0]) === JSON.stringify(out[1]), 'both kinds share the policy schema');
		return out[0];
	};
	const agentErrors = (file) => {
		try {
			execFileSync(opt.cli, ['policy', 'validate', file], { stdio: 'pipe', env: { ...process.env, MESHMASK_HASH_KEY: 'k'.repeat(32) } });
			return [];
		} catch (e) {
			const text = String(e.stdout) + String(e.stderr);
			const errs = [];
			for (const line of text.split('\n')) {
				const m = line.slice(file.length).match(/^: (\/[^:]*): (.*)$/);
				if (m) errs.push([m[1], m[2]]);
				else if (line.startsWith(file)) errs.push(['', line.slice(file.length + 2)]);
			}
			return errs;
		}
	};
	for (const f of fs.readdirSync(opt.examples).filter((f) => f.endsWith('.json')).sort()) {
		const file = path.join(opt.examples, f);
		const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
		const s = schemaErrors(doc), a = agentErrors(file);
		ok(s.length === 0, `example ${f}: valid under the CRD schema`, JSON.stringify(s));
		ok(a.length === 0, `example ${f}: valid for the agent`, JSON.stringify(a));
	}
	let schemaCaught = 0, agentOnly = 0;
	for (const f of fs.readdirSync(opt.invalid).filter((f) => f.endsWith('.json')).sort()) {
		const file = path.join(opt.invalid, f);
		const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
		const s = schemaErrors(doc), a = agentErrors(file);
		const aptr = new Set(a.map((e) => e[0]));
		ok(a.length > 0, `invalid ${f}: refused by the agent`);
		const missing = s.filter((e) => !aptr.has(e[0]));
		ok(missing.length === 0, `invalid ${f}: each schema error is at a pointer the agent names`,
			`schema ${JSON.stringify(s)} agent ${JSON.stringify(a)}`);
		if (f.startsWith('schema-')) {
			schemaCaught++;
			ok(s.length > 0, `invalid ${f}: refused by the CRD schema (at ${s.map((e) => e[0]).join(', ')})`, JSON.stringify(a));
		} else {
			agentOnly++;
			ok(s.length === 0, `invalid ${f}: passes the schema, refused by the agent only (at ${[...aptr].join(', ')})`, JSON.stringify(s));
		}
	}
	ok(schemaCaught >= 20 && agentOnly >= 5, `corpus: ${schemaCaught} caught by the schema, ${agentOnly} by the agent only`);
	console.log(`1..${n}`);
	process.exit(failed ? 1 : 0);
}
