#!/usr/bin/env node
// What FATE-Board 2.1.0 draws from a task's metrics: runs the board's own metric transform
// (vendor/fate-board/src/transform/metric/index.ts, unmodified) on `flow output query-metric` output.
//
//   node render.mjs [options] INPUT...
//
// INPUT: a file (as saved from `flow output query-metric ... > TASK.ROLE.PARTY.json`), a
// directory of such *.json files, or TASK=FILE. The task name is the file name up to its first
// dot; ROLE and PARTY, when the name carries them, are passed to the transform (it uses them only
// in widget ids). See README.md.
import * as esbuild from 'esbuild';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BOARD_SRC = path.join(HERE, 'vendor', 'fate-board', 'src');
const BUNDLE = path.join(HERE, 'node_modules', '.cache', 'fate-board-metric.cjs');

const USAGE = `usage: run.sh [--dsl DSL.json] [--type TASK=COMPONENT_REF]... [--role ROLE] [--party PARTY] [--job JOB_ID]
              [--keep-order] [--json] INPUT...
  INPUT          query-metric output: FILE, DIRECTORY (its *.json files) or TASK=FILE
  --dsl          read each task's component from a DSL/DAG JSON (this project's dsl/lung.json)
  --type         the task's component_ref (the board's comp_type); default: the task name less a
                 trailing _N. The metric transforms only test it against /sample/ (summary.ts).
  --role/--party/--job  passed to the transform when the file name does not say (ids only)
  --keep-order   skip the board server's re-ordering of object keys (fastjson HashMap, see README)
  --json         print the findings as JSON instead of a table`;

// ---------------------------------------------------------------------------------------------
// The board's transform, bundled the way its webpack build resolves it.

async function loadBoard() {
  const stubs = path.join(HERE, 'stubs', 'components.ts');
  const result = await esbuild.build({
    entryPoints: [path.join(HERE, 'stubs', 'entry.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    write: false,
    logLevel: 'error',
    // The board's webpack DefinePlugin sets process.env; "development" only makes the metric
    // transform console.log the errors it swallows, which is how this tool learns why a metric
    // is dropped.
    define: { 'process.env.NODE_ENV': '"development"' },
    plugins: [{
      name: 'fate-board-paths',
      setup(build) {
        // Vue components the transforms name as `tag:` (rendered in the browser only).
        build.onResolve({ filter: /^(@\/components\/(LineChart|RangeTable)|fate-ui-component)$/ },
          () => ({ path: stubs }));
        // The board's tsconfig/webpack alias: "@/*" -> "src/*".
        build.onResolve({ filter: /^@\// }, (args) =>
          build.resolve('./' + args.path.slice(2), { resolveDir: BOARD_SRC, kind: args.kind }));
      },
    }],
  });
  fs.mkdirSync(path.dirname(BUNDLE), { recursive: true });
  fs.writeFileSync(BUNDLE, result.outputFiles[0].text);
  return createRequire(import.meta.url)(BUNDLE);
}

// ---------------------------------------------------------------------------------------------
// Input: what `flow output query-metric` prints, i.e. FATE-Flow's response
// {"code": 0, "message": "success", "data": [ {name, type, groups, step_axis, data}, ... ]}.

function nanToNull(text) {
  // Python's json writes NaN/Infinity (FATE-Flow and the flow CLI both allow them); JSON.parse
  // does not. They become null here, and the tool says so.
  let out = '', inString = false, count = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === '\\') { out += text[++i] ?? ''; } else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') { inString = true; out += c; continue; }
    const m = /^-?(NaN|Infinity)/.exec(text.slice(i, i + 9));
    if (m) { out += 'null'; count++; i += m[0].length - 1; continue; }
    out += c;
  }
  return { text: out, count };
}

function readQueryMetric(file) {
  const raw = fs.readFileSync(file, 'utf8');
  const start = raw.search(/[[{]/);
  if (start < 0) throw new Error(`${file}: no JSON found (expected the output of flow output query-metric)`);
  const { text, count } = nanToNull(raw.slice(start));
  let parsed;
  try {
    try {
      parsed = JSON.parse(text);
    } catch (first) {   // something printed after the JSON (a log line, a prompt): cut at its last bracket
      const end = Math.max(text.lastIndexOf('}'), text.lastIndexOf(']'));
      if (end < 0) throw first;
      parsed = JSON.parse(text.slice(0, end + 1));
    }
  } catch (e) {
    throw new Error(`${file}: not JSON (${e.message}); save the command's stdout only: ` +
      'flow output query-metric -j JOB -r ROLE -p PARTY -tn TASK > TASK.ROLE.PARTY.json');
  }
  const notes = [];
  if (start > 0) notes.push(`skipped ${start} characters before the JSON`);
  if (count) notes.push(`${count} NaN/Infinity value(s) read as null (what the board server makes of them is unverified)`);
  if (Array.isArray(parsed)) return { rows: parsed, notes };
  if (parsed && typeof parsed === 'object' && 'data' in parsed) {
    if (parsed.code !== undefined && parsed.code !== 0) {
      throw new Error(`${file}: FATE-Flow answered code ${parsed.code}: ${parsed.message ?? parsed.retmsg ?? ''}`);
    }
    if (!Array.isArray(parsed.data)) throw new Error(`${file}: "data" is ${typeof parsed.data}, expected a list of metrics`);
    return { rows: parsed.data, notes };
  }
  throw new Error(`${file}: expected {"code": 0, "data": [...]} (flow output query-metric) or a list of metrics`);
}

// The board server (JobDetailController.getMetaInfo -> ResponseUtil.buildResponse) parses
// FATE-Flow's answer with fastjson 1.2.83 (JSON.parseObject: every object a JSONObject over a
// java.util.HashMap(16)) and Jackson writes it back to the browser in that map's iteration order.
// Arrays keep their order. This re-creates HashMap's order: bucket (hash ^ hash >>> 16) & (n - 1)
// of String.hashCode, insertion order within a bucket, resize at 0.75 load.
function javaStringHash(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

function hashMapOrder(keys, warn) {
  let table = Array.from({ length: 16 }, () => []);
  let size = 0;
  const spread = (k) => { const h = javaStringHash(k); return (h ^ (h >>> 16)); };
  const resize = () => {
    const next = Array.from({ length: table.length * 2 }, () => []);
    for (const bucket of table) for (const k of bucket) next[spread(k) & (next.length - 1)].push(k);
    table = next;
  };
  for (const k of keys) {
    const bucket = table[spread(k) & (table.length - 1)];
    bucket.push(k);
    if (bucket.length > 8) {            // HashMap.treeifyBin: resize below 64 buckets, else a tree bin
      if (table.length < 64) resize(); else warn('a HashMap bucket holds more than 8 keys: key order unverified');
    }
    if (++size > table.length * 0.75) resize();
  }
  return table.flat();
}

function asBoardServerSends(value, warn) {
  if (Array.isArray(value)) return value.map((v) => asBoardServerSends(v, warn));
  if (value && typeof value === 'object') {
    const out = {};
    for (const k of hashMapOrder(Object.keys(value), warn)) out[k] = asBoardServerSends(value[k], warn);
    return out;
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Calling the board and reading back what it built.

function callBoard(board, rows, args) {
  const logged = [];
  const original = console.log;
  console.log = (...a) => logged.push(a.map((x) => (x instanceof Error ? `${x.name}: ${x.message}` : String(x))).join(' '));
  try {
    return { config: board.metricsExplain(rows, args.role, args.party, args.task, args.compType, args.job), logged };
  } finally {
    console.log = original;
  }
}

function widgets(node, found = []) {
  if (!node || typeof node !== 'object') return found;
  const tag = node.tag && node.tag.__fateBoardWidget;
  if (tag) found.push({ widget: tag, id: node.id, prop: node.prop || {} });
  for (const child of node.children || []) widgets(child, found);
  return found;
}

const short = (list, n = 6) => (list.length > n ? [...list.slice(0, n), `… ${list.length - n} more`] : list).join(', ');

function tableRows(prop) {
  // summary.ts passes the rows, or {request, parameter} (a filter) when rows have several labels.
  if (Array.isArray(prop.data)) return prop.data;
  if (prop.data && typeof prop.data.request === 'function') return prop.data.request('');
  return [];
}

function describe(config) {
  // What the board's config holds, widget by widget.
  const out = [];
  for (const w of widgets(config)) {
    if (w.widget === 'FLine') {
      const series = w.prop.data?.series || [];
      out.push({ kind: 'loss chart', title: w.prop.title, series: series.map((s) => ({ name: s.name, points: s.data })) });
    } else if (w.widget === 'FRangeTable') {
      const header = (w.prop.header || []).map((h) => h.label || h.prop);
      const rows = (w.prop.data || []).map((r) => ({ ...r }));
      out.push({ kind: w.id === 'EvaluationScore' ? 'evaluation scores' : 'range table', title: w.prop.title, header, rows });
    } else if (w.widget === 'FCharts') {
      // {chart: {dataset: {configuration: {series: [...]}}}} (evaluationRoc.ts, evaluationKS.ts, ...)
      const charts = Object.entries(w.prop.data || {}).map(([chart, byDataset]) => {
        const sets = Object.entries(byDataset || {}).map(([dataset, c]) => {
          const series = c?.configuration?.series || [];
          return `${dataset}: ${series.map((x) => `${x.name} (${(x.data || []).length} pts)`).join(', ')}`;
        });
        return `${chart} {${sets.join('; ')}}`;
      });
      out.push({ kind: 'evaluation charts', charts });
    } else if (w.widget === 'FTable') {
      const header = (w.prop.header || []).map((h) => h.label || h.prop);
      out.push({ kind: 'table', header, rows: tableRows(w.prop) });
    } else if (w.widget === 'FRow') {
      out.push({ kind: 'text', label: w.prop.label, content: w.prop.content });
    } else if (w.widget === 'FSelection') {
      out.push({ kind: 'filter', options: (w.prop.options || []).map((o) => o.label) });
    }
  }
  return out;
}

function verdictOf(parts, row) {
  // One line for what the board drew from one metric row.
  const text = [];
  for (const p of parts) {
    if (p.kind === 'table') {
      // fate-ui-component's Table/cellExplain.ts shows a list joined with ',' and an object as its
      // `.value` ('-' when it has none); the table pages at `size` (10) rows.
      const cells = p.rows.flatMap((r) => Object.values(r));
      const lists = cells.filter((v) => Array.isArray(v)).length;
      const objects = cells.filter((v) => v !== null && typeof v === 'object' && !Array.isArray(v)).length;
      const label = row.name === 'summary' ? 'summary table' : 'table';
      const first = p.header.includes('variable') ? p.rows.map((r) => r.variable) : p.rows.map((r) => r[p.header[0]]);
      text.push(`${label} [${p.header.join(' | ')}] ${p.rows.length} row(s)${p.rows.length > 10 ? ', 10 a page' : ''}: ` +
        short(first.map(String)) +
        (lists ? `; ${lists} list value(s) shown comma-joined` : '') +
        (objects ? `; ${objects} object value(s) shown as '-'` : ''));
    } else if (p.kind === 'evaluation scores') {
      const cols = p.header.slice(2);
      text.push(`evaluation table: ${cols.length ? `columns [${cols.join(', ')}]` : 'no score column'} for ` +
        `${p.rows.length} row(s) (${short(p.rows.map((r) => `${r.component}/${r.dataset}`))})`);
    } else if (p.kind === 'range table') {
      text.push(`${p.title}: ${p.rows.length} row(s)`);
    } else if (p.kind === 'evaluation charts') {
      text.push(`charts [${p.charts.join(', ')}]`);
    } else if (p.kind === 'text') {
      text.push(`text "${p.label}"`);
    } else if (p.kind === 'filter') {
      text.push(`filter of ${p.options.length}`);
    } else if (p.kind === 'loss chart') {
      text.push(`a loss chart (${p.series.length} series)`);
    }
  }
  return text.join('; ');
}

function droppedReason(logged, row) {
  const err = logged.find((l) => /Error/.test(l)) || '';
  const missing = /Module not found in bundle: \.\/(.*)\.ts/.exec(err);
  if (missing) return `dropped: no metric/${missing[1]}.ts (the board picks the transform by metric name)`;
  if (err) return `dropped: ${row.name}.ts threw ${err}`;
  return 'dropped: the transform returned nothing';
}

function evaluationEntries(data) {
  const entries = [];
  if (!data || typeof data !== 'object') return entries;
  for (const task of Object.keys(data)) {
    const splits = data[task];
    if (!splits || typeof splits !== 'object') continue;
    for (const split of Object.keys(splits)) {
      const list = Array.isArray(splits[split]) ? splits[split].flat(Infinity) : [];
      for (const entry of list) entries.push({ task, split, entry });
    }
  }
  return entries;
}

function evaluationIgnored(board, row, args) {
  // Which {metric, val} entries the evaluation transform shows nothing for, judged one at a time
  // (an fscore entry, for one, only adds a column next to a confusion_matrix entry).
  const ignored = [];
  for (const { task, split, entry } of evaluationEntries(row.data)) {
    const probe = { ...row, data: { [task]: { [split]: [entry] } } };
    const { config } = callBoard(board, [probe], args);
    const parts = describe(config);
    const shown = parts.some((p) => (p.kind === 'evaluation scores' && p.header.length > 2) ||
      p.kind === 'range table' || p.kind === 'evaluation charts');
    if (!shown) ignored.push(entry && entry.metric !== undefined ? String(entry.metric) : JSON.stringify(entry));
  }
  return [...new Set(ignored)];
}

// The loss chart: metric/index.ts concatenates the `data` of every row whose type matches /loss/i,
// in the order FATE-Flow returned the rows, and loss.ts starts a new series at every point with
// step 0. The series are named loss_0, loss_1, ...; the metric names are not shown.
function lossSeries(rows) {
  const points = [];
  for (const row of rows) {
    if (!(row.type && /loss/i.test(row.type))) continue;
    let items;
    try { items = [...row.data]; } catch { continue; }     // the board's spread throws: row lost
    for (const p of items) points.push({ step: p?.step, metric: p?.metric, from: row.name });
  }
  const series = [];
  let current = [];
  for (const p of points) {
    if (p.step === 0 && current.length > 0) { series.push(current); current = []; }
    current.push(p);
  }
  if (current.length) series.push(current);
  return series;
}

function runsOf(points) {
  const runs = [];
  for (const p of points) {
    const last = runs[runs.length - 1];
    if (last && last.from === p.from && p.step > last.to) { last.to = p.step; last.n++; } else runs.push({ from: p.from, at: p.step, to: p.step, n: 1 });
  }
  return runs.map((r) => (r.n === 1 ? `${r.from}@${r.at}` : `${r.from}@${r.at}-${r.to}`));
}

function analyse(board, rows, args) {
  const full = callBoard(board, rows, args);
  const fullParts = describe(full.config);
  const loss = fullParts.find((p) => p.kind === 'loss chart');
  const attributed = lossSeries(rows);
  const notes = [];
  if (loss && (loss.series.length !== attributed.length ||
      loss.series.some((s, i) => s.points.length !== attributed[i].length))) {
    notes.push('loss attribution does not match the board\'s series (report this): series lengths ' +
      `${loss.series.map((s) => s.points.length)} vs ${attributed.map((s) => s.length)}`);
  }
  const seriesOfRow = new Map();
  attributed.forEach((s, i) => s.forEach((p) => {
    if (!seriesOfRow.has(p.from)) seriesOfRow.set(p.from, new Set());
    seriesOfRow.get(p.from).add(`loss_${i}`);
  }));

  const findings = rows.map((row) => {
    const base = { name: row.name, type: row.type ?? null, step_axis: row.step_axis ?? null,
      steps: Array.isArray(row.data) && row.step_axis ? row.data.map((p) => p?.step) : null };
    if (row.type && /loss/i.test(row.type)) {
      const inSeries = seriesOfRow.get(row.name);
      const ok = Array.isArray(row.data) || (row.data && typeof row.data[Symbol.iterator] === 'function');
      return { ...base, rendered: ok ? `loss chart, in ${[...(inSeries || [])].join(', ') || 'no series'}` :
        'dropped: a loss-typed metric whose data is not a list' };
    }
    if (row.type === 'data_split') return { ...base, rendered: 'data_split table (all data_split metrics together)' };
    const one = callBoard(board, [row], args);
    const parts = describe(one.config);
    if (!parts.length) {
      const built = one.config?.children?.length;
      return { ...base, rendered: built ? `${row.name}.ts returned something that is no widget (not a metric transform)` :
        droppedReason(one.logged, row) };
    }
    let rendered = verdictOf(parts, row);
    if (parts.some((p) => p.kind === 'evaluation scores')) {
      const ignored = evaluationIgnored(board, row, args);
      if (ignored.length) rendered += `; not shown: ${short(ignored, 10)}`;
    }
    return { ...base, rendered, parts };
  });
  const splitRows = rows.filter((r) => r.type === 'data_split');
  const dataSplit = splitRows.length ? describe(callBoard(board, splitRows, args).config) : [];
  return { findings, loss: loss ? { series: attributed } : null, fullParts, notes, dataSplit };
}

// ---------------------------------------------------------------------------------------------
// Report.

function groupFindings(findings) {
  // FATE-Flow stores one row per log call: a per-round metric arrives as one row per round.
  const groups = new Map();
  for (const f of findings) {
    const key = `${f.name}\u0000${f.type}`;
    if (!groups.has(key)) groups.set(key, { name: f.name, type: f.type, rows: 0, steps: [], rendered: new Map() });
    const g = groups.get(key);
    g.rows++;
    if (f.steps) g.steps.push(...f.steps);
    g.rendered.set(f.rendered, (g.rendered.get(f.rendered) || 0) + 1);
  }
  return [...groups.values()].map((g) => {
    let rendered;
    if (g.type && /loss/i.test(g.type)) {
      const series = new Set();
      for (const r of g.rendered.keys()) for (const m of r.matchAll(/loss_\d+/g)) series.add(m[0]);
      rendered = series.size ? `loss chart: in series ${[...series].join(', ')}` : [...g.rendered.keys()].join(' / ');
    } else {
      rendered = [...g.rendered.entries()].map(([r, n]) => (g.rows > 1 && g.rendered.size > 1 ? `${n}x ${r}` : r)).join(' / ');
    }
    return { name: g.name, type: g.type, rows: g.rows, steps: g.steps, rendered };
  });
}

function stepRange(steps) {
  if (!steps.length) return '-';
  const min = Math.min(...steps), max = Math.max(...steps);
  return min === max ? `${min}` : `${min}-${max}`;
}

function printTable(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === cells.length - 1 ? String(c) : String(c).padEnd(widths[i]))).join('  ');
  console.log(line(headers));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(r));
}

function report(task) {
  console.log(`\n== ${task.task} (${task.file}): comp_type ${task.args.compType}${task.args.guessedType ? ' (guessed; --type/--dsl)' : ''}, ` +
    `role ${task.args.role}, party ${task.args.party}; ${task.rows.length} metric row(s)`);
  for (const n of task.notes) console.log(`   note: ${n}`);
  if (!task.rows.length) { console.log('   no metrics: the board shows NO DATA for metrics'); return; }
  const grouped = groupFindings(task.result.findings);
  printTable(['metric', 'type', 'rows', 'steps', 'rendered as'],
    grouped.map((g) => [g.name, g.type ?? '-', g.rows, stepRange(g.steps), g.rendered]));
  if (task.result.loss) {
    const s = task.result.loss.series;
    console.log(`   loss chart "Loss": ${s.length} series`);
    s.forEach((points, i) => {
      const steps = points.map((p) => p.step);
      const monotonic = steps.every((v, j) => j === 0 || v > steps[j - 1]);
      const gaps = points.filter((p) => typeof p.metric !== 'number').length;
      const from = [...new Set(points.map((p) => p.from))];
      console.log(`     loss_${i}: ${points.length} point(s), steps ${short(steps.map(String), 12)}` +
        `${monotonic ? '' : ' (not increasing: the line doubles back)'}${gaps ? `, ${gaps} non-numeric (gaps)` : ''}; ` +
        `from ${from.length === 1 ? from[0] : short(runsOf(points), 8)}`);
    });
  }
  for (const p of task.result.dataSplit.filter((x) => x.kind === 'table')) {
    console.log(`   data_split table [${p.header.join(' | ')}] ${p.rows.length} row(s)`);
  }
  for (const n of task.result.notes) console.log(`   note: ${n}`);
  const drawn = task.result.fullParts.map((p) => p.kind);
  const counts = [...new Set(drawn)].map((k) => `${drawn.filter((d) => d === k).length} ${k}`);
  console.log(`   the task's metrics section: ${counts.length ? counts.join(', ') : 'nothing drawn (NO DATA unless the model output shows)'}`);
}

// ---------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { types: {}, dsl: null, role: null, party: null, job: 'JOB', keepOrder: false, json: false, inputs: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value\n${USAGE}`);
      return argv[++i];
    };
    if (a === '-h' || a === '--help') { console.log(USAGE); process.exit(0); }
    else if (a === '--type') {
      const [task, ref] = value().split('=');
      if (!task || !ref) throw new Error(`--type wants TASK=COMPONENT_REF, e.g. --type trainer=homo_lung_nn`);
      opts.types[task] = ref;
    } else if (a === '--dsl') opts.dsl = value();
    else if (a === '--role') opts.role = value();
    else if (a === '--party') opts.party = value();
    else if (a === '--job') opts.job = value();
    else if (a === '--keep-order') opts.keepOrder = true;
    else if (a === '--json') opts.json = true;
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}\n${USAGE}`);
    else opts.inputs.push(a);
  }
  if (!opts.inputs.length) throw new Error(USAGE);
  return opts;
}

function expandInputs(inputs) {
  const files = [];
  for (const input of inputs) {
    const eq = input.indexOf('=');
    const [task, p] = eq > 0 && !fs.existsSync(input) ? [input.slice(0, eq), input.slice(eq + 1)] : [null, input];
    if (!fs.existsSync(p)) throw new Error(`${p}: no such file or directory`);
    if (fs.statSync(p).isDirectory()) {
      const inside = fs.readdirSync(p).filter((f) => f.endsWith('.json')).sort();
      if (!inside.length) throw new Error(`${p}: no *.json files in this directory`);
      for (const f of inside) files.push({ task: null, file: path.join(p, f) });
    } else files.push({ task, file: p });
  }
  return files;
}

function typesFromDsl(file) {
  // This project's DSL (dsl/*.json: components.TASK.component) or a FATE 2 DAG in JSON
  // (dag.tasks.TASK.component_ref): the board's comp_type is FATE-Flow's component_module, i.e.
  // the task's component_ref (fate_flow/manager/pipeline/pipeline.py).
  let spec;
  try { spec = JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) {
    throw new Error(`--dsl ${file}: not a JSON file (${e.message}); a YAML DAG needs --type TASK=COMPONENT_REF`);
  }
  const types = {};
  for (const [task, c] of Object.entries(spec.components || {})) if (c && c.component) types[task] = c.component;
  for (const [task, t] of Object.entries(spec.dag?.tasks || {})) if (t && t.component_ref) types[task] = t.component_ref;
  if (!Object.keys(types).length) throw new Error(`--dsl ${file}: found neither components.TASK.component nor dag.tasks.TASK.component_ref`);
  return types;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.dsl) opts.types = { ...typesFromDsl(opts.dsl), ...opts.types };
  const board = await loadBoard();
  const tasks = [];
  for (const { task: named, file } of expandInputs(opts.inputs)) {
    const parts = path.basename(file).replace(/\.json$/, '').split('.');
    const task = named || parts[0];
    const args = {
      task,
      compType: opts.types[task] || task.replace(/_\d+$/, ''),
      guessedType: !opts.types[task],
      role: opts.role || parts[1] || 'guest',
      party: opts.party || parts[2] || '9999',
      job: opts.job,
    };
    const { rows: received, notes } = readQueryMetric(file);
    const rows = opts.keepOrder ? received : asBoardServerSends(received, (w) => notes.includes(w) || notes.push(w));
    tasks.push({ task, file, args, rows, notes, result: analyse(board, rows, args) });
  }
  if (opts.json) {
    const plain = tasks.map((t) => ({ task: t.task, file: t.file, comp_type: t.args.compType, role: t.args.role,
      party: t.args.party, notes: t.notes, metrics: groupFindings(t.result.findings),
      loss_series: t.result.loss ? t.result.loss.series.map((s, i) => ({ name: `loss_${i}`,
        points: s.map((p) => ({ step: p.step, metric: p.metric, from: p.from })) })) : [] }));
    console.log(JSON.stringify(plain, null, 2));
  } else {
    console.log('FATE-Board 2.1.0 metric transforms (vendor/fate-board, see NOTICE) on query-metric output');
    tasks.forEach(report);
  }
}

main().catch((e) => { console.error(e.message); process.exit(2); });
