/**
 * The Shuyu side panel: granted views with their fields and expiry, the DP budget per
 * grant as a bar (with what the platform's dry run says a query of a chosen ε would cost),
 * export requests and sealed jobs with
 * their status, reviewers' comments and the released downloads.
 *
 * Each section is a {@link IPanelSection}: a title and a way to fill itself from the
 * server. Sealed jobs are the fourth: status, exit code, duration and their review.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { requestAPI } from './api';
import {
  budgetBar,
  daysLeft,
  humanSeconds,
  IBudget,
  IExportRequest,
  IGrant,
  IJob,
  IQueryPreview,
  jobSeconds,
  previewQuery,
  reviewerComments
} from './model';

/** One section of the panel. */
export interface IPanelSection {
  /** Used as the section's DOM id suffix (`jp-Shuyu-<id>`) and in tests. */
  readonly id: string;
  /** The section's heading, translated. */
  title(trans: TranslationBundle): string;
  /** Fill `node` from the server (it replaces what was there). */
  render(node: HTMLElement, trans: TranslationBundle): Promise<void>;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

function expiry(expires: string | null, trans: TranslationBundle): string {
  const days = daysLeft(expires);
  if (days === null) {
    return trans.__('no expiry');
  }
  return days < 0
    ? trans.__('expired')
    : trans._n('expires %2 (in %1 day)', 'expires %2 (in %1 days)', days, expires!.slice(0, 10));
}

/** Granted views: dataset, scenario, fields, expiry. */
export const viewsSection: IPanelSection = {
  id: 'views',
  title: trans => trans.__('Granted views'),
  async render(node, trans) {
    const { grants } = await requestAPI<{ grants: IGrant[] }>('grants');
    node.textContent = '';
    if (!grants.length) {
      node.append(el('p', 'jp-Shuyu-empty', trans.__('No view is granted to your tenant.')));
      return;
    }
    for (const grant of grants) {
      const item = el('div', 'jp-Shuyu-item jp-Shuyu-grant');
      item.dataset.grant = grant.id;
      item.append(
        el('div', 'jp-Shuyu-itemTitle', `${grant.dataset} · ${grant.scenario}`),
        el('div', 'jp-Shuyu-fields', trans.__('Fields: %1', grant.fields.join(', '))),
        el('div', 'jp-Shuyu-expiry', expiry(grant.expires_at, trans)),
        el(
          'div',
          'jp-Shuyu-path',
          grant.view?.built ? `/data/views/${grant.dataset}.parquet` : trans.__('view not built yet')
        )
      );
      node.append(item);
    }
  }
};

/** The bar of one budget with the cost the platform's dry run gave for a query. */
function drawBar(bar: HTMLElement, budget: IBudget, epsilon: number, fits: boolean): void {
  const parts = budgetBar(budget, epsilon);
  bar.textContent = '';
  bar.setAttribute('role', 'meter');
  bar.setAttribute('aria-valuemin', '0');
  bar.setAttribute('aria-valuemax', String(budget.budget_epsilon));
  bar.setAttribute('aria-valuenow', String(budget.spent_epsilon));
  bar.dataset.spent = String(parts.spent);
  bar.dataset.preview = String(parts.preview);
  const spent = el('span', 'jp-Shuyu-barSpent');
  spent.style.width = `${parts.spent}%`;
  const preview = el('span', fits ? 'jp-Shuyu-barPreview' : 'jp-Shuyu-barPreview jp-mod-over');
  preview.style.width = `${parts.preview}%`;
  bar.append(spent, preview);
}

/**
 * Ask the platform what a query of `epsilon` would cost (its dry run, which spends
 * nothing) and draw it: the ε and what would remain, or the platform's refusal.
 */
export async function previewCost(
  bar: HTMLElement,
  note: HTMLElement,
  budget: IBudget,
  epsilon: number,
  trans: TranslationBundle
): Promise<void> {
  note.dataset.state = 'asking';
  try {
    const answer = await requestAPI<IQueryPreview>('budget/preview', {
      method: 'POST',
      body: previewQuery(budget.dataset, epsilon)
    });
    drawBar(bar, budget, answer.epsilon, true);
    note.textContent = trans.__(
      'A query of ε %1 would leave ε %2.',
      round(answer.epsilon),
      round(answer.after_epsilon)
    );
    note.dataset.state = 'ok';
  } catch (err) {
    drawBar(bar, budget, epsilon, false);
    note.textContent = trans.__('The platform refuses this query: %1', (err as Error).message);
    note.dataset.state = 'refused';
  }
}

/** How long the ε field waits for more typing before asking the platform. */
const PREVIEW_DELAY_MS = 300;

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** DP budget per grant, as bars, with a query-cost preview. */
export const budgetSection: IPanelSection = {
  id: 'budget',
  title: trans => trans.__('Privacy budget (ε)'),
  async render(node, trans) {
    const { budgets } = await requestAPI<{ budgets: IBudget[] }>('budget');
    node.textContent = '';
    if (!budgets.length) {
      node.append(el('p', 'jp-Shuyu-empty', trans.__('No budget: no view is granted.')));
      return;
    }
    for (const budget of budgets) {
      const item = el('div', 'jp-Shuyu-item jp-Shuyu-budget');
      item.dataset.grant = budget.grant;
      item.dataset.dataset = budget.dataset;
      const summary = el(
        'div',
        'jp-Shuyu-budgetSummary',
        trans.__(
          '%1: spent ε %2 of %3, ε %4 left',
          budget.dataset,
          round(budget.spent_epsilon),
          budget.budget_epsilon,
          round(budget.remaining_epsilon)
        )
      );
      const bar = el('div', 'jp-Shuyu-bar');
      const note = el('div', 'jp-Shuyu-barNote');
      const label = el('label', 'jp-Shuyu-queryCost', trans.__('ε of a query: '));
      const input = el('input');
      input.type = 'number';
      input.min = '0';
      input.step = 'any';
      input.value = String(budget.max_epsilon_per_query ?? Math.min(0.1, budget.budget_epsilon));
      let timer = 0;
      input.addEventListener('input', () => {
        window.clearTimeout(timer);
        timer = window.setTimeout(
          () => void previewCost(bar, note, budget, Number(input.value) || 0, trans),
          PREVIEW_DELAY_MS
        );
      });
      label.append(input);
      drawBar(bar, budget, 0, true);
      void previewCost(bar, note, budget, Number(input.value) || 0, trans);
      item.append(summary, bar, label, note);
      node.append(item);
    }
  }
};

/** A request's reviewers' comments and (released, one's own) download links. */
function appendReview(
  item: HTMLElement,
  request: Pick<IExportRequest, 'decisions' | 'downloads'>,
  trans: TranslationBundle
): void {
  for (const decision of reviewerComments(request)) {
    item.append(el('div', 'jp-Shuyu-comment', `${decision.actor}: ${decision.comment}`));
  }
  for (const download of request.downloads) {
    const link = el('a', 'jp-Shuyu-download', trans.__('Download %1', download.name));
    link.href = download.url;
    link.target = '_blank';
    link.rel = 'noopener';
    item.append(link);
  }
}

/** A request's or job's status, in the user's language (its class keeps the name). */
function statusBadge(status: string, trans: TranslationBundle): HTMLElement {
  const badge = el('span', `jp-Shuyu-status jp-Shuyu-status-${status}`, trans.__(status));
  badge.dataset.status = status;
  return badge;
}

/** Export requests: status, reviewers' comments, released downloads. */
export const exportsSection: IPanelSection = {
  id: 'exports',
  title: trans => trans.__('Export requests'),
  async render(node, trans) {
    const { requests, exports_url } = await requestAPI<{
      requests: IExportRequest[];
      exports_url: string;
    }>('exports');
    node.textContent = '';
    if (!requests.length) {
      node.append(el('p', 'jp-Shuyu-empty', trans.__('No export request yet.')));
    }
    for (const request of requests) {
      const item = el('div', 'jp-Shuyu-item jp-Shuyu-request');
      item.dataset.id = request.id;
      const status = statusBadge(request.status, trans);
      const head = el('div', 'jp-Shuyu-itemTitle', `${request.title} `);
      head.append(status);
      item.append(
        head,
        el('div', 'jp-Shuyu-meta', `${request.username} · ${request.created_at.slice(0, 16).replace('T', ' ')} · ${request.id.slice(0, 8)}`)
      );
      appendReview(item, request, trans);
      node.append(item);
    }
    const all = el('a', 'jp-Shuyu-exportsPage', trans.__('All requests on the Exports page'));
    all.href = exports_url;
    all.target = '_blank';
    all.rel = 'noopener';
    node.append(all);
  }
};

/** Sealed jobs: status, exit code, duration, their export request's review and download. */
export const jobsSection: IPanelSection = {
  id: 'jobs',
  title: trans => trans.__('Sealed jobs'),
  async render(node, trans) {
    const { jobs } = await requestAPI<{ jobs: IJob[] }>('jobs');
    node.textContent = '';
    if (!jobs.length) {
      node.append(el('p', 'jp-Shuyu-empty', trans.__('No sealed job yet.')));
      return;
    }
    for (const job of jobs) {
      const item = el('div', 'jp-Shuyu-item jp-Shuyu-job');
      item.dataset.id = job.id;
      item.dataset.status = job.status;
      const head = el('div', 'jp-Shuyu-itemTitle', `${job.entry} `);
      head.append(statusBadge(job.status, trans));
      const seconds = jobSeconds(job);
      const facts = [
        `${job.username} · ${job.created_at.slice(0, 16).replace('T', ' ')} · ${job.id.slice(0, 8)}`,
        job.exit_code === null ? '' : trans.__('exit code %1', job.exit_code),
        seconds === null ? '' : trans.__('ran %1', humanSeconds(seconds))
      ];
      item.append(head, el('div', 'jp-Shuyu-meta', facts.filter(Boolean).join(' · ')));
      if (job.reason) {
        item.append(el('div', 'jp-Shuyu-reason', job.reason));
      }
      if (job.request) {
        const review = el('div', 'jp-Shuyu-jobRequest', trans.__('Export request: '));
        review.append(statusBadge(job.request.status, trans));
        item.append(review);
        appendReview(item, job.request, trans);
      }
      node.append(item);
    }
  }
};

/** The panel's sections, in order. */
export const SECTIONS: IPanelSection[] = [viewsSection, budgetSection, exportsSection, jobsSection];

/** The side panel: a Refresh button and one block per section. */
export class ShuyuPanel extends Widget {
  constructor(
    private trans: TranslationBundle,
    private sections: IPanelSection[] = SECTIONS
  ) {
    super();
    this.id = 'jp-Shuyu-panel';
    this.addClass('jp-ShuyuPanel');
    this.title.caption = trans.__('Shuyu');
    const header = el('div', 'jp-ShuyuPanel-header');
    header.append(el('h2', '', trans.__('Shuyu sandbox')));
    const refresh = el('button', 'jp-Button jp-mod-styled jp-ShuyuPanel-refresh', trans.__('Refresh'));
    refresh.addEventListener('click', () => void this.refresh());
    header.append(refresh);
    this.node.append(header);
    for (const section of sections) {
      const block = el('section', 'jp-ShuyuPanel-section');
      block.id = `jp-Shuyu-${section.id}`;
      block.append(el('h3', '', section.title(trans)));
      const body = el('div', 'jp-ShuyuPanel-body');
      block.append(body);
      this.node.append(block);
      this.bodies.set(section.id, body);
    }
  }

  /**
   * Fill every section again from the server; a failing section says why, the rest go on.
   * Refreshes run one after another, so a later one never races an earlier one's drawing.
   */
  refresh(): Promise<void> {
    this.pending = this.pending.then(() => this.refreshNow());
    return this.pending;
  }

  private async refreshNow(): Promise<void> {
    this.node.dataset.loading = 'true';
    await Promise.all(
      this.sections.map(async section => {
        const body = this.bodies.get(section.id)!;
        try {
          await section.render(body, this.trans);
        } catch (err) {
          body.textContent = '';
          body.append(el('p', 'jp-Shuyu-error', (err as Error).message));
        }
      })
    );
    this.node.dataset.loading = 'false';
    this.node.dataset.refreshed = String(Date.now());
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  private bodies = new Map<string, HTMLElement>();
  private pending: Promise<void> = Promise.resolve();
}
