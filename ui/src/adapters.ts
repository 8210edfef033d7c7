// Adapter versions: activate or roll back, export as a PEFT folder with progress and the
// commands that load it; and the episode exports.
import { listen } from "@tauri-apps/api/event";
import { api, errorText } from "./api";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const fixed = (v: number | null, digits: number) => (v === null ? "–" : v.toFixed(digits));

export async function refreshAdapters() {
  const status = $("export-adapter-status");
  try {
    const rows = await api.adapters();
    $("adapters").querySelector("tbody")!.replaceChildren(
      ...rows.map((a) => {
        const tr = document.createElement("tr");
        const cells = [
          `v${a.version}`,
          fixed(a.loss, 4),
          fixed(a.meanReward, 2),
          a.gymScore === null ? "–" : `${Math.round(a.gymScore * 100)}%`,
          new Date(a.createdAtMs).toLocaleString(),
          a.active ? "active" : "",
        ];
        for (const text of cells) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        const td = document.createElement("td");
        const use = document.createElement("button");
        use.type = "button";
        use.textContent = `Serve v${a.version}`;
        use.disabled = a.active;
        use.addEventListener("click", async () => {
          try {
            await api.activate(a.version);
            await refreshAdapters();
          } catch (e) {
            status.textContent = errorText(e);
          }
        });
        td.append(use);
        tr.append(td);
        return tr;
      }),
    );
    const version = $<HTMLInputElement>("export-version");
    if (version.value === "" && rows.length > 0) version.value = String(rows[rows.length - 1].version);
  } catch (e) {
    status.textContent = errorText(e);
  }
}

async function exportEpisodes(kind: "traj" | "chat" | "trl" | "verl") {
  const folder = $<HTMLInputElement>("export-folder").value.trim();
  const status = $("export-status");
  status.className = "";
  if (folder === "") {
    status.textContent = "Choose a folder to export to.";
    status.className = "error";
    return;
  }
  status.textContent = "Exporting…";
  try {
    const done = await api.exportEpisodes(kind, folder);
    status.textContent = `Exported ${done.episodes} episodes, ${done.steps} steps and ${done.images} images to ${done.folder}`;
  } catch (e) {
    status.textContent = errorText(e);
    status.className = "error";
  }
}

export async function initAdapters() {
  const bar = $<HTMLProgressElement>("export-adapter-progress");
  await listen<{ done: number; total: number }>("export-progress", (e) => {
    bar.max = Math.max(e.payload.total, 1);
    bar.value = e.payload.done;
  });
  $("use-base").addEventListener("click", async () => {
    await api.activate(null).catch((e) => ($("export-adapter-status").textContent = errorText(e)));
    await refreshAdapters();
  });
  $("export-adapter").addEventListener("click", async () => {
    const status = $("export-adapter-status");
    const commands = $("export-adapter-commands");
    const version = Number($<HTMLInputElement>("export-version").value);
    const folder = $<HTMLInputElement>("export-adapter-folder").value.trim();
    status.className = "";
    if (!version || folder === "") {
      status.textContent = "Choose a version and a folder.";
      status.className = "error";
      return;
    }
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Exporting…";
    try {
      const done = await api.exportAdapter(version, folder);
      status.textContent = `Exported v${done.version} to ${done.folder}: ${done.files.join(", ")} (${done.bytes} bytes)`;
      commands.textContent = `# HF PEFT (Python)\n${done.peftCommand}\n\n# vLLM\n${done.vllmCommand}`;
      commands.hidden = false;
    } catch (e) {
      status.textContent = errorText(e);
      status.className = "error";
    }
  });
  $("export-traj").addEventListener("click", () => exportEpisodes("traj"));
  $("export-chat").addEventListener("click", () => exportEpisodes("chat"));
  $("export-trl").addEventListener("click", () => exportEpisodes("trl"));
  $("export-verl").addEventListener("click", () => exportEpisodes("verl"));
}
