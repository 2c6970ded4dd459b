/** Unit tests of the extension's logic: previews, request bodies, budget bars, labels. */
import * as fs from 'fs';
import * as path from 'path';

import {
  budgetBar,
  cellsTarget,
  daysLeft,
  humanBytes,
  humanSeconds,
  IBudget,
  IExportRequest,
  IJob,
  jobSeconds,
  previewQuery,
  requestBody,
  reviewerComments,
  shownOutput,
  volumeShare,
  volumeText
} from '../model';

const budget = (over: Partial<IBudget> = {}): IBudget => ({
  grant: 'g1',
  dataset: 'claims',
  scenario: 'pricing',
  budget_epsilon: 2,
  spent_epsilon: 0.5,
  remaining_epsilon: 1.5,
  expires_at: null,
  max_epsilon_per_query: 0.25,
  ...over
});

describe('shownOutput', () => {
  it('shows streams as text, cut to the shown length', () => {
    expect(shownOutput({ output_type: 'stream', text: ['a\n', 'b'] })).toEqual({ text: 'a\nb' });
    const long = shownOutput({ output_type: 'stream', text: 'x'.repeat(5000) });
    expect('text' in long && long.text.length).toBe(4000);
  });
  it('shows errors by name and value', () => {
    expect(shownOutput({ output_type: 'error', ename: 'KeyError', evalue: "'x'" })).toEqual({
      text: "KeyError: 'x'"
    });
  });
  it('shows PNG images by data URL, without line breaks', () => {
    const shown = shownOutput({
      output_type: 'display_data',
      data: { 'image/png': 'iVBO\nRw0K', 'text/plain': '<Figure>' }
    });
    expect(shown).toEqual({ image: 'data:image/png;base64,iVBORw0K' });
  });
  it('never renders HTML: it shows the plain-text form', () => {
    const shown = shownOutput({
      output_type: 'execute_result',
      data: { 'text/html': '<script>alert(1)</script>', 'text/plain': 'table' }
    });
    expect(shown).toEqual({ text: 'table' });
    expect(shownOutput({ output_type: 'execute_result', data: { 'text/html': '<b>' } })).toEqual({
      text: '(no plain-text form)'
    });
  });
});

describe('cellsTarget and requestBody', () => {
  it('sends each chosen cell once, in notebook order', () => {
    expect(cellsTarget('a.ipynb', [3, 1, 3])).toEqual({ notebook: 'a.ipynb', cells: [1, 3] });
  });
  it('needs a purpose and at least one cell', () => {
    expect(requestBody(cellsTarget('a.ipynb', [1]), '  ', 't')).toEqual({
      error: 'An export request needs a purpose statement.'
    });
    expect(requestBody(cellsTarget('a.ipynb', []), 'why', '')).toEqual({
      error: 'Choose at least one cell.'
    });
  });
  it('trims the purpose and title', () => {
    expect(requestBody({ file: 'r.csv' }, ' pricing ', ' T ')).toEqual({
      body: { file: 'r.csv', purpose: 'pricing', title: 'T' }
    });
  });
});

describe('budgetBar', () => {
  it('shows spent and previewed parts as percentages of the budget', () => {
    expect(budgetBar(budget(), 0.2)).toEqual({
      spent: 25,
      preview: 10,
      free: 65,
      cost: 0.2,
      fits: true
    });
  });
  it('caps the cost at the per-query limit', () => {
    expect(budgetBar(budget(), 1).cost).toBe(0.25);
  });
  it('says when a query does not fit, and never draws past the end', () => {
    const parts = budgetBar(budget({ spent_epsilon: 1.9, remaining_epsilon: 0.1 }), 0.2);
    expect(parts.fits).toBe(false);
    expect(parts.spent + parts.preview + parts.free).toBeCloseTo(100);
    expect(parts.preview).toBe(5);
  });
  it('moves when budget is spent', () => {
    const before = budgetBar(budget()).spent;
    const after = budgetBar(budget({ spent_epsilon: 0.75, remaining_epsilon: 1.25 })).spent;
    expect(after).toBeGreaterThan(before);
  });
  it('draws an empty budget as used up', () => {
    expect(budgetBar(budget({ budget_epsilon: 0 }), 0.1)).toMatchObject({ spent: 100, fits: false });
  });
});

describe('small helpers', () => {
  it('counts days left', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    expect(daysLeft('2026-01-11T00:00:00', now)).toBe(10);
    expect(daysLeft('2025-12-31T00:00:00+00:00', now)).toBe(-1);
    expect(daysLeft(null, now)).toBeNull();
  });
  it('writes sizes in words', () => {
    expect(humanBytes(12)).toBe('12 B');
    expect(humanBytes(1_234_567)).toBe('1.2 MB');
  });
  it('keeps reviewers comments, not the platform steps', () => {
    const request = {
      decisions: [
        { actor: 'platform', action: 'release', from: 'approved', to: 'released', comment: '', at: '' },
        { actor: 'rita', action: 'approve', from: 'submitted', to: 'approved', comment: 'ok', at: '' },
        { actor: 'rita', action: 'claim', from: 'submitted', to: 'submitted', comment: null, at: '' }
      ]
    } as unknown as IExportRequest;
    expect(reviewerComments(request).map(d => d.comment)).toEqual(['ok']);
  });
});

describe('Chinese labels', () => {
  const src = path.resolve(__dirname, '..');
  const locale = JSON.parse(
    fs.readFileSync(
      path.resolve(src, '../../extensions/shuyu_server/locale/zh_CN/LC_MESSAGES/shuyu_lab.json'),
      'utf-8'
    )
  );
  const labels = new Set<string>();
  for (const name of fs.readdirSync(src).filter((n: string) => n.endsWith('.ts'))) {
    const text: string = fs.readFileSync(path.join(src, name), 'utf-8');
    for (const m of text.matchAll(/trans\.(?:__|_n)\(\s*'((?:[^'\\]|\\.)*)'/g)) {
      labels.add(m[1]);
    }
  }
  // requestBody's messages are translated where the dialog shows them.
  labels.add('An export request needs a purpose statement.');
  labels.add('Choose at least one cell.');

  it('has a Chinese translation of every label', () => {
    expect(labels.size).toBeGreaterThan(30);
    const missing = [...labels].filter(label => !(label in locale));
    expect(missing).toEqual([]);
  });
  it('keeps every placeholder of a label in its translation', () => {
    for (const label of labels) {
      const wanted = (label.match(/%\d/g) ?? []).sort();
      expect([(locale[label][0].match(/%\d/g) ?? []).sort(), label]).toEqual([wanted, label]);
    }
  });
});

describe('sealed jobs', () => {
  const job = (over: Partial<IJob> = {}): IJob => ({
    id: 'a'.repeat(32),
    username: 'alice',
    entry: 'run.py',
    status: 'succeeded',
    exit_code: 0,
    reason: null,
    created_at: '2026-11-30T10:00:00',
    started_at: '2026-11-30T10:00:05',
    ended_at: '2026-11-30T10:03:10',
    request_id: null,
    ...over
  });
  it('measures a finished job from start to end (UTC when no zone is named)', () => {
    expect(jobSeconds(job())).toBe(185);
  });
  it('measures a running job to now, and has no duration before it starts', () => {
    const now = new Date('2026-11-30T10:00:35Z');
    expect(jobSeconds(job({ status: 'running', ended_at: null }), now)).toBe(30);
    expect(jobSeconds(job({ status: 'queued', started_at: null, ended_at: null }))).toBeNull();
  });
  it('says durations in words', () => {
    expect(humanSeconds(42)).toBe('42 s');
    expect(humanSeconds(185)).toBe('3 min 5 s');
    expect(humanSeconds(120)).toBe('2 min');
    expect(humanSeconds(7800)).toBe('2 h 10 min');
  });
});

describe('output today', () => {
  const trans = { __: (text: string, ...args: unknown[]) =>
    args.reduce<string>((out, arg, i) => out.replace(`%${i + 1}`, String(arg)), text) } as any;
  const volume = { username: 'alice', day: '2026-11-30', bytes: 1_250_000, cap_bytes: 100_000_000 };
  it('shows the volume against the cap', () => {
    expect(volumeText(volume, trans)).toBe('Output today 1.3 MB / 100.0 MB');
    expect(volumeShare(volume)).toBe(1);
  });
  it('shows the volume alone when there is no cap, and caps the share at 100', () => {
    expect(volumeText({ ...volume, cap_bytes: 0 }, trans)).toBe('Output today 1.3 MB');
    expect(volumeShare({ ...volume, cap_bytes: 0 })).toBe(0);
    expect(volumeShare({ ...volume, bytes: 5e8 })).toBe(100);
  });
});

describe('previewQuery', () => {
  it('asks the platform for a one-count dry run of the chosen ε', () => {
    expect(previewQuery('claims', 0.2)).toEqual({
      dataset: 'claims',
      epsilon: 0.2,
      statistics: { n: { fn: 'count' } }
    });
  });
});
