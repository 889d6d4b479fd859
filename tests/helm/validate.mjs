// Validates `helm template` output offline: every object against the Kubernetes (and
// Prometheus Operator) schemas from kubernetes-models, unknown fields against the models' type
// declarations, the API server rules the schemas do not hold, then what the agent needs.
//
//   node validate.mjs --variant NAME --npm DIR [--agent-help FILE] rendered.yaml
// Prints TAP (one test per check group); exits 1 on any failure.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const argv = process.argv.slice(2);
const opt = { variant: 'default', npm: null, agentHelp: null, file: null };
for (let i = 0; i < argv.length; i++) {
	if (argv[i] === '--variant') opt.variant = argv[++i];
	else if (argv[i] === '--npm') opt.npm = argv[++i];
	else if (argv[i] === '--agent-help') opt.agentHelp = argv[++i];
	else opt.file = argv[i];
}
if (!opt.npm || !opt.file) {
	console.error('usage: validate.mjs --variant NAME --npm DIR [--agent-help FILE] rendered.yaml');
	process.exit(2);
}
const require = createRequire(path.resolve(opt.npm, 'node_modules') + '/');
const yaml = require('js-yaml');

// What each variant (see chart_test.sh for its --set flags) must render.
const BASE_CAPS = ['BPF', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE', 'PERFMON'];
const VARIANTS = {
	default: { caps: BASE_CAPS },
	privileged: { privileged: true },
	servicemonitor: { caps: BASE_CAPS, serviceMonitor: true },
	existingsecret: { caps: BASE_CAPS, tokenSecret: 'my-admin-token', tokenKey: 'admin-token' },
	policies: { caps: [...BASE_CAPS, 'SYS_RESOURCE', 'KILL'], policies: ['customer-pii'], keys: true },
	tls: { caps: BASE_CAPS, tls: true, headless: true, serviceMonitor: true },
	plainhttp: { caps: BASE_CAPS, plain: true },
	loopback: { caps: BASE_CAPS, probeHost: '127.0.0.1', noService: true },
	nobpf: { caps: [], noBpf: true, noIdentity: true },
	latency: { caps: BASE_CAPS, args: ['--splice', '--busy-poll-us', '--no-zero-copy', '--tls-node-wide', '--tls-public-entry', '--tls-syscall-attribution'], ringKiB: '1024' },
	noidentity: { caps: BASE_CAPS, noIdentity: true },
	nocluster: { caps: BASE_CAPS, noClusterPolicies: true, noCrds: true },
	notls: { caps: ['BPF', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE'] },
	// ServiceMonitor asked for on a cluster without the CRD: annotations instead.
	smnoapi: { caps: BASE_CAPS },
	automount: { caps: BASE_CAPS, autoMount: true },
	external: { caps: BASE_CAPS, policiesCM: 'my-policies', keys: true, keysSecret: 'my-hash-keys' },
	monitoring: { caps: BASE_CAPS, serviceMonitor: true, monitoring: true },
	nosummary: { caps: BASE_CAPS, noSummary: true },
};
const want = VARIANTS[opt.variant];
if (!want) {
	console.error(`unknown variant ${opt.variant}`);
	process.exit(2);
}
// The admin API is HTTPS unless a variant opts out (admin.tls.mode=off).
const tlsOn = !want.plain;
// The agent's command line (notes/agent-flags.md); --help of a built agent overrides it.
let agentFlags = new Set(['--policies', '--state-dir', '--admin', '--token-file', '--tls-cert',
	'--tls-key', '--public-read', '--audit-log', '--cgroup-root', '--bpffs', '--proxy-port',
	'--no-bpf', '--log-level', '--admin-max-body', '--admin-request-timeout', '--splice', '--busy-poll-us', '--no-zero-copy', '--tls-ring-kb', '--version', '--help', '--kube-api', '--kube-token-file',
	'--kube-ca-file', '--node-name', '--no-kube', '--no-cluster-policies', '--lease-namespace', '--lease-name']);
if (opt.agentHelp) agentFlags = new Set(fs.readFileSync(opt.agentHelp, 'utf8').match(/--[a-z][a-z-]*/g));

let n = 0, failed = 0;
function check(name, fn) {
	const errs = [];
	try {
		fn((cond, msg) => { if (!cond) errs.push(msg); });
	} catch (e) {
		errs.push(`exception: ${e.stack || e}`);
	}
	n++;
	if (errs.length) {
		failed++;
		console.log(`not ok ${n} - ${opt.variant}: ${name}`);
		for (const e of errs) console.log(`#   ${e}`);
	} else {
		console.log(`ok ${n} - ${opt.variant}: ${name}`);
	}
}

const docs = yaml.loadAll(fs.readFileSync(opt.file, 'utf8')).filter((d) => d);

// --- Unknown-field check from the models' .d.ts type declarations ------------------------
// kubernetes-models' validators accept unknown properties (the API server would drop or, with
// strict field validation, reject them), so a typo such as `readonly:` would pass silently.
const dtsCache = new Map();
function stripComments(s) {
	return s.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}
function loadDts(file) {
	if (dtsCache.has(file)) return dtsCache.get(file);
	const src = stripComments(fs.readFileSync(file, 'utf8'));
	const imports = new Map();
	for (const m of src.matchAll(/import \{([^}]*)\} from "([^"]+)";/g)) {
		for (const name of m[1].split(',').map((x) => x.trim()).filter(Boolean)) {
			const [orig, alias] = name.split(/\s+as\s+/);
			imports.set(alias || orig, m[2]);
		}
	}
	const m = src.match(/export interface (\w+)(?: extends [\w, ]+)? \{/);
	const ent = { file, imports, type: null };
	dtsCache.set(file, ent);
	if (m) ent.type = parseType(src, src.indexOf('{', m.index), ent);
	return ent;
}
function resolveRef(name, ent) {
	const spec = ent.imports.get(name);
	if (!spec) return null;
	let file;
	if (spec.startsWith('.')) file = path.resolve(path.dirname(ent.file), spec + '.d.ts');
	else {
		try {
			file = require.resolve(spec).replace(/\.js$/, '.d.ts');
		} catch {
			return null;
		}
	}
	return fs.existsSync(file) ? { lazy: file } : null;
}
// Parses the type starting at src[i]; returns { t, end } with t one of
// {obj: Map, index: type|null}, {arr: type}, {lazy: file}, {leaf: true}.
function parseType(src, i, ent) {
	return parseTypeAt(src, i, ent).t;
}
function skipWs(src, i) {
	while (/\s/.test(src[i])) i++;
	return i;
}
function parseTypeAt(src, i, ent) {
	i = skipWs(src, i);
	if (src[i] === '{') {
		const props = new Map();
		let index = null;
		i++;
		for (;;) {
			i = skipWs(src, i);
			if (src[i] === '}') return { t: { obj: props, index }, end: i + 1 };
			const m = /^(?:"([^"]+)"|(\w+))(\??):\s*|^\[key: string\]:\s*/.exec(src.slice(i, i + 200));
			if (!m) throw new Error(`d.ts parse error in ${ent.file} at ${src.slice(i, i + 40)}`);
			i += m[0].length;
			const r = parseTypeAt(src, i, ent);
			if (m[1] || m[2]) props.set(m[1] || m[2], r.t);
			else index = r.t;
			i = skipWs(src, r.end);
			if (src[i] === ';') i++;
		}
	}
	if (src.startsWith('Array<', i)) {
		const r = parseTypeAt(src, i + 6, ent);
		const end = skipWs(src, r.end);
		return { t: { arr: r.t }, end: end + 1 }; // past '>'
	}
	// A name, a literal union or a primitive: read to ';' / '>' at depth 0.
	let depth = 0, j = i;
	for (; j < src.length; j++) {
		const c = src[j];
		if (c === '{' || c === '<' || c === '(') depth++;
		else if (c === '}' || c === ')') {
			if (depth === 0) break;
			depth--;
		} else if (c === '>') {
			if (depth === 0) break;
			depth--;
		} else if (c === ';' && depth === 0) break;
	}
	const text = src.slice(i, j).trim();
	if (/^\w+$/.test(text)) {
		const ref = resolveRef(text, ent);
		if (ref) return { t: ref, end: j };
	}
	return { t: { leaf: true }, end: j };
}
function deref(t) {
	while (t && t.lazy) t = loadDts(t.lazy).type;
	return t;
}
function unknownFields(data, t, at, out) {
	t = deref(t);
	if (!t || t.leaf || data === null || data === undefined) return;
	if (t.arr) {
		if (Array.isArray(data)) data.forEach((d, k) => unknownFields(d, t.arr, `${at}[${k}]`, out));
		return;
	}
	if (t.obj && typeof data === 'object' && !Array.isArray(data)) {
		for (const [k, v] of Object.entries(data)) {
			if (t.obj.has(k)) unknownFields(v, t.obj.get(k), `${at}.${k}`, out);
			else if (t.index) unknownFields(v, t.index, `${at}.${k}`, out);
			else out.push(`unknown field ${at}.${k}`);
		}
	}
}

// --- Models -------------------------------------------------------------------------------
const MODELS = {
	'v1/ConfigMap': ['kubernetes-models/v1', 'ConfigMap'],
	'v1/Secret': ['kubernetes-models/v1', 'Secret'],
	'v1/Service': ['kubernetes-models/v1', 'Service'],
	'v1/ServiceAccount': ['kubernetes-models/v1', 'ServiceAccount'],
	'apps/v1/DaemonSet': ['kubernetes-models/apps/v1', 'DaemonSet'],
	'rbac.authorization.k8s.io/v1/ClusterRole': ['kubernetes-models/rbac.authorization.k8s.io/v1', 'ClusterRole'],
	'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ['kubernetes-models/rbac.authorization.k8s.io/v1', 'ClusterRoleBinding'],
	'monitoring.coreos.com/v1/ServiceMonitor': ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'ServiceMonitor'],
	'apiextensions.k8s.io/v1/CustomResourceDefinition': ['kubernetes-models/apiextensions.k8s.io/v1', 'CustomResourceDefinition'],
	'rbac.authorization.k8s.io/v1/Role': ['kubernetes-models/rbac.authorization.k8s.io/v1', 'Role'],
	'rbac.authorization.k8s.io/v1/RoleBinding': ['kubernetes-models/rbac.authorization.k8s.io/v1', 'RoleBinding'],
	'monitoring.coreos.com/v1/PrometheusRule': ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'PrometheusRule'],
};
function modelDts(mod, cls) {
	return require.resolve(`${mod}/${cls}`).replace(/\.js$/, '.d.ts');
}

check('every object passes its Kubernetes schema with no unknown field', (ok) => {
	ok(docs.length > 0, 'no objects rendered');
	for (const d of docs) {
		const key = `${d.apiVersion}/${d.kind}`;
		const id = `${d.kind}/${d.metadata && d.metadata.name}`;
		const m = MODELS[key];
		if (!m) {
			ok(false, `${id}: unexpected kind ${key}`);
			continue;
		}
		const Cls = require(m[0])[m[1]];
		try {
			new Cls(d).validate();
		} catch (e) {
			ok(false, `${id}: ${e.message}`);
		}
		const out = [];
		unknownFields(d, loadDts(modelDts(m[0], m[1])).type, id, out);
		out.forEach((e) => ok(false, e));
		if (d.kind === 'CustomResourceDefinition' || /^rbac/.test(d.apiVersion))
			ok(d.metadata && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(d.metadata.name) &&
				d.metadata.name.length <= 253, `${id}: name is not a DNS subdomain`);
		else
			ok(d.metadata && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(d.metadata.name) &&
				d.metadata.name.length <= 63, `${id}: name is not a DNS label`);
	}
	const seen = new Set();
	for (const d of docs) {
		const k = `${d.kind}/${d.metadata.name}`;
		ok(!seen.has(k), `duplicate object ${k}`);
		seen.add(k);
	}
});

const byKind = (kind) => docs.filter((d) => d.kind === kind);

// Structural schema rules (apiextensions-apiserver) the OpenAPI model of a CRD does not hold.
function structural(s, at, ok, inItems) {
	if (!s || typeof s !== 'object') return;
	const special = s['x-kubernetes-int-or-string'] || s['x-kubernetes-preserve-unknown-fields'];
	ok(s.type || special, `${at}: no type (not structural)`);
	ok(!(s.properties && s.additionalProperties), `${at}: properties and additionalProperties together`);
	ok(s.type === 'object' || !s.properties, `${at}: properties on a ${s.type}`);
	ok(s.type === 'array' ? !!s.items : !s.items, `${at}: items and type array go together`);
	for (const k of ['anyOf', 'oneOf', 'allOf', 'not', '$ref', 'default'])
		ok(!(k in s), `${at}: ${k} not used by meshmask's generated schema`);
	if (s['x-kubernetes-list-type'] === 'map') {
		const req = (s.items && s.items.required) || [];
		for (const k of s['x-kubernetes-list-map-keys'] || [])
			ok(req.includes(k), `${at}: list-map key ${k} must be required`);
	}
	if (s['x-kubernetes-list-type'] === 'set')
		ok(s.items && s.items.type !== 'object', `${at}: a set holds scalars`);
	for (const [k, v] of Object.entries(s.properties || {})) structural(v, `${at}.${k}`, ok);
	if (s.items) structural(s.items, `${at}[]`, ok, true);
	if (s.additionalProperties && typeof s.additionalProperties === 'object')
		structural(s.additionalProperties, `${at}{}`, ok);
}
check('CRDs: structural schemas, printer columns, status subresource', (ok) => {
	const crds = byKind('CustomResourceDefinition');
	ok(crds.length === (want.noCrds ? 0 : 3), `${crds.length} CRDs`);
	for (const c of crds) {
		const v = c.spec.versions;
		ok(v.length === 1 && v[0].name === 'v1alpha1' && v[0].served && v[0].storage, `${c.metadata.name}: versions`);
		ok(c.metadata.name === `${c.spec.names.plural}.${c.spec.group}` && c.spec.group === 'meshmask.io',
			`${c.metadata.name}: name is not plural.group`);
		const root = v[0].schema.openAPIV3Schema;
		structural(root, c.spec.names.kind, ok);
		const md = root.properties.metadata;
		ok(!md || Object.keys(md.properties || {}).every((k) => k === 'name' || k === 'generateName'),
			`${c.metadata.name}: metadata may constrain only name and generateName`);
		ok(c.metadata.annotations['helm.sh/resource-policy'] === 'keep', `${c.metadata.name}: not kept on uninstall`);
		if (/policies$/.test(c.spec.names.plural)) {
			ok(v[0].subresources && v[0].subresources.status, `${c.metadata.name}: no status subresource`);
			const cols = (v[0].additionalPrinterColumns || []).map((x) => x.name);
			for (const col of ['Mode', 'Rules', 'In force', 'Age'])
				ok(cols.includes(col), `${c.metadata.name}: no printer column ${col}`);
			ok(c.spec.scope === (c.spec.names.kind === 'MaskingPolicy' ? 'Namespaced' : 'Cluster'),
				`${c.metadata.name}: scope ${c.spec.scope}`);
		}
	}
});
const ds = byKind('DaemonSet')[0];
const pod = ds && ds.spec.template.spec;
const agent = pod && pod.containers.find((c) => c.name === 'agent');
const args = new Map();
for (const a of (agent && agent.args) || []) {
	const m = /^(--[a-z-]+)(?:=(.*))?$/.exec(a);
	if (m) args.set(m[1], m[2] === undefined ? true : m[2]);
}
const mountOf = (p) => agent.volumeMounts.find((vm) => vm.mountPath === p);
const volumeOf = (name) => pod.volumes.find((v) => v.name === name);
const adminPort = agent && (agent.ports || []).find((p) => p.name === 'admin');
const svc = byKind('Service')[0];

check('DaemonSet: one agent per node, rolling update, tolerations', (ok) => {
	ok(ds, 'no DaemonSet');
	ok(agent, 'no container named agent');
	ok(ds.spec.updateStrategy.type === 'RollingUpdate', 'updateStrategy is not RollingUpdate');
	ok(ds.spec.updateStrategy.rollingUpdate.maxUnavailable >= 1, 'maxUnavailable < 1');
	ok(ds.spec.updateStrategy.rollingUpdate.maxSurge === 0, 'maxSurge must be 0 (host port, pins)');
	ok(pod.hostPID === true, 'hostPID is not true');
	ok(pod.hostNetwork === true, 'hostNetwork is not true');
	ok(pod.dnsPolicy === 'ClusterFirstWithHostNet', 'dnsPolicy with hostNetwork');
	ok((pod.tolerations || []).some((t) => t.operator === 'Exists' && !t.key), 'does not tolerate all taints');
	const sel = ds.spec.selector.matchLabels;
	for (const [k, v] of Object.entries(sel))
		ok(ds.spec.template.metadata.labels[k] === v, `selector label ${k} missing on the Pod`);
});

check('agent flags exist and match the mounts', (ok) => {
	for (const f of args.keys()) ok(agentFlags.has(f), `agent has no flag ${f}`);
	for (const f of want.args || []) ok(args.has(f), `${f} not passed to the agent`);
	if (!want.args) ok(!args.has('--splice') && !args.has('--busy-poll-us'), 'latency options on by default');
	if (!want.args) ok(!args.has('--no-zero-copy'), 'zero copy off by default');
	if (!want.args) ok(!['--tls-node-wide', '--tls-public-entry', '--tls-syscall-attribution'].some((f) => args.has(f)), 'TLS fallbacks on by default');
	if (!want.noBpf && opt.variant !== 'notls')
		ok(args.get('--tls-ring-kb') === (want.ringKiB || '8192'),
			`--tls-ring-kb ${args.get('--tls-ring-kb')}, want ${want.ringKiB || '8192'}`);
	else ok(!args.has('--tls-ring-kb'), '--tls-ring-kb without TLS capture');
	const pol = mountOf(args.get('--policies'));
	ok(pol && pol.readOnly, `--policies ${args.get('--policies')} is not a read-only mount`);
	const polVol = pol && volumeOf(pol.name);
	ok(polVol && polVol.configMap && !pol.subPath, '--policies is not a whole ConfigMap volume (hot reload needs no subPath)');
	if (want.policiesCM) {
		ok(polVol && polVol.configMap.name === want.policiesCM, 'existingPoliciesConfigMap not mounted');
		ok(byKind('ConfigMap').length === 0, 'a policies ConfigMap was rendered anyway');
	} else if (polVol && polVol.configMap) {
		const cm = byKind('ConfigMap').find((c) => c.metadata.name === polVol.configMap.name);
		ok(cm, `ConfigMap ${polVol.configMap.name} not rendered`);
		const files = Object.keys((cm && cm.data) || {});
		ok(JSON.stringify(files.map((f) => f.replace(/\.json$/, '')).sort()) ===
			JSON.stringify((want.policies || []).sort()), `policy files ${files}`);
		for (const f of files) {
			ok(f.endsWith('.json'), `${f}: the agent reads *.json`);
			let p = null;
			try {
				p = JSON.parse(cm.data[f]);
			} catch (e) {
				ok(false, `${f}: not JSON: ${e.message}`);
			}
			ok(p && p.kind === 'MaskingPolicy' && p.apiVersion === 'meshmask.io/v1alpha1', `${f}: not a MaskingPolicy`);
		}
	}
	const state = mountOf(args.get('--state-dir'));
	const stateVol = state && volumeOf(state.name);
	ok(stateVol && stateVol.hostPath && stateVol.hostPath.path === '/var/lib/meshmask' && !state.readOnly,
		'--state-dir is not a writable hostPath mount of /var/lib/meshmask');
	const tokenFile = args.get('--token-file');
	const tok = tokenFile && mountOf(path.dirname(tokenFile));
	const tokVol = tok && volumeOf(tok.name);
	ok(tokVol && tokVol.secret, '--token-file directory is not a Secret mount');
	if (tokVol && tokVol.secret) {
		const item = (tokVol.secret.items || []).find((it) => it.path === path.basename(tokenFile));
		ok(item, 'token Secret has no item at the --token-file name');
		ok(tokVol.secret.defaultMode === 0o400, 'token file mode is not 0400');
		const sec = byKind('Secret').find((s) => s.metadata.name === tokVol.secret.secretName);
		if (want.tokenSecret) {
			ok(tokVol.secret.secretName === want.tokenSecret, 'existingSecret not used');
			ok(item && item.key === want.tokenKey, 'existingSecretKey not used');
			ok(!byKind('Secret').some((s) => /admin-token/.test(s.metadata.name)), 'a token Secret was generated anyway');
		} else {
			ok(sec && sec.data && item && sec.data[item.key], 'token Secret not rendered with the key');
			const t = sec && item && Buffer.from(sec.data[item.key] || '', 'base64').toString();
			ok(t && t.length >= 32, 'generated token shorter than 32 characters');
		}
	}
	const keys = mountOf('/etc/meshmask/keys');
	ok(!!keys === !!want.keys, `hash keys mount ${keys ? 'present' : 'absent'}`);
	if (keys) {
		const kv = volumeOf(keys.name);
		const ks = byKind('Secret').find((s) => s.metadata.name === kv.secret.secretName);
		ok(keys.readOnly && kv.secret.defaultMode === 0o400, 'hash keys not read-only 0400');
		if (want.keysSecret) {
			ok(kv.secret.secretName === want.keysSecret && !ks, 'hashKeys.existingSecret not used as is');
		} else {
			ok(ks && Object.keys(ks.data).length > 0, 'hash keys Secret not rendered');
		}
	}
	if (tlsOn) {
		ok(args.get('--tls-cert') === '/etc/meshmask/tls/tls.crt' && args.get('--tls-key') === '/etc/meshmask/tls/tls.key', 'TLS flags');
		const tm = mountOf('/etc/meshmask/tls');
		ok(tm && volumeOf(tm.name).secret, 'TLS Secret not mounted');
	} else {
		ok(!args.has('--tls-cert'), 'TLS flags without TLS');
	}
	for (const vm of agent.volumeMounts) ok(volumeOf(vm.name), `mount ${vm.name} has no volume`);
	const used = new Set([...pod.containers, ...(pod.initContainers || [])].flatMap((c) => (c.volumeMounts || []).map((m) => m.name)));
	for (const v of pod.volumes) ok(used.has(v.name), `volume ${v.name} unused`);
});

check('kernel mounts: bpffs, cgroup root, BTF', (ok) => {
	if (want.noBpf) {
		ok(args.get('--no-bpf') === true, '--no-bpf missing');
		ok(!mountOf('/sys/fs/bpf'), 'bpffs mounted without BPF');
		return;
	}
	const bpf = mountOf(args.get('--bpffs') || '/sys/fs/bpf');
	const bv = bpf && volumeOf(bpf.name);
	ok(bv && bv.hostPath && bv.hostPath.path === '/sys/fs/bpf' && !bpf.readOnly, 'bpffs is not a writable hostPath mount');
	ok(bpf && bpf.mountPropagation === (want.privileged ? 'Bidirectional' : 'HostToContainer'),
		`bpffs propagation ${bpf && bpf.mountPropagation}`);
	const cg = mountOf(args.get('--cgroup-root'));
	const cv = cg && volumeOf(cg.name);
	ok(cv && cv.hostPath && cv.hostPath.path === '/sys/fs/cgroup', '--cgroup-root is not the host cgroup mount');
	const btf = mountOf('/sys/kernel/btf');
	const tv = btf && volumeOf(btf.name);
	ok(tv && tv.hostPath && tv.hostPath.path === '/sys/kernel/btf' && btf.readOnly, 'BTF not mounted read-only');
	ok(agent.env.some((e) => e.name === 'NODE_NAME'), 'NODE_NAME env');
	const init = (pod.initContainers || []).find((c) => c.name === 'mount-bpffs');
	ok(!!init === !!want.autoMount, `bpffs mount init container ${init ? 'present' : 'absent'}`);
	if (init) {
		const im = init.volumeMounts.find((vm) => vm.mountPath === '/sys/fs/bpf');
		ok(im && im.name === bpf.name && im.mountPropagation === 'Bidirectional',
			'init container does not mount the bpffs volume with Bidirectional propagation');
		ok(/mount -t bpf bpf \/sys\/fs\/bpf/.test(init.command.join(' ')), 'init container command');
	}
});

const EXAMPLE_ROLE = /-policy-(author|auditor)$/;
check('identity: pods get/list/watch only, token, NODE_NAME, --no-kube', (ok) => {
	const roles = byKind('ClusterRole').filter((r) => !EXAMPLE_ROLE.test(r.metadata.name));
	const binds = byKind('ClusterRoleBinding');
	const sa = byKind('ServiceAccount')[0];
	ok(args.has('--no-kube') === !!want.noIdentity, `--no-kube ${args.has('--no-kube') ? 'present' : 'absent'}`);
	if (want.noIdentity) {
		ok(roles.length === 0 && binds.length === 0, 'agent RBAC rendered without identity or rules');
		ok(sa && sa.automountServiceAccountToken === false, 'ServiceAccount token automounted');
		return;
	}
	ok(roles.length === 1, `${roles.length} ClusterRoles`);
	const rules = roles[0] ? roles[0].rules : [];
	const least = [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }];
	if (!want.noClusterPolicies)
		least.push(
			{ apiGroups: ['meshmask.io'], resources: ['maskingpolicies', 'clustermaskingpolicies'], verbs: ['get', 'list', 'watch'] },
			...(want.noSummary
				? [{ apiGroups: ['meshmask.io'], resources: ['maskingpolicynodestatuses'], verbs: ['get', 'create', 'patch'] }]
				// the summary status: every node's status read, each policy's status written
				: [{ apiGroups: ['meshmask.io'], resources: ['maskingpolicynodestatuses'], verbs: ['get', 'list', 'watch', 'create', 'patch'] },
					{ apiGroups: ['meshmask.io'], resources: ['maskingpolicies/status', 'clustermaskingpolicies/status'], verbs: ['patch'] }]),
			{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] });
	ok(JSON.stringify(rules) === JSON.stringify(least), `rules are not least rights: ${JSON.stringify(rules)}`);
	ok(args.has('--no-cluster-policies') === !!want.noClusterPolicies, '--no-cluster-policies');
	// The agent writes policies never: no write verb on a policy resource (only its status).
	ok(!rules.some((r) => (r.resources || []).some((x) => /policies$/.test(x)) &&
		r.verbs.some((v) => !['get', 'list', 'watch'].includes(v))), 'the agent may write policies');
	// The Lease electing the summary writer: in the release namespace, that one Lease only.
	const lr = byKind('Role').find((r) => /-lease$/.test(r.metadata.name));
	const lb = byKind('RoleBinding').find((r) => /-lease$/.test(r.metadata.name));
	if (want.noClusterPolicies || want.noSummary) {
		ok(!lr && !lb, 'lease Role rendered without policy resources or summary');
		ok(!args.has('--lease-namespace'), '--lease-namespace without policy resources or summary');
	} else {
		const leaseName = args.get('--lease-name');
		ok(args.get('--lease-namespace') === lr?.metadata.namespace, '--lease-namespace is not the Role\'s namespace');
		ok(lr && JSON.stringify(lr.rules) === JSON.stringify([
			{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
			{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [leaseName], verbs: ['get', 'update'] }]),
			`lease Role rules: ${JSON.stringify(lr && lr.rules)}`);
		ok(lb && lb.roleRef.name === lr?.metadata.name && lb.subjects[0].name === pod.serviceAccountName,
			'lease RoleBinding');
		// the summary reads the agents' readiness from their Pods: the DaemonSet's own selector
		const sel = Object.entries(ds.spec.selector.matchLabels).map(([k, v]) => `${k}=${v}`).sort().join(',');
		ok(String(args.get('--agent-selector')).split(',').sort().join(',') === sel,
			`--agent-selector ${args.get('--agent-selector')} is not the DaemonSet's selector ${sel}`);
	}
	const b = binds[0];
	ok(b && roles[0] && b.roleRef.kind === 'ClusterRole' && b.roleRef.name === roles[0].metadata.name,
		'binding does not refer to the ClusterRole');
	ok(b && b.subjects.length === 1 && b.subjects[0].kind === 'ServiceAccount' &&
		b.subjects[0].name === pod.serviceAccountName && b.subjects[0].namespace,
		'binding subject is not the agent ServiceAccount');
	ok(sa && sa.automountServiceAccountToken === true, 'ServiceAccount token not automounted');
	const nn = agent.env.find((e) => e.name === 'NODE_NAME');
	ok(nn && nn.valueFrom && nn.valueFrom.fieldRef && nn.valueFrom.fieldRef.fieldPath === 'spec.nodeName',
		'NODE_NAME not from the downward API spec.nodeName');
});

check('example roles: policy author (namespaced writes), auditor (read only)', (ok) => {
	const ex = byKind('ClusterRole').filter((r) => EXAMPLE_ROLE.test(r.metadata.name));
	if (want.noClusterPolicies) {
		ok(ex.length === 0, 'example roles rendered with cluster.exampleRoles=false');
		return;
	}
	ok(ex.length === 2, `${ex.length} example roles`);
	const author = ex.find((r) => /author$/.test(r.metadata.name));
	const auditor = ex.find((r) => /auditor$/.test(r.metadata.name));
	ok(author && author.rules.every((r) => !r.resources.some((x) => /^clustermaskingpolicies|nodestatuses/.test(x))),
		'the author role reaches beyond MaskingPolicy');
	ok(author && author.rules.some((r) => r.resources.includes('maskingpolicies') && r.verbs.includes('create')),
		'the author role cannot create MaskingPolicies');
	ok(auditor && auditor.rules.every((r) => r.verbs.every((v) => ['get', 'list', 'watch'].includes(v))),
		'the auditor role writes');
	ok(auditor && ['maskingpolicies/status', 'clustermaskingpolicies/status', 'maskingpolicynodestatuses']
		.every((x) => auditor.rules.some((r) => r.resources.includes(x))), 'the auditor cannot read the status');
});

check('security context: least capabilities, read-only root', (ok) => {
	const sc = agent.securityContext;
	ok(sc.readOnlyRootFilesystem === true, 'root filesystem is writable');
	ok(sc.runAsUser === 0, 'capabilities need uid 0');
	ok(pod.automountServiceAccountToken === !want.noIdentity,
		want.noIdentity ? 'service account token mounted without identity or RBAC rules'
			: 'identity.kubernetes on but the service account token is not mounted');
	if (want.privileged) {
		ok(sc.privileged === true, 'privileged escape hatch not applied');
		return;
	}
	ok(sc.privileged === false, 'privileged');
	ok(JSON.stringify(sc.capabilities.drop) === '["ALL"]', 'capabilities.drop is not [ALL]');
	const add = (sc.capabilities.add || []).slice().sort();
	ok(JSON.stringify(add) === JSON.stringify(want.caps.slice().sort()), `capabilities ${add} != ${want.caps.slice().sort()}`);
	ok(sc.seccompProfile && sc.seccompProfile.type === 'RuntimeDefault', 'seccomp profile');
	if (!want.caps.length) ok(sc.allowPrivilegeEscalation === false, 'no capabilities but privilege escalation allowed');
	// API server rules (pkg/apis/core/validation): not in the OpenAPI schema.
	for (const c of [...pod.containers, ...(pod.initContainers || [])]) {
		const csc = c.securityContext || {};
		for (const vm of c.volumeMounts || [])
			ok(vm.mountPropagation !== 'Bidirectional' || csc.privileged === true,
				`${c.name}: Bidirectional propagation needs a privileged container`);
		ok(!(csc.allowPrivilegeEscalation === false && (csc.privileged ||
			((csc.capabilities || {}).add || []).includes('SYS_ADMIN'))),
			`${c.name}: allowPrivilegeEscalation=false with privileged or SYS_ADMIN is rejected`);
	}
});

check('admin API: port, Service, probes on /healthz and /readyz', (ok) => {
	const port = adminPort && adminPort.containerPort;
	ok(port === 9477, `admin containerPort ${port} is not the agent default 9477`);
	const admin = String(args.get('--admin'));
	const m = /^(.*):(\d+)$/.exec(admin);
	ok(m && Number(m[2]) === port, `--admin ${admin} does not use the container port`);
	if (m && m[1].startsWith('$(')) {
		const v = m[1].slice(2, -1);
		const env = agent.env.find((e) => e.name === v);
		ok(env && env.valueFrom && env.valueFrom.fieldRef.fieldPath === 'status.hostIP',
			`--admin uses $(${v}) but it is not the node IP from the downward API`);
	}
	const scheme = tlsOn ? 'HTTPS' : 'HTTP';
	const probes = { startupProbe: '/healthz', livenessProbe: '/healthz', readinessProbe: '/readyz' };
	for (const [p, want_path] of Object.entries(probes)) {
		const g = agent[p] && agent[p].httpGet;
		ok(g, `${p} missing`);
		if (!g) continue;
		ok(g.path === want_path, `${p} path ${g.path}`);
		ok(g.port === 'admin' || g.port === port, `${p} port ${g.port}`);
		ok(g.scheme === scheme, `${p} scheme ${g.scheme}`);
		ok((g.host || null) === (want.probeHost || null), `${p} host ${g.host}`);
	}
	if (want.noService) {
		ok(!svc, 'Service rendered for a loopback admin API');
	} else {
		ok(svc, 'no Service');
		if (svc) {
			const sp = svc.spec.ports.find((p) => p.name === 'admin');
			ok(sp && sp.port === port && (sp.targetPort === 'admin' || sp.targetPort === port), 'Service port');
			for (const [k, v] of Object.entries(svc.spec.selector))
				ok(ds.spec.template.metadata.labels[k] === v, `Service selector ${k} does not match the Pods`);
			ok((svc.spec.clusterIP === 'None') === !!want.headless, 'headless');
		}
	}
});

check('auditors: PrometheusRule and Grafana dashboard, opt-in', (ok) => {
	const rules = byKind('PrometheusRule');
	const dash = byKind('ConfigMap').filter((c) => (c.metadata.labels || {}).grafana_dashboard === '1');
	if (!want.monitoring) {
		ok(rules.length === 0 && dash.length === 0, 'PrometheusRule or dashboard rendered without being asked');
		return;
	}
	ok(rules.length === 1, `${rules.length} PrometheusRules`);
	const alerts = rules[0] ? rules[0].spec.groups.flatMap((g) => g.rules.map((r) => r.alert)) : [];
	for (const a of ['MeshmaskPassedUnmasked', 'MeshmaskFlowsPassedUnmasked', 'MeshmaskFlowsRefused',
		'MeshmaskTLSRecordsDropped', 'MeshmaskAgentDown', 'MeshmaskAgentNotReady', 'MeshmaskPolicyRefused'])
		ok(alerts.includes(a), `alert ${a} missing`);
	ok(dash.length === 1, `${dash.length} dashboard ConfigMaps with grafana_dashboard: "1"`);
	let d = null;
	try {
		d = JSON.parse(dash[0].data['meshmask-audit.json']);
	} catch (e) {
		ok(false, `dashboard JSON: ${e.message}`);
	}
	ok(d && d.uid && d.panels.length > 10 && d.panels.every((p) => p.type === 'row' || p.targets.length > 0),
		'dashboard without uid or panels, or a panel without a query');
});

check('metrics: ServiceMonitor or scrape annotations', (ok) => {
	const sm = byKind('ServiceMonitor')[0];
	const ann = ds.spec.template.metadata.annotations || {};
	if (want.serviceMonitor) {
		ok(sm, 'no ServiceMonitor');
		if (!sm) return;
		const ep = sm.spec.endpoints[0];
		ok(ep.port === 'admin' && ep.path === '/metrics', 'ServiceMonitor endpoint');
		ok(ep.scheme === (tlsOn ? 'https' : 'http'), `ServiceMonitor scheme ${ep.scheme}`);
		ok(!!ep.tlsConfig === !!tlsOn, 'ServiceMonitor tlsConfig');
		ok(svc.spec.ports.some((p) => p.name === ep.port), 'ServiceMonitor port not on the Service');
		for (const [k, v] of Object.entries(sm.spec.selector.matchLabels))
			ok(svc.metadata.labels[k] === v, `ServiceMonitor selector ${k} does not match the Service`);
		ok(!ann['prometheus.io/scrape'], 'scrape annotations as well as a ServiceMonitor');
	} else {
		ok(!sm, 'ServiceMonitor rendered');
		ok(ann['prometheus.io/scrape'] === 'true' && ann['prometheus.io/path'] === '/metrics' &&
			Number(ann['prometheus.io/port']) === adminPort.containerPort &&
			ann['prometheus.io/scheme'] === (tlsOn ? 'https' : 'http'), 'scrape annotations');
	}
});

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
