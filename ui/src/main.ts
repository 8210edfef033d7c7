// The window only shows and asks: every fact comes from a command of the Tauri shell.
import { invoke } from "@tauri-apps/api/core";

/** Mirrors `clawdesk_app::wire::EpisodeRow`. */
interface EpisodeRow {
  id: number;
  task: string;
  app: string | null;
  status: string;
  steps: number;
  startedAtMs: number;
}

/** Mirrors `clawdesk_app::wire::AppInfo`. */
interface AppInfo {
  dataDir: string;
  version: string;
}

/** Mirrors `clawdesk_app::wire::ExportDone`. */
interface ExportDone {
  episodes: number;
  steps: number;
  images: number;
  folder: string;
}

/** Mirrors `clawdesk_app::wire::WireError`. */
interface WireError {
  code: string;
  message: string;
}

const statusLine = document.querySelector<HTMLParagraphElement>("#status")!;
const tbody = document.querySelector<HTMLTableSectionElement>("#episodes tbody")!;

function showError(e: unknown) {
  const err = e as Partial<WireError>;
  statusLine.textContent = err.message ?? String(e);
  statusLine.className = "error";
}

async function refresh() {
  try {
    const rows = await invoke<EpisodeRow[]>("list_episodes", { limit: 200 });
    tbody.replaceChildren(
      ...rows.map((r) => {
        const tr = document.createElement("tr");
        const cells = [
          String(r.id),
          r.task,
          r.app ?? "",
          r.status,
          String(r.steps),
          new Date(r.startedAtMs).toLocaleString(),
        ];
        for (const text of cells) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        return tr;
      }),
    );
    statusLine.textContent = rows.length === 0 ? "No episodes recorded yet." : `${rows.length} episodes`;
    statusLine.className = "";
  } catch (e) {
    showError(e);
  }
}

async function exportTo(kind: "traj" | "chat") {
  const folder = document.querySelector<HTMLInputElement>("#export-folder")!.value.trim();
  const status = document.querySelector<HTMLParagraphElement>("#export-status")!;
  if (folder === "") {
    status.textContent = "Choose a folder to export to.";
    status.className = "error";
    return;
  }
  status.textContent = "Exporting…";
  status.className = "";
  try {
    const done = await invoke<ExportDone>("export_episodes", { kind, folder });
    status.textContent = `Exported ${done.episodes} episodes, ${done.steps} steps and ${done.images} images to ${done.folder}`;
  } catch (e) {
    const err = e as Partial<WireError>;
    status.textContent = err.message ?? String(e);
    status.className = "error";
  }
}

async function start() {
  try {
    const info = await invoke<AppInfo>("app_info");
    document.querySelector("#data-dir")!.textContent = `v${info.version} · data in ${info.dataDir}`;
  } catch (e) {
    showError(e);
  }
  document.querySelector("#refresh")!.addEventListener("click", refresh);
  document.querySelector("#export-traj")!.addEventListener("click", () => exportTo("traj"));
  document.querySelector("#export-chat")!.addEventListener("click", () => exportTo("chat"));
  await refresh();
}

void start();
