// The timeline: every stored step in a virtualised list (only the visible rows exist in the
// page; rows arrive from the store a page at a time), and the detail pane of the chosen step.
import {
  api,
  blobUrl,
  errorText,
  thumbUrl,
  type StepReview,
  type TimelineFilter,
  type TimelineRow,
} from "./api";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const ROW_HEIGHT = 48;
const PAGE = 100;

let filter: TimelineFilter = {};
let total = 0;
const pages = new Map<number, TimelineRow[]>();
const loading = new Set<number>();
let selected = 0;
let generation = 0;

function rowAt(i: number): TimelineRow | undefined {
  return pages.get(Math.floor(i / PAGE))?.[i % PAGE];
}

async function loadPage(page: number) {
  if (pages.has(page) || loading.has(page)) return;
  loading.add(page);
  const gen = generation;
  try {
    const answer = await api.timeline(filter, page * PAGE, PAGE);
    if (gen !== generation) return;
    pages.set(page, answer.rows);
    total = answer.total;
    render();
  } catch (e) {
    $("timeline-count").textContent = errorText(e);
  } finally {
    loading.delete(page);
  }
}

function score(s: number | null): string {
  return s === null ? "–" : s > 0 ? "+1" : s < 0 ? "−1" : "0";
}

function describe(action: Record<string, unknown>): string {
  const kind = String(action.kind ?? "?");
  const at = action.at as { x: number; y: number } | undefined;
  if (kind === "type") return `type "${String(action.text ?? "")}"`;
  if (kind === "key") return `key ${String(action.combo ?? "")}`;
  if (at) return `${kind} at (${at.x.toFixed(2)}, ${at.y.toFixed(2)})`;
  return kind;
}

/** Rows on screen by list index; rows that scroll away go to `spare` and are refilled. */
const rowNodes = new Map<number, HTMLElement>();
const spare: HTMLElement[] = [];

/** Draws the rows in view (plus a margin) and fetches the pages around them ahead of time. */
function render() {
  const list = $("timeline-list");
  $("timeline-spacer").style.height = `${total * ROW_HEIGHT}px`;
  $("timeline-count").textContent = `${total} steps`;
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_HEIGHT) - 5);
  const last = Math.min(total, Math.ceil((list.scrollTop + list.clientHeight) / ROW_HEIGHT) + 5);
  for (const [i, node] of rowNodes) {
    if (i < first || i >= last) {
      node.hidden = true;
      spare.push(node);
      rowNodes.delete(i);
    }
  }
  for (let i = first; i < last; i++) {
    const row = rowAt(i);
    if (!row) continue;
    let node = rowNodes.get(i);
    if (!node || node.dataset.step !== String(row.step)) {
      node = node ?? spare.pop() ?? newRowNode(list);
      fillRow(node, row, i);
      rowNodes.set(i, node);
    }
    node.setAttribute("aria-selected", String(i === selected));
  }
  // The page in view, and the ones either side, so scrolling rarely waits for the store.
  const page = Math.floor(first / PAGE);
  for (const p of [page, page + 1, page - 1, Math.floor((last - 1) / PAGE)]) {
    if (p >= 0 && p * PAGE < Math.max(total, 1)) void loadPage(p);
  }
}

function newRowNode(list: HTMLElement): HTMLElement {
  const node = document.createElement("div");
  node.className = "row";
  node.setAttribute("role", "option");
  node.style.height = `${ROW_HEIGHT}px`;
  const thumb = document.createElement("img");
  thumb.className = "thumb";
  thumb.alt = "";
  thumb.decoding = "async";
  const what = document.createElement("span");
  what.className = "what";
  const title = document.createElement("b");
  const action = document.createTextNode("");
  const sub = document.createElement("small");
  what.append(title, " ", action, document.createElement("br"), sub);
  const scores = document.createElement("span");
  scores.className = "scores";
  node.append(thumb, what, scores);
  node.addEventListener("click", () => select(Number(node.dataset.index)));
  list.append(node);
  return node;
}

/** Writes `row` into a pooled node (text and attributes only, no HTML parsing). */
function fillRow(node: HTMLElement, row: TimelineRow, i: number) {
  node.hidden = false;
  node.dataset.step = String(row.step);
  node.dataset.index = String(i);
  node.style.transform = `translateY(${i * ROW_HEIGHT}px)`;
  const verdict = row.personScore ?? row.judgeScore;
  node.classList.toggle("good", verdict !== null && verdict > 0);
  node.classList.toggle("bad", verdict !== null && verdict < 0);
  const described = describe(row.action);
  node.setAttribute(
    "aria-label",
    `Step ${row.index + 1} of episode ${row.episode}: ${described}, ${row.outcome}, judge ${score(row.judgeScore)}, person ${score(row.personScore)}`,
  );
  const thumb = node.children[0] as HTMLImageElement;
  const src = row.screen ? thumbUrl(row.screen) : "";
  if (thumb.getAttribute("src") !== src) {
    if (src) thumb.src = src;
    else thumb.removeAttribute("src");
  }
  const what = node.children[1] as HTMLElement;
  what.childNodes[0].textContent = `#${row.episode}.${row.index + 1}`;
  what.childNodes[2].textContent = described;
  what.childNodes[4].textContent = `${row.task} · ${row.outcome} · ${row.policyVersion === null ? "base" : "v" + row.policyVersion}`;
  const judge = row.judgeScore === null && row.unjudgeable ? "unjudgeable" : score(row.judgeScore);
  node.children[2].textContent = `J ${judge} · P ${score(row.personScore)}${row.hasHint ? " · hint" : ""}`;
  // Touched only when it changes: rows are refilled on every scroll frame.
  const title = row.unjudgeable ? `Unjudgeable (${row.unjudgeable}); the trainer passes over it` : "";
  if (node.title !== title) node.title = title;
}

/** Puts every drawn row back in the pool (their data is stale). */
function releaseRows() {
  for (const node of rowNodes.values()) {
    node.hidden = true;
    node.dataset.step = "";
    spare.push(node);
  }
  rowNodes.clear();
}

async function select(i: number) {
  if (i < 0 || i >= total) return;
  selected = i;
  const list = $("timeline-list");
  const top = i * ROW_HEIGHT;
  if (top < list.scrollTop) list.scrollTop = top;
  if (top + ROW_HEIGHT > list.scrollTop + list.clientHeight)
    list.scrollTop = top + ROW_HEIGHT - list.clientHeight;
  render();
  const row = rowAt(i);
  if (row) await showDetail(row.step);
}

async function showDetail(step: number) {
  const pane = $("step-detail");
  try {
    const r = await api.stepDetail(step);
    pane.replaceChildren(detailNode(r));
  } catch (e) {
    pane.textContent = errorText(e);
  }
}

function screenNode(blob: string | null, r: StepReview, label: string, region: boolean): HTMLElement {
  const box = document.createElement("figure");
  box.className = "shot";
  const cap = document.createElement("figcaption");
  cap.textContent = label;
  box.append(cap);
  if (!blob) {
    box.append("(no screen)");
    return box;
  }
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.alt = `${label} screen`;
  img.loading = "lazy";
  img.src = blobUrl(blob);
  frame.append(img);
  for (const p of r.points) {
    const m = document.createElement("div");
    m.className = "marker";
    m.style.left = `${p.x * 100}%`;
    m.style.top = `${p.y * 100}%`;
    frame.append(m);
  }
  if (region && r.changed) {
    const w = r.step.surface.width || 1;
    const h = r.step.surface.height || 1;
    const c = document.createElement("div");
    c.className = "changed";
    c.setAttribute("aria-label", "Changed region");
    c.style.left = `${(r.changed.x / w) * 100}%`;
    c.style.top = `${(r.changed.y / h) * 100}%`;
    c.style.width = `${(r.changed.width / w) * 100}%`;
    c.style.height = `${(r.changed.height / h) * 100}%`;
    frame.append(c);
  }
  box.append(frame);
  return box;
}

function detailNode(r: StepReview): HTMLElement {
  const root = document.createElement("div");
  const h = document.createElement("h2");
  h.textContent = `Step ${r.step.index + 1} of episode ${r.step.episode}: ${r.task}`;
  root.append(h);
  const meta = document.createElement("p");
  meta.textContent = `${r.description ?? JSON.stringify(r.step.action)} · ${r.step.outcome}${r.step.error ? " (" + r.step.error + ")" : ""} · ${r.step.policy_version === null ? "base model" : "adapter v" + r.step.policy_version}`;
  root.append(meta);

  // Before and after side by side, and a flip view with a slider.
  const pair = document.createElement("div");
  pair.className = "pair";
  pair.append(
    screenNode(r.step.before_image, r, "Before", false),
    screenNode(r.step.after_image, r, "After", true),
  );
  root.append(pair);
  if (r.step.before_image && r.step.after_image) {
    const flip = document.createElement("div");
    flip.className = "flip";
    const label = document.createElement("label");
    label.textContent = "Before ↔ after";
    const slider = document.createElement("input");
    slider.type = "range";
    slider.min = "0";
    slider.max = "100";
    slider.value = "50";
    slider.setAttribute("aria-label", "Before to after");
    label.append(slider);
    const frame = document.createElement("div");
    frame.className = "frame";
    const before = document.createElement("img");
    before.src = blobUrl(r.step.before_image);
    before.alt = "Before";
    const after = document.createElement("img");
    after.src = blobUrl(r.step.after_image);
    after.alt = "After";
    after.className = "over";
    const clip = () => (after.style.clipPath = `inset(0 ${100 - Number(slider.value)}% 0 0)`);
    slider.addEventListener("input", clip);
    clip();
    frame.append(before, after);
    flip.append(label, frame);
    root.append(flip);
  }

  if (r.reply) {
    const t = document.createElement("h3");
    t.textContent = "Model's reply";
    const pre = document.createElement("pre");
    pre.textContent = r.reply;
    root.append(t, pre);
  }
  const vt = document.createElement("h3");
  vt.textContent = "Verdicts";
  root.append(vt);
  const list = document.createElement("ul");
  list.className = "verdicts";
  for (const v of r.verdicts) {
    const li = document.createElement("li");
    const who = v.source === "person" ? "Person" : `Judge ${v.judge ?? ""}`;
    li.textContent = `${who}: ${score(v.score)}${v.mean !== null ? ` (mean ${v.mean.toFixed(2)})` : ""}${v.hint ? ` — hint: ${v.hint}` : ""}`;
    if (v.votes) {
      const raw = document.createElement("details");
      const s = document.createElement("summary");
      s.textContent = "votes (raw)";
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(v.votes, null, 2);
      raw.append(s, pre);
      li.append(raw);
    }
    list.append(li);
  }
  if (r.verdicts.length === 0) list.append("No verdict yet.");
  root.append(list);

  const act = document.createElement("div");
  act.className = "buttons";
  const hint = document.createElement("input");
  hint.type = "text";
  hint.id = "verdict-hint";
  hint.placeholder = "Optional hint: what should have been done";
  hint.setAttribute("aria-label", "Hint for this step");
  const yes = document.createElement("button");
  yes.textContent = "Approve (A)";
  yes.id = "verdict-approve";
  yes.addEventListener("click", () => verdict(r.step.id, true));
  const no = document.createElement("button");
  no.textContent = "Reject (R)";
  no.id = "verdict-reject";
  no.addEventListener("click", () => verdict(r.step.id, false));
  act.append(hint, yes, no);
  root.append(act);
  return root;
}

async function verdict(step: number, approve: boolean) {
  const hintBox = document.getElementById("verdict-hint") as HTMLInputElement | null;
  const hint = hintBox?.value.trim() || null;
  try {
    await api.setVerdict(step, approve, hint);
    // The row's scores changed: reload its page and the detail.
    const page = Math.floor(selected / PAGE);
    pages.delete(page);
    for (const [i, node] of rowNodes) {
      if (Math.floor(i / PAGE) === page) node.dataset.step = "";
    }
    await loadPage(page);
    await showDetail(step);
  } catch (e) {
    $("step-detail").prepend(errorText(e));
  }
}

function readFilter(): TimelineFilter {
  const num = (id: string) => {
    const v = $<HTMLInputElement>(id).value.trim();
    return v === "" ? null : Number(v);
  };
  const app = $<HTMLInputElement>("f-app").value.trim();
  return {
    unjudged: $<HTMLInputElement>("f-unjudged").checked,
    disagreement: $<HTMLInputElement>("f-disagree").checked,
    failed: $<HTMLInputElement>("f-failed").checked,
    episode: num("f-episode"),
    app: app === "" ? null : app,
    adapter: num("f-adapter"),
  };
}

/** Reloads from the first page; resolves once the first rows are drawn. */
export async function openTimeline() {
  const started = performance.now();
  generation++;
  filter = readFilter();
  pages.clear();
  releaseRows();
  selected = 0;
  $("timeline-list").scrollTop = 0;
  await loadPage(0);
  render();
  // Measured by the UI tests: from asking to the first rows drawn.
  (window as unknown as { timelineOpenMs: number }).timelineOpenMs = performance.now() - started;
  if (total > 0) await select(0);
}

interface FrameStats {
  frames: number;
  /** Frames that took longer than 1.5 frames at 60 Hz. */
  dropped: number;
  worstMs: number;
}

/** Counts slow frames over `frames` animation frames while `step` runs before each one;
 * `step` returning false ends early. */
function measureFrames(frames: number, step: () => boolean): Promise<FrameStats> {
  return new Promise((done) => {
    let last = performance.now();
    let seen = 0;
    let dropped = 0;
    let worst = 0;
    const tick = (now: number) => {
      const gap = now - last;
      last = now;
      if (seen > 0) {
        worst = Math.max(worst, gap);
        if (gap > (1000 / 60) * 1.5) dropped++;
      }
      seen++;
      if (seen > frames || !step()) {
        done({ frames: seen - 1, dropped, worstMs: worst });
        return;
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}

/** The UI tests' scroll measurement: the same number of frames idle (the display's own
 * baseline) and scrolling at `pixelsPerFrame` from the top. */
export async function measureScroll(
  pixelsPerFrame: number,
  frames: number,
): Promise<{ idle: FrameStats; scroll: FrameStats }> {
  const list = $("timeline-list");
  list.scrollTop = 0;
  const idle = await measureFrames(frames, () => true);
  const scroll = await measureFrames(frames, () => {
    const end = list.scrollHeight - list.clientHeight;
    if (list.scrollTop >= end) return false;
    list.scrollTop = Math.min(end, list.scrollTop + pixelsPerFrame);
    return true;
  });
  return { idle, scroll };
}

export function initTimeline() {
  $("timeline-list").addEventListener("scroll", () => render(), { passive: true });
  $("timeline-refresh").addEventListener("click", () => openTimeline());
  for (const id of ["f-unjudged", "f-disagree", "f-failed", "f-episode", "f-app", "f-adapter"]) {
    $(id).addEventListener("change", () => openTimeline());
  }
  document.addEventListener("keydown", (ev) => {
    if ($("page-timeline").hidden) return;
    // Ctrl+A, Ctrl+R and the like belong to the page and the browser, not to the verdicts.
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target instanceof HTMLInputElement && ev.target.type !== "checkbox") return;
    const row = rowAt(selected);
    switch (ev.key.toLowerCase()) {
      case "j":
        void select(selected + 1);
        break;
      case "k":
        void select(selected - 1);
        break;
      case "a":
        if (row) void verdict(row.step, true);
        break;
      case "r":
        if (row) void verdict(row.step, false);
        break;
      default:
        return;
    }
    ev.preventDefault();
  });
  (window as unknown as { measureScroll: typeof measureScroll }).measureScroll = measureScroll;
}
