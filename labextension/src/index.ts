/**
 * Shuyu (数域) in JupyterLab.
 *
 * - **Request export** on the notebook toolbar, the cell context menu (the selected
 *   cells), the file browser's context menu (a file) and the File menu, opening a dialog
 *   with a purpose and a preview of exactly what will be frozen.
 * - JupyterLab's Download and Export-as: their plugins are disabled (this package's
 *   `jupyterlab.disabledExtensions`) and their command IDs lead to Request export.
 * - The Shuyu side panel (granted views, DP budget bars with the platform's cost
 *   preview, export requests, sealed jobs) and a status-bar item naming the sandbox's
 *   tenant and the day's output against the daily cap.
 *
 * Every label goes through the `shuyu_lab` translation domain (English source strings;
 * Chinese in the Python package's `locale/zh_CN/LC_MESSAGES/shuyu_lab.json`).
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ToolbarButton } from '@jupyterlab/apputils';
import { IDocumentWidget } from '@jupyterlab/docregistry';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator, nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { requestAPI } from './api';
import { requestExport } from './dialog';
import {
  cellsTarget,
  ExportTarget,
  ISandboxContext,
  IVolume,
  volumeShare,
  volumeText
} from './model';
import { ShuyuPanel } from './panel';

/** The extension's translation domain (also the locale file's and entry point's name); with
 * an underscore, as JupyterLab turns '-' in a domain into '_' before looking it up. */
export const DOMAIN = 'shuyu_lab';

/** Command IDs: Shuyu's own, and JupyterLab's download/export ones taken over. */
export namespace CommandIDs {
  export const requestExport = 'shuyu:request-export';
  export const requestExportCells = 'shuyu:request-export-cells';
  export const requestExportFile = 'shuyu:request-export-file';
  export const openPanel = 'shuyu:open-panel';
  /** JupyterLab's commands whose plugins this extension disables and replaces. */
  export const takenOver = [
    'docmanager:download',
    'filebrowser:download',
    'filebrowser:copy-download-link',
    'notebook:export-to-format'
  ];
}

/** How often the status bar reads the day's output again. */
const VOLUME_REFRESH_MS = 60_000;
/** From this share of the daily cap on, the status bar's volume is marked. */
const VOLUME_WARN_PERCENT = 80;

const shuyuIcon = new LabIcon({
  name: 'shuyu-lab:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><g class="jp-icon3" fill="#616161">' +
    '<path d="M8 1 2 3.5v4C2 11 4.6 14 8 15c3.4-1 6-4 6-7.5v-4L8 1zm0 2 4 1.7v2.8c0 2.6-1.8 4.9-4 5.6-2.2-.7-4-3-4-5.6V4.7L8 3z"/>' +
    '<path d="M7.3 5h1.4v3.2l1.5-1.5 1 1L8 10.9 4.8 7.7l1-1 1.5 1.5z"/></g></svg>'
});

/** The indices of a notebook's selected cells (the active cell when none is selected). */
function selectedCells(panel: NotebookPanel): number[] {
  const notebook = panel.content;
  const chosen: number[] = [];
  notebook.widgets.forEach((cell, index) => {
    if (notebook.isSelectedOrActive(cell)) {
      chosen.push(index);
    }
  });
  return chosen;
}

/** Every cell of a notebook (File ▸ Download and Export-as send the whole notebook). */
function allCells(panel: NotebookPanel): number[] {
  return panel.content.widgets.map((_, index) => index);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'shuyu-lab:plugin',
  description: 'Request export, the Shuyu panel and the sandbox status item.',
  autoStart: true,
  optional: [ITranslator, INotebookTracker, IDefaultFileBrowser, ILabShell, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    translator: ITranslator | null,
    notebooks: INotebookTracker | null,
    browser: IDefaultFileBrowser | null,
    labShell: ILabShell | null,
    statusBar: IStatusBar | null
  ) => {
    const trans: TranslationBundle = (translator ?? nullTranslator).load(DOMAIN);
    const { commands } = app;

    const panel = new ShuyuPanel(trans);
    panel.title.icon = shuyuIcon;
    app.shell.add(panel, 'right', { rank: 50 });

    /** File the request for `target`, then show it in the panel. */
    const file = async (target: ExportTarget): Promise<void> => {
      const filed = await requestExport(target, trans);
      if (filed) {
        await commands.execute(CommandIDs.openPanel);
      }
    };

    /** A notebook's cells as saved: save first, so the preview is what the screen shows. */
    const notebookTarget = async (
      nb: NotebookPanel,
      cells: number[]
    ): Promise<ExportTarget> => {
      if (nb.context.model.dirty) {
        await nb.context.save();
      }
      return cellsTarget(nb.context.path, cells);
    };

    /** The document in the main area: a notebook (its cells) or another file. */
    const currentTarget = async (whole: boolean): Promise<ExportTarget | null> => {
      const nb = notebooks?.currentWidget;
      if (nb && (!labShell || labShell.currentWidget === nb)) {
        return notebookTarget(nb, whole ? allCells(nb) : selectedCells(nb));
      }
      const widget = app.shell.currentWidget as Partial<IDocumentWidget> | null;
      const context = widget?.context;
      if (context?.path) {
        if (context.model?.dirty) {
          await context.save();
        }
        return { file: context.path };
      }
      return null;
    };

    /** The file browser's selected item: a notebook (all its cells, as saved) or a file. */
    const browserTarget = async (): Promise<ExportTarget | null> => {
      const first = browser?.selectedItems().next();
      const model = first && !first.done ? first.value : null;
      if (!model || model.type === 'directory') {
        return null;
      }
      if (model.type !== 'notebook') {
        return { file: model.path };
      }
      const saved = await app.serviceManager.contents.get(model.path, { content: true });
      const cells: unknown[] = (saved.content as { cells?: unknown[] })?.cells ?? [];
      return cellsTarget(model.path, cells.map((_, index) => index));
    };

    commands.addCommand(CommandIDs.requestExportCells, {
      label: trans.__('Request export of selected cells…'),
      caption: trans.__('Ask reviewers to release the selected cells with their outputs'),
      icon: shuyuIcon,
      isEnabled: () => !!notebooks?.currentWidget,
      execute: async () => {
        const nb = notebooks?.currentWidget;
        if (nb) {
          await file(await notebookTarget(nb, selectedCells(nb)));
        }
      }
    });

    commands.addCommand(CommandIDs.requestExport, {
      label: trans.__('Request export…'),
      caption: trans.__('Downloads are off in Shuyu: ask reviewers to release this'),
      icon: shuyuIcon,
      execute: async () => {
        const target = await currentTarget(false);
        if (target) {
          await file(target);
        } else {
          app.shell.activateById(panel.id);
        }
      }
    });

    commands.addCommand(CommandIDs.requestExportFile, {
      label: trans.__('Request export…'),
      caption: trans.__('Ask reviewers to release this file'),
      icon: shuyuIcon,
      execute: async () => {
        const target = await browserTarget();
        if (target) {
          await file(target);
        }
      }
    });

    // JupyterLab's Download / Export-as commands: same IDs, now leading to Request export
    // (their plugins are disabled, so the menus, palette and shortcuts that name them land here).
    const [download, browserDownload, copyLink, exportAs] = CommandIDs.takenOver;
    commands.addCommand(download, {
      label: trans.__('Download → Request export…'),
      caption: trans.__('Downloads are off in Shuyu: ask reviewers to release this'),
      icon: shuyuIcon,
      execute: async () => {
        const target = await currentTarget(true);
        if (target) {
          await file(target);
        }
      }
    });
    for (const id of [browserDownload, copyLink]) {
      commands.addCommand(id, {
        label: trans.__('Download → Request export…'),
        caption: trans.__('Downloads are off in Shuyu: ask reviewers to release this file'),
        icon: shuyuIcon,
        execute: () => commands.execute(CommandIDs.requestExportFile)
      });
    }
    commands.addCommand(exportAs, {
      label: trans.__('Export Notebook → Request export…'),
      caption: trans.__('Exports are reviewed in Shuyu: ask reviewers to release this notebook'),
      icon: shuyuIcon,
      execute: async () => {
        const target = await currentTarget(true);
        if (target) {
          await file(target);
        }
      }
    });

    commands.addCommand(CommandIDs.openPanel, {
      label: trans.__('Open the Shuyu panel'),
      icon: shuyuIcon,
      execute: () => {
        if (panel.isVisible) {
          void panel.refresh();
        } else {
          app.shell.activateById(panel.id); // showing it refreshes it
        }
      }
    });

    // The notebook toolbar button (requests the selected cells).
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (nb: NotebookPanel) => {
        const button = new ToolbarButton({
          className: 'jp-ShuyuRequestExportButton',
          icon: shuyuIcon,
          label: trans.__('Request export'),
          tooltip: trans.__('Request export of the selected cells'),
          onClick: () => {
            void notebookTarget(nb, selectedCells(nb)).then(file);
          }
        });
        nb.toolbar.insertItem(10, 'shuyu-request-export', button);
        return button;
      }
    });

    // Context menus: selected cells of a notebook; a file of the file browser.
    app.contextMenu.addItem({
      command: CommandIDs.requestExportCells,
      selector: '.jp-Notebook .jp-Cell',
      rank: 0
    });
    app.contextMenu.addItem({
      command: CommandIDs.requestExportFile,
      selector: '.jp-DirListing-item[data-isdir="false"]',
      rank: 9
    });

    // The status bar: whose sandbox this is, and the day's output.
    if (statusBar) {
      const item = new Widget();
      item.addClass('jp-ShuyuStatus');
      item.node.title = trans.__('Open the Shuyu panel');
      item.node.addEventListener('click', () => void commands.execute(CommandIDs.openPanel));
      statusBar.registerStatusItem('shuyu-lab:status', {
        item,
        align: 'left',
        rank: -1
      });
      const tenant = item.node.appendChild(document.createElement('span'));
      tenant.className = 'jp-ShuyuStatus-tenant';
      tenant.textContent = trans.__('Shuyu sandbox');
      const volume = item.node.appendChild(document.createElement('span'));
      volume.className = 'jp-ShuyuStatus-volume';
      requestAPI<ISandboxContext>('context').then(
        context => {
          tenant.textContent = context.tenant
            ? trans.__('Shuyu sandbox · tenant %1', context.tenant)
            : trans.__('Shuyu sandbox');
        },
        () => undefined
      );
      // The day's output against the daily cap, the gateway's meter (read every minute).
      const showVolume = () =>
        requestAPI<IVolume>('volume').then(
          answer => {
            volume.textContent = ` · ${volumeText(answer, trans)}`;
            volume.dataset.bytes = String(answer.bytes);
            volume.dataset.share = String(volumeShare(answer));
            volume.classList.toggle('jp-mod-warn', volumeShare(answer) >= VOLUME_WARN_PERCENT);
          },
          () => undefined
        );
      void showVolume();
      window.setInterval(() => void showVolume(), VOLUME_REFRESH_MS);
    }
  }
};

export default plugin;
