/**
 * The Request export dialog: a purpose, a title and a preview of exactly what will be
 * frozen (read by the server from disk, as saved, by the same code that sends it).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { requestAPI, ShuyuApiError } from './api';
import {
  ExportPreview,
  ExportTarget,
  humanBytes,
  IExportRequest,
  requestBody,
  shownOutput
} from './model';

/** The dialog's body: the preview, then the title and purpose fields. */
export class ExportForm
  extends Widget
  implements Dialog.IBodyWidget<{ purpose: string; title: string }>
{
  constructor(trans: TranslationBundle) {
    super();
    this.addClass('jp-ShuyuExportForm');
    const preview = document.createElement('div');
    preview.className = 'jp-ShuyuExportForm-preview';
    preview.textContent = trans.__('Reading what will be frozen…');
    const title = document.createElement('input');
    title.type = 'text';
    title.name = 'title';
    title.maxLength = 200;
    const purpose = document.createElement('textarea');
    purpose.name = 'purpose';
    purpose.rows = 3;
    purpose.required = true;
    const error = document.createElement('p');
    error.className = 'jp-ShuyuExportForm-error';
    this.node.append(
      paragraph(
        trans.__(
          'Downloads are switched off in this Shuyu sandbox. Reviewers check what you request; once approved, its watermarked release is yours to download from the Shuyu panel.'
        )
      ),
      heading(trans.__('What will be frozen')),
      preview,
      labelled(trans.__('Title'), title),
      labelled(trans.__('Purpose (required): what the result is for and who receives it'), purpose),
      error
    );
    this.previewNode = preview;
    this.titleInput = title;
    this.purposeInput = purpose;
    this.errorNode = error;
    this.trans = trans;
  }

  /** Show the preview (or why there is none). */
  showPreview(preview: ExportPreview | Error): void {
    const trans = this.trans;
    const node = this.previewNode;
    node.textContent = '';
    if (preview instanceof Error) {
      node.append(errorText(preview.message));
      return;
    }
    if (preview.kind === 'file') {
      node.append(
        paragraph(trans.__('The file %1, %2, as it is on disk now.', preview.path, humanBytes(preview.bytes)))
      );
      return;
    }
    node.append(
      paragraph(trans.__('Cells of %1 as saved on disk:', preview.notebook))
    );
    for (const cell of preview.cells) {
      const box = document.createElement('div');
      box.className = 'jp-ShuyuExportForm-cell';
      box.dataset.index = String(cell.index);
      const label = document.createElement('div');
      label.className = 'jp-ShuyuExportForm-cellLabel';
      label.textContent = trans.__('Cell %1', cell.index + 1);
      const source = document.createElement('pre');
      source.className = 'jp-ShuyuExportForm-source';
      source.textContent = cell.source;
      box.append(label, source);
      for (const output of cell.outputs) {
        const shown = shownOutput(output);
        if ('image' in shown) {
          const img = document.createElement('img');
          img.alt = trans.__('output image');
          img.src = shown.image;
          box.append(img);
        } else {
          const pre = document.createElement('pre');
          pre.className = 'jp-ShuyuExportForm-output';
          pre.textContent = shown.text;
          box.append(pre);
        }
      }
      node.append(box);
    }
  }

  /** The filled-in fields. */
  getValue(): { purpose: string; title: string } {
    return { purpose: this.purposeInput.value, title: this.titleInput.value };
  }

  /** Fill the fields in (with what was typed before a refusal). */
  setValue(value: { purpose: string; title: string }): void {
    this.purposeInput.value = value.purpose;
    this.titleInput.value = value.title;
  }

  /** Say what is wrong, in the dialog. */
  setError(message: string): void {
    this.errorNode.textContent = message;
  }

  private previewNode: HTMLElement;
  private titleInput: HTMLInputElement;
  private purposeInput: HTMLTextAreaElement;
  private errorNode: HTMLElement;
  private trans: TranslationBundle;
}

function paragraph(text: string): HTMLElement {
  const p = document.createElement('p');
  p.textContent = text;
  return p;
}

function heading(text: string): HTMLElement {
  const h = document.createElement('h3');
  h.textContent = text;
  return h;
}

function errorText(text: string): HTMLElement {
  const p = paragraph(text);
  p.className = 'jp-ShuyuExportForm-error';
  return p;
}

function labelled(text: string, field: HTMLElement): HTMLElement {
  const label = document.createElement('label');
  label.className = 'jp-ShuyuExportForm-field';
  label.append(document.createTextNode(text), field);
  return label;
}

/**
 * Ask for the purpose, show the preview, file the request. Resolves to the filed request
 * or null when cancelled; a refusal is shown and the dialog opened again with what was typed.
 */
export async function requestExport(
  target: ExportTarget,
  trans: TranslationBundle
): Promise<IExportRequest | null> {
  const preview = requestAPI<ExportPreview>('exports/preview', { method: 'POST', body: target });
  let typed = { purpose: '', title: '' };
  let error = '';
  for (;;) {
    // A dialog disposes of its body when it closes: each round has a form of its own.
    const form = new ExportForm(trans);
    form.setValue(typed);
    form.setError(error);
    preview.then(
      found => form.showPreview(found),
      (err: Error) => form.showPreview(err)
    );
    const result = await showDialog({
      title: trans.__('Request export'),
      body: form,
      buttons: [
        Dialog.cancelButton({ label: trans.__('Cancel') }),
        Dialog.okButton({ label: trans.__('Submit export request') })
      ],
      focusNodeSelector: 'textarea'
    });
    if (!result.button.accept || result.value === null) {
      return null;
    }
    typed = result.value;
    const checked = requestBody(target, typed.purpose, typed.title);
    if ('error' in checked) {
      error = trans.__(checked.error);
      continue;
    }
    try {
      return await requestAPI<IExportRequest>('exports', { method: 'POST', body: checked.body });
    } catch (err) {
      error = err instanceof ShuyuApiError ? err.message : String(err);
    }
  }
}
