// node --test tools/fate_board_check/  (after run.sh has installed node_modules once)
// The harness's verdicts on the committed samples (samples/, made by sample_metrics.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const render = (...inputs) => JSON.parse(execFileSync(process.execPath,
  [path.join(HERE, 'render.mjs'), '--json', ...inputs.map((p) => path.join(HERE, 'samples', p))], { encoding: 'utf8' }));
const metric = (task, name) => task.metrics.find((m) => m.name === name);

test('today: the three loss-typed metrics of a site collapse into loss_0..loss_2, one of them mixed', () => {
  const [trainer] = render('today/train_job/trainer.guest.9999.json');
  assert.deepEqual(trainer.loss_series.map((s) => s.name), ['loss_0', 'loss_1', 'loss_2']);
  assert.deepEqual(trainer.loss_series.map((s) => s.points.length), [1, 1, 10]);
  assert.deepEqual([...new Set(trainer.loss_series[2].points.map((p) => p.from))], ['global_val_loss', 'train_loss', 'val_loss']);
  assert.match(metric(trainer, 'val_auc').rendered, /^dropped: no metric\/val_auc\.ts/);
});

test('today: summaries that are not named "summary" are dropped', () => {
  const [evaluation, reader] = render('today/train_job/evaluation.guest.9999.json', 'today/train_job/reader_all.guest.9999.json');
  assert.match(metric(evaluation, 'froc_summary').rendered, /^dropped/);
  assert.match(metric(reader, 'reader_summary').rendered, /^dropped/);
});

test('board-ready: one loss series, summary tables, an evaluation table with auc and without cpm', () => {
  const [evaluation, , trainer] = render('board_ready/train_job/evaluation.guest.9999.json',
    'board_ready/train_job/reader_all.guest.9999.json', 'board_ready/train_job/trainer.guest.9999.json');
  assert.deepEqual(trainer.loss_series.map((s) => [s.name, s.points.length]), [['loss_0', 4]]);
  assert.match(metric(trainer, 'summary').rendered, /^summary table \[index \| variable \| value\] 9 row/);
  assert.match(metric(evaluation, 'evaluation').rendered, /columns \[auc\].*not shown: cpm/);
});
