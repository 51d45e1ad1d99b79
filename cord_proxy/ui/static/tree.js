// The beam as a tree by step: every candidate with its proposers, score, each scorer's
// part, and whether it survived; the best trace's path is marked.
import { el, fmt } from "./dom.js";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const colours = new Map();

export function colourOf(teacher) {
  if (!colours.has(teacher)) colours.set(teacher, PALETTE[colours.size % PALETTE.length]);
  return colours.get(teacher);
}

function chip(teacher) {
  const node = el("span", { class: "chip", text: teacher });
  node.style.borderColor = colourOf(teacher);
  node.style.color = colourOf(teacher);
  return node;
}

function sameSet(a, b) {
  return a.length === b.length && a.every((x) => b.includes(x));
}

// Which candidate of a round became the best trace's step: by the recorded path, or, in an
// older record, the selected one with the step's score and writers.
function pathIndex(step, candidates, path, round) {
  if (Array.isArray(path)) {
    if (path.length <= round) return -1;
    return candidates.findIndex((c) => c.parent === path[round - 1] && c.child === path[round]);
  }
  const match = candidates.findIndex(
    (c) => c.selected && c.log_score === step.log_score && sameSet(c.proposers, step.proposers),
  );
  if (match >= 0) return match;
  return candidates.findIndex((c) => c.selected && c.text.trim() === step.text.trim());
}

// The beam a selected candidate became, numbered as the next round's `parent` counts them:
// its recorded `child`, or, in an older record without one, guessed from the scores' order.
function beamNumbers(candidates) {
  const numbers = new Map();
  if (candidates.some((c) => "child" in c)) {
    candidates.forEach((c, i) => { if (c.child !== null && c.child !== undefined) numbers.set(i, c.child); });
    return numbers;
  }
  const order = candidates
    .map((c, i) => ({ c, i }))
    .filter(({ c }) => c.selected)
    .sort((a, b) => (b.c.log_score ?? -Infinity) - (a.c.log_score ?? -Infinity));
  order.forEach(({ i }, rank) => numbers.set(i, rank));
  return numbers;
}

function scorerList(scorers) {
  if (!scorers || scorers.length === 0) return el("p", { class: "muted", text: "no scorer part" });
  return el(
    "ul",
    { class: "scorers" },
    scorers.map((s) =>
      el("li", {
        text: `${s.scorer}: mean log p ${fmt(s.mean_logprob)} over ${s.tokens} tokens, weight ${fmt(s.weight, 2)}`,
      }),
    ),
  );
}

function card(candidate, { onPath, beam, round }) {
  const state = candidate.selected ? "survived" : "dropped";
  const node = el(
    "div",
    { class: `cand ${state}${onPath ? " path" : ""}`, "data-selected": String(Boolean(candidate.selected)) },
    el(
      "div",
      { class: "cand-head" },
      candidate.proposers.map(chip),
      el("span", { class: "score", text: `score ${fmt(candidate.score)}` }),
      el("span", { class: "muted", text: `log ${fmt(candidate.log_score, 3)}` }),
    ),
    el(
      "div",
      { class: "cand-state" },
      el("span", { class: `badge ${state}`, text: state }),
      onPath ? el("span", { class: "badge path", text: "best path" }) : null,
      untrainableMark(candidate),
      round > 1 ? el("span", { class: "muted", text: `extends beam #${candidate.parent}` }) : null,
      beam !== undefined ? el("span", { class: "muted", text: `→ beam #${beam}` }) : null,
    ),
    el("pre", { class: "text", text: candidate.text }),
    scorerList(candidate.scorers),
  );
  node.style.borderLeftColor = colourOf(candidate.proposers[0] || "");
  return node;
}

// A mark on text written by a teacher set `trainable = false`: the exports leave it out.
export function untrainableMark(item) {
  if (item.trainable !== false) return null;
  return el("span", {
    class: "badge untrainable",
    title: "written by a teacher with trainable = false: the exports skip it",
    text: "not trainable",
  });
}

export function legend(container, teachers) {
  container.replaceChildren(...teachers.map(chip));
}

function column(title, onStep) {
  const head = el("h4", { text: title });
  if (onStep) head.append(" ", el("button", { type: "button", class: "link", text: "pairs", onclick: onStep }));
  return el("div", { class: "tree-step" }, head);
}

// A record's search tree, one column per round: its candidates, the path by `path`.
function renderSearch(container, rounds, path, onStep) {
  let total = 0;
  rounds.forEach((round, position) => {
    const candidates = Array.isArray(round.candidates) ? round.candidates : [];
    const node = column(`Step ${round.step}`, onStep && (() => onStep(round.step)));
    const onPath = pathIndex(round, candidates, Array.isArray(path) ? path : [], position + 1);
    const beams = beamNumbers(candidates);
    candidates.forEach((c, i) => node.append(card(c, { onPath: i === onPath, beam: beams.get(i), round: position + 1 })));
    total += candidates.length;
    container.append(node);
  });
  return total;
}

// Render `steps` (cord.steps or a record's steps), or `search`'s rounds where a record keeps
// them; return how many candidates it shows. `onStep(step)`: a step's "pairs" button.
export function renderTree(container, steps, { search = null, path = null, onStep = null } = {}) {
  container.replaceChildren();
  if (Array.isArray(search) && search.length > 0) {
    const total = renderSearch(container, search, path, onStep);
    container.dataset.candidates = String(total);
    return total;
  }
  let total = 0;
  steps.forEach((step, position) => {
    const node = column(`Step ${step.index}`, null);
    const candidates = step.candidates;
    if (Array.isArray(candidates)) {
      const onPath = pathIndex(step, candidates, null, position + 1);
      const beams = beamNumbers(candidates);
      candidates.forEach((c, i) =>
        node.append(card(c, { onPath: i === onPath, beam: beams.get(i), round: position + 1 })),
      );
      total += candidates.length;
    } else {
      node.append(
        el("p", { class: "muted", text: "candidates not recorded (include_candidates was off)" }),
        card({ ...step, selected: true, parent: 0 }, { onPath: true, round: 1 }),
      );
    }
    container.append(node);
  });
  container.dataset.candidates = String(total);
  return total;
}
