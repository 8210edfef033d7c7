// The first run: a person picks the model the agent starts from, then lands on the live view
// in approve-each-step mode.
import { api, errorText, type AppInfo } from "./api";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** Saves `baseModel` over the defaults; returns the problem when the settings refuse it. */
async function choose(baseModel: string): Promise<string | null> {
  const settings = await api.settings();
  settings.baseModel = baseModel;
  const answer = await api.saveSettings(settings);
  if (answer.saved) return null;
  return answer.errors.map((e) => e.message).join("; ");
}

export function initWelcome(info: AppInfo, done: (practice: boolean) => void) {
  if (!info.firstRun) return;
  $<HTMLInputElement>("welcome-hub").value = info.defaultHubModel;
  const status = $("welcome-status");
  const close = (practice: boolean) => {
    $("welcome").hidden = true;
    behind(false);
    done(practice);
  };
  // After a choice is refused (or saving fails, say on a read-only config folder) the person
  // can still go on: with the defaults, unsaved, asked again at the next start.
  const refused = (why: string) => {
    status.textContent = why;
    $("welcome-skip").hidden = false;
  };
  const pick = async (baseModel: string, practice: boolean) => {
    status.textContent = "Saving…";
    try {
      const problem = await choose(baseModel);
      if (problem) {
        refused(problem);
        return;
      }
      close(practice);
    } catch (e) {
      refused(errorText(e));
    }
  };
  $("welcome-skip").addEventListener("click", () => close(false));
  $("welcome-practice").addEventListener("click", () => void pick("practice", true));
  $("welcome-hub-use").addEventListener("click", () => {
    const id = $<HTMLInputElement>("welcome-hub").value.trim();
    void pick(id, false);
  });
  $("welcome-folder-use").addEventListener("click", () => {
    const folder = $<HTMLInputElement>("welcome-folder").value.trim();
    if (folder === "") {
      status.textContent = "Name the folder that holds the model.";
      return;
    }
    void pick(folder, false);
  });
  // A modal dialog keeps the keyboard: Tab and Shift+Tab cycle through its own controls.
  $("welcome").addEventListener("keydown", (ev) => {
    if (ev.key !== "Tab") return;
    const focusable = Array.from(
      $("welcome").querySelectorAll<HTMLElement>("button, input, select, textarea, a[href]"),
    ).filter((e) => !e.hidden && !(e as HTMLButtonElement).disabled);
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (!first || !last) return;
    if (ev.shiftKey && document.activeElement === first) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && document.activeElement === last) {
      ev.preventDefault();
      first.focus();
    }
  });
  behind(true);
  $("welcome").hidden = false;
  $("welcome-practice").focus();
}

/** Makes the pages behind the dialog unreachable (inert) while it is open, or reachable again. */
function behind(inert: boolean) {
  for (const e of document.querySelectorAll<HTMLElement>("body > header, body > main")) {
    e.inert = inert;
  }
}
