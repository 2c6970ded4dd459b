/**
 * What the extension knows and computes, free of JupyterLab widgets so it is unit-tested
 * on its own: the shapes the server's `shuyu/api/*` routes answer with, and the small
 * computations the panel, the dialog and the status bar show.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

/** `GET shuyu/api/context`: whose sandbox this is. */
export interface ISandboxContext {
  tenant: string;
  user: string;
  exports_url: string;
}

/** One granted view (`GET shuyu/api/grants`, from the platform's `api/grants`). */
export interface IGrant {
  id: string;
  dataset: string;
  scenario: string;
  fields: string[];
  expires_at: string | null;
  budget_epsilon?: number;
  view?: { built: boolean; bytes?: number; modified?: number };
}

/** One DP budget account (`GET shuyu/api/budget`). */
export interface IBudget {
  grant: string;
  dataset: string;
  scenario: string;
  budget_epsilon: number;
  spent_epsilon: number;
  remaining_epsilon: number;
  expires_at: string | null;
  max_epsilon_per_query?: number;
}

/** A reviewer's (or the platform's) step on a request. */
export interface IDecision {
  actor: string;
  action: string;
  from: string | null;
  to: string;
  comment: string | null;
  at: string;
}

/** One export request as the panel lists it (`GET shuyu/api/exports`). */
export interface IExportRequest {
  id: string;
  username: string;
  title: string;
  status: string;
  verdict: string | null;
  created_at: string;
  decisions?: IDecision[];
  downloads: { name: string; url: string }[];
}

/** What an export request sends: chosen cells of a saved notebook, or a file. */
export type ExportTarget =
  | { notebook: string; cells: number[] }
  | { file: string };

/** One output of a previewed cell, as nbformat stores it. */
export interface IOutput {
  output_type: string;
  text?: string | string[];
  name?: string;
  ename?: string;
  evalue?: string;
  data?: Record<string, string | string[]>;
}

/** `POST shuyu/api/exports/preview`: exactly what filing would send. */
export type ExportPreview =
  | {
      kind: 'cells';
      notebook: string;
      cells: { index: number; source: string; outputs: IOutput[] }[];
    }
  | { kind: 'file'; path: string; bytes: number };

/** How one output is shown in the preview: text, or an image by its data URL. */
export type ShownOutput = { text: string } | { image: string };

/** Characters of one text output the preview shows. */
export const SHOWN_TEXT = 4000;

function joined(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join('') : value ?? '';
}

/**
 * An output as the preview shows it: streams and errors as text, PNG/JPEG as images,
 * anything else (HTML included) by its plain-text form, never rendered.
 */
export function shownOutput(output: IOutput): ShownOutput {
  if (output.output_type === 'stream') {
    return { text: joined(output.text).slice(0, SHOWN_TEXT) };
  }
  if (output.output_type === 'error') {
    return { text: `${output.ename}: ${output.evalue}` };
  }
  const data = output.data ?? {};
  for (const mime of ['image/png', 'image/jpeg']) {
    if (mime in data) {
      const base64 = joined(data[mime]).replace(/\n/g, '');
      return { image: `data:${mime};base64,${base64}` };
    }
  }
  const plain = data['text/plain'];
  return { text: plain === undefined ? '(no plain-text form)' : joined(plain).slice(0, SHOWN_TEXT) };
}

/** The export target of chosen cells: their indices, in notebook order, each once. */
export function cellsTarget(notebook: string, indices: Iterable<number>): ExportTarget {
  const cells = Array.from(new Set(indices)).sort((a, b) => a - b);
  return { notebook, cells };
}

/** The body of `POST shuyu/api/exports`, or an error message for the dialog. */
export function requestBody(
  target: ExportTarget,
  purpose: string,
  title: string
): { body: Record<string, unknown> } | { error: string } {
  if (!purpose.trim()) {
    return { error: 'An export request needs a purpose statement.' };
  }
  if ('notebook' in target && target.cells.length === 0) {
    return { error: 'Choose at least one cell.' };
  }
  return { body: { ...target, purpose: purpose.trim(), title: title.trim() } };
}

/** The widths (percent of the grant's budget) of a budget bar's three parts. */
export interface IBarParts {
  spent: number;
  preview: number;
  free: number;
  /** The query's ε as it would be spent: capped by the per-query limit. */
  cost: number;
  /** Whether the remaining budget covers the query. */
  fits: boolean;
}

/**
 * A grant's budget bar: what is spent, what a query of `epsilon` would spend (pure ε,
 * sequential composition: its ε, as long as it is within the per-query limit), and
 * what stays free.
 */
export function budgetBar(budget: IBudget, epsilon = 0): IBarParts {
  const total = budget.budget_epsilon;
  if (!(total > 0)) {
    return { spent: 100, preview: 0, free: 0, cost: 0, fits: false };
  }
  const limit = budget.max_epsilon_per_query ?? Infinity;
  const cost = Math.max(0, Math.min(epsilon, limit));
  const spentEps = Math.min(budget.spent_epsilon, total);
  const fits = cost <= budget.remaining_epsilon + 1e-12;
  const previewEps = Math.min(cost, Math.max(total - spentEps, 0));
  const pct = (x: number) => Math.round((x / total) * 10000) / 100;
  const spent = pct(spentEps);
  const preview = pct(previewEps);
  return { spent, preview, free: Math.max(0, 100 - spent - preview), cost, fits };
}

/** A time the platform sends (ISO text, UTC when it names no zone) in milliseconds. */
function parsedTime(iso: string): number {
  return Date.parse(iso.endsWith('Z') || /[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);
}

/** Days left before `expires` (ISO text) at `now`; null when it never expires. */
export function daysLeft(expires: string | null, now: Date = new Date()): number | null {
  if (!expires) {
    return null;
  }
  const ms = parsedTime(expires) - now.getTime();
  return Math.floor(ms / 86_400_000);
}

/** Bytes in words: 1.2 MB, 340 kB, 12 B. */
export function humanBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} ${units[0]}` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Reviewers' comments of a request, oldest first (the platform's own steps left out). */
export function reviewerComments(request: Pick<IExportRequest, 'decisions'>): IDecision[] {
  return (request.decisions ?? []).filter(d => d.actor !== 'platform' && !!d.comment);
}

/** A sealed job's export request, as the jobs section shows it. */
export interface IJobRequest {
  id: string;
  status: string;
  decisions: IDecision[];
  downloads: { name: string; url: string }[];
}

/** One sealed job (`GET shuyu/api/jobs`, from the platform's `api/jobs`). */
export interface IJob {
  id: string;
  username: string;
  entry: string;
  status: string;
  exit_code: number | null;
  reason: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  request_id: string | null;
  request?: IJobRequest;
}

/** Seconds a job ran (to `now` while it runs); null before it started. */
export function jobSeconds(job: IJob, now: Date = new Date()): number | null {
  if (!job.started_at) {
    return null;
  }
  const end = job.ended_at ? parsedTime(job.ended_at) : now.getTime();
  return Math.max(0, Math.round((end - parsedTime(job.started_at)) / 1000));
}

/** A duration in words: 42 s, 3 min 5 s, 2 h 10 min. */
export function humanSeconds(seconds: number): string {
  if (seconds < 60) {
    return `${seconds} s`;
  }
  if (seconds < 3600) {
    const s = seconds % 60;
    return s ? `${Math.floor(seconds / 60)} min ${s} s` : `${seconds / 60} min`;
  }
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

/** `GET shuyu/api/volume`: the user's own output today and the daily cap (bytes). */
export interface IVolume {
  username: string;
  day: string;
  bytes: number;
  cap_bytes: number;
}

/** Today's output as a share of the cap (0-100; 0 when there is no cap). */
export function volumeShare(volume: IVolume): number {
  return volume.cap_bytes > 0 ? Math.min(100, Math.round((volume.bytes / volume.cap_bytes) * 100)) : 0;
}

/** `POST shuyu/api/budget/preview`: the platform's dry run of a query. */
export interface IQueryPreview {
  dataset: string;
  epsilon: number;
  remaining_epsilon: number;
  after_epsilon: number;
}

/** The dry-run body for a one-count query of `epsilon` on `dataset` (spends nothing). */
export function previewQuery(dataset: string, epsilon: number): Record<string, unknown> {
  return { dataset, epsilon, statistics: { n: { fn: 'count' } } };
}

/** "Output today 1.2 MB / 100.0 MB" in the user's language. */
export function volumeText(volume: IVolume, trans: TranslationBundle): string {
  return volume.cap_bytes > 0
    ? trans.__('Output today %1 / %2', humanBytes(volume.bytes), humanBytes(volume.cap_bytes))
    : trans.__('Output today %1', humanBytes(volume.bytes));
}
