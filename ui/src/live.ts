// The live view: the agent's screen with its next action drawn on it, the controls, and the
// approval card (Approve with Enter, Reject with Esc, Edit by dragging the marker or changing
// the text).
import { listen } from "@tauri-apps/api/event";
import {
  api,
  blobUrl,
  errorText,
  liveUrl,
  type DeskEvent,
  type NormPoint,
  type PracticeTask,
} from "./api";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

type Approval = Extract<DeskEvent, { kind: "approval" }>;

let pending: Approval | null = null;
/** Where the person moved the marker to (normalised), when they did. */
let moved: NormPoint | null = null;
let paused = false;
let running = false;

function setRunning(on: boolean) {
  running = on;
  $<HTMLButtonElement>("agent-start").disabled = on;
  $<HTMLButtonElement>("practice-start").disabled = on;
  $<HTMLButtonElement>("agent-pause").disabled = !on;
  $<HTMLButtonElement>("agent-stop").disabled = !on;
  $("stop-key-hint").hidden = !on;
}

function status(text: string, error = false) {
  const line = $("live-state");
  line.textContent = text;
  line.className = error ? "error" : "";
}

function pointOf(action: Record<string, unknown>): NormPoint | null {
  const at = (action.at ?? action.from) as NormPoint | undefined;
  return at && typeof at.x === "number" ? at : null;
}

function drawMarker(at: NormPoint | null) {
  const marker = $("live-marker");
  marker.hidden = at === null;
  if (at) {
    marker.style.left = `${at.x * 100}%`;
    marker.style.top = `${at.y * 100}%`;
  }
}

function drawDrag(action: Record<string, unknown> | null) {
  const svg = $("live-drag") as unknown as SVGSVGElement;
  const from = action?.from as NormPoint | undefined;
  const to = action?.to as NormPoint | undefined;
  if (!from || !to) {
    svg.setAttribute("hidden", "");
    return;
  }
  svg.removeAttribute("hidden");
  svg.setAttribute("viewBox", "0 0 1000 1000");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.innerHTML = `<line x1="${from.x * 1000}" y1="${from.y * 1000}" x2="${to.x * 1000}" y2="${to.y * 1000}" />`;
}

function showFrame(seq: number) {
  const img = $<HTMLImageElement>("live-frame");
  img.src = liveUrl(seq);
  img.hidden = false;
}

function showApproval(a: Approval) {
  pending = a;
  moved = null;
  if (a.frame !== null) showFrame(a.frame);
  $("approval-action").textContent = a.description;
  $("approval-element").textContent = a.element ?? "(none under the point)";
  $("approval-thought").textContent = a.thought ?? "(no thought given)";
  const typing = a.action.kind === "type";
  const text = $<HTMLInputElement>("approval-text");
  text.hidden = !typing;
  $("approval-text-label").hidden = !typing;
  text.value = typing ? String(a.action.text ?? "") : "";
  $<HTMLInputElement>("reject-reason").value = "";
  drawMarker(pointOf(a.action));
  drawDrag(a.action.kind === "drag" ? a.action : null);
  $("live-action").textContent = "";
  $("approval").dataset.id = String(a.id);
  $("approval").hidden = false;
  $<HTMLButtonElement>("approve-btn").focus();
}

function hideApproval() {
  pending = null;
  moved = null;
  $("approval").hidden = true;
}

async function answer(kind: "approve" | "reject" | "edit") {
  if (!pending) return;
  const a = pending;
  let body: Record<string, unknown>;
  if (kind === "approve") {
    body = { answer: "approve" };
  } else if (kind === "reject") {
    const reason = $<HTMLInputElement>("reject-reason").value.trim();
    body = { answer: "reject", reason: reason === "" ? null : reason };
  } else {
    const action = { ...a.action };
    if (moved && "at" in action) action.at = moved;
    if (moved && "from" in action) action.from = moved;
    if (action.kind === "type") action.text = $<HTMLInputElement>("approval-text").value;
    body = { answer: "edit", action };
  }
  hideApproval();
  try {
    await api.answer(a.id, body);
  } catch (e) {
    status(errorText(e), true);
  }
}

/** Shows the screen after a stored step (the live view between actions). */
async function showStoredScreen(step: number) {
  try {
    const review = await api.stepDetail(step);
    const after = review.step.after_image ?? review.step.before_image;
    if (after && !pending) {
      const img = $<HTMLImageElement>("live-frame");
      img.src = blobUrl(after);
      img.hidden = false;
    }
  } catch (e) {
    status(errorText(e), true);
  }
}

function addStep(e: Extract<DeskEvent, { kind: "step" }>) {
  const li = document.createElement("li");
  const version = e.version === null ? "base" : `v${e.version}`;
  li.textContent = `Step ${e.index + 1}: ${e.outcome} (${version}, ${e.seconds.toFixed(1)} s)`;
  li.dataset.step = String(e.step);
  $("live-steps").prepend(li);
}

function onEvent(e: DeskEvent) {
  switch (e.kind) {
    case "state":
      status(e.message, e.state === "failed");
      $("live-progress").hidden = e.state !== "loading";
      if (e.state === "ended" || e.state === "failed") {
        setRunning(false);
        hideApproval();
      }
      break;
    case "progress": {
      const bar = $<HTMLProgressElement>("live-progress");
      bar.hidden = false;
      bar.max = Math.max(e.total, 1);
      bar.value = e.done;
      status(`${e.what}: ${e.done} of ${e.total}`);
      break;
    }
    case "frame":
      if (!pending) {
        // Autonomous mode: the predicted action drawn on the screen it was chosen on.
        showFrame(e.seq);
        drawMarker(e.action ? pointOf(e.action) : null);
        drawDrag(e.action?.kind === "drag" ? e.action : null);
        const on = e.element ? ` on ${e.element}` : "";
        $("live-action").textContent = e.description ? `Next: ${e.description}${on}` : "";
      }
      break;
    case "approval":
      showApproval(e);
      break;
    case "step":
      addStep(e);
      if (!pending) {
        drawMarker(null);
        void showStoredScreen(e.step);
      }
      break;
    case "device": {
      const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
      const memory = e.memory ? ` · ${gib(e.memory.used)} of ${gib(e.memory.total)}` : "";
      const line = $("model-device");
      line.textContent = `Model on ${e.device} (${e.dtype})${memory}`;
      line.hidden = false;
      break;
    }
    case "scoring": {
      // The trainer scores each published adapter on the gym while the agent goes on.
      const bar = $<HTMLProgressElement>("live-scoring-bar");
      bar.max = Math.max(e.tasks, 1);
      bar.value = e.played;
      const done = e.played >= e.tasks;
      $("live-scoring-text").textContent = done
        ? `Adapter v${e.version} scored on ${e.tasks} held-out gym tasks (see Adapters).`
        : `Scoring adapter v${e.version} on the gym: ${e.played} of ${e.tasks} tasks`;
      bar.hidden = done;
      $("live-scoring").hidden = false;
      break;
    }
    case "ended":
      if (e.error) status(e.error, true);
      break;
  }
}

/** Dragging the marker moves the action's point. */
function enableMarkerDrag() {
  const screen = $("live-screen");
  const marker = $("live-marker");
  let dragging = false;
  marker.addEventListener("pointerdown", (ev) => {
    if (!pending) return;
    dragging = true;
    try {
      marker.setPointerCapture(ev.pointerId);
    } catch {
      // A pointer the page cannot capture (a synthetic one) still drags while it is over the marker.
    }
  });
  marker.addEventListener("pointermove", (ev) => {
    if (!dragging) return;
    const box = screen.getBoundingClientRect();
    const at = {
      x: Math.min(Math.max((ev.clientX - box.left) / box.width, 0), 0.999),
      y: Math.min(Math.max((ev.clientY - box.top) / box.height, 0), 0.999),
    };
    moved = at;
    drawMarker(at);
  });
  marker.addEventListener("pointerup", () => {
    dragging = false;
  });
  // The keyboard moves it too: an arrow key by half a percent of the screen, with Shift by 5%.
  marker.addEventListener("keydown", (ev) => {
    const steps: Record<string, [number, number]> = {
      ArrowLeft: [-1, 0],
      ArrowRight: [1, 0],
      ArrowUp: [0, -1],
      ArrowDown: [0, 1],
    };
    const step = steps[ev.key];
    const from = moved ?? (pending ? pointOf(pending.action) : null);
    if (!step || !pending || !from) return;
    ev.preventDefault();
    const by = ev.shiftKey ? 0.05 : 0.005;
    const at = {
      x: Math.min(Math.max(from.x + step[0] * by, 0), 0.999),
      y: Math.min(Math.max(from.y + step[1] * by, 0), 0.999),
    };
    moved = at;
    drawMarker(at);
  });
}

/** Starts a session on the person's instruction, or on a practice task (which brings its own). */
async function startSession(instruction: string, practice?: PracticeTask) {
  const mode = $<HTMLInputElement>("mode-approve").checked ? "approve" : "autonomous";
  $("live-steps").replaceChildren();
  try {
    const settings = await api.settings();
    const key = String(settings.stopKey ?? "pause").replace("_", " ");
    $("stop-key-hint").textContent = `Press ${key.toUpperCase()} to stop the agent at once.`;
    await api.start(instruction, mode, 1, practice);
    paused = false;
    $("agent-pause").textContent = "Pause";
    setRunning(true);
    status("Starting…");
  } catch (e) {
    status(errorText(e), true);
  }
}

export async function initLive() {
  await listen<DeskEvent>("desk", (event) => onEvent(event.payload));
  enableMarkerDrag();
  $("agent-start").addEventListener("click", async () => {
    const instruction = $<HTMLInputElement>("instruction").value.trim();
    if (instruction === "") {
      status("Write an instruction for the agent first.", true);
      return;
    }
    await startSession(instruction);
  });
  $("practice-start").addEventListener("click", async () => {
    const kind = $<HTMLSelectElement>("practice-kind").value as PracticeTask["kind"];
    // The gym's seed picks the layout and the goal: a fresh task unless one is named.
    const named = Number.parseInt($<HTMLInputElement>("practice-seed").value, 10);
    const seed = Number.isFinite(named) && named >= 0 ? named : Math.floor(Math.random() * 1e6);
    await startSession("", { kind, seed });
  });
  $("agent-pause").addEventListener("click", async () => {
    try {
      if (paused) await api.resume();
      else await api.pause();
      paused = !paused;
      $("agent-pause").textContent = paused ? "Resume" : "Pause";
    } catch (e) {
      status(errorText(e), true);
    }
  });
  $("agent-stop").addEventListener("click", async () => {
    hideApproval();
    try {
      await api.stop();
    } catch (e) {
      status(errorText(e), true);
    }
  });
  for (const id of ["mode-approve", "mode-autonomous"]) {
    $(id).addEventListener("change", async () => {
      if (!running) return;
      const mode = $<HTMLInputElement>("mode-approve").checked ? "approve" : "autonomous";
      if (mode === "autonomous") hideApproval();
      try {
        await api.mode(mode);
      } catch (e) {
        status(errorText(e), true);
      }
    });
  }
  $("approve-btn").addEventListener("click", () => answer("approve"));
  $("reject-btn").addEventListener("click", () => answer("reject"));
  $("edit-btn").addEventListener("click", () => answer("edit"));
  document.addEventListener("keydown", (ev) => {
    if (!pending || $("page-live").hidden) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const target = ev.target;
    // A focused button, field or list answers Enter itself (Reject, Edit, the reason).
    const ownsEnter =
      target instanceof HTMLButtonElement ||
      (target instanceof HTMLInputElement && target.type !== "radio" && target.type !== "checkbox") ||
      target instanceof HTMLSelectElement ||
      target instanceof HTMLTextAreaElement;
    if (ev.key === "Enter" && target === $("live-marker") && moved) {
      ev.preventDefault();
      void answer("edit");
    } else if (ev.key === "Enter" && !ownsEnter) {
      ev.preventDefault();
      void answer("approve");
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      void answer("reject");
    }
  });
}
