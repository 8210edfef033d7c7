// The window only shows and asks: every fact comes from a command of the Tauri shell.
import "./locale";
import "./style.css";
import { api, errorText } from "./api";
import { initAdapters, refreshAdapters } from "./adapters";
import { initLive } from "./live";
import { initSettings, openSettings } from "./settings";
import { initTimeline, openTimeline } from "./timeline";
import { showTraining } from "./training";
import { initWelcome } from "./welcome";

const PAGES = ["live", "timeline", "training", "adapters", "settings"] as const;
type Page = (typeof PAGES)[number];

function show(page: Page) {
  for (const p of PAGES) {
    document.getElementById(`page-${p}`)!.hidden = p !== page;
    document.getElementById(`tab-${p}`)!.setAttribute("aria-selected", String(p === page));
  }
  showTraining(page === "training");
  if (page === "timeline") void openTimeline();
  if (page === "adapters") void refreshAdapters();
  if (page === "settings") void openSettings();
}

async function start() {
  for (const p of PAGES) {
    document.getElementById(`tab-${p}`)!.addEventListener("click", () => show(p));
  }
  initTimeline();
  initSettings();
  try {
    const info = await api.appInfo();
    document.querySelector("#data-dir")!.textContent = `v${info.version} · data in ${info.dataDir}`;
    initWelcome(info, (practice) => {
      show("live");
      const line = document.getElementById("live-state")!;
      line.textContent = practice
        ? "Press Practise to open a practice task; the agent waits for your approval at each step."
        : "Write an instruction and press Start; the agent waits for your approval at each step.";
      document.getElementById(practice ? "practice-start" : "instruction")!.focus();
    });
  } catch (e) {
    document.querySelector("#data-dir")!.textContent = errorText(e);
  }
  // Event listeners are registered in the background; a failure is shown, not waited on.
  Promise.all([initLive(), initAdapters()]).catch((e) => {
    document.body.dataset.error = errorText(e);
  });
  (window as unknown as { showPage: typeof show }).showPage = show;
  document.body.dataset.ready = "true";
}

void start();
