// A step's preference pairs, as `export --format dpo` makes them: on each parent beam, every
// scored kept candidate (chosen) beside every scored dropped sibling with other text
// (rejected), their scores and the margin of their log scores. Shown only for a record that
// keeps its search tree.
import { getJSON } from "./api.js";
import { $, el, fmt, showError } from "./dom.js";
import { colourOf, untrainableMark } from "./tree.js";

let line = null;

function chip(teacher) {
  const node = el("span", { class: "chip", text: teacher });
  node.style.borderColor = colourOf(teacher);
  node.style.color = colourOf(teacher);
  return node;
}

function side(role, candidate) {
  return el(
    "div",
    { class: `pair-side ${role}`, "data-log-score": candidate.log_score ?? "", "data-trainable": String(candidate.trainable) },
    el(
      "div",
      { class: "cand-head" },
      el("span", { class: `badge ${role === "chosen" ? "survived" : "dropped"}`, text: role }),
      candidate.proposers.map(chip),
      untrainableMark(candidate),
    ),
    el(
      "div",
      { class: "cand-head" },
      el("span", { class: "score", text: `score ${fmt(candidate.score)}` }),
      el("span", { class: "muted", text: `log ${fmt(candidate.log_score)}` }),
      candidate.child !== null ? el("span", { class: "muted", text: `→ beam #${candidate.child}` }) : null,
    ),
    el("pre", { class: "text", text: candidate.text }),
  );
}

function pairRow(pair) {
  return el(
    "div",
    { class: `pair${pair.trainable ? "" : " untrainable"}`, "data-margin": pair.margin ?? "" },
    side("chosen", pair.chosen),
    el(
      "div",
      { class: "margin" },
      el("span", { class: "muted", text: "margin" }),
      el("strong", { text: fmt(pair.margin) }),
      pair.trainable ? null : el("span", { class: "muted skipped", text: "export skips it" }),
    ),
    side("rejected", pair.rejected),
  );
}

function parentGroup(group) {
  return el(
    "div",
    { class: "pair-parent", "data-parent": group.parent },
    el(
      "h4",
      {},
      `On beam #${group.parent}`,
      group.on_path ? el("span", { class: "badge path", text: "best path" }) : null,
      el("span", { class: "muted", text: `${group.candidates} candidate(s), ${group.pairs.length} pair(s)` }),
    ),
    el(
      "details",
      {},
      el("summary", {}, "prefix (the trace up to this step) ", untrainableMark({ trainable: group.prefix_trainable })),
      el("pre", { class: "text", text: group.prefix || "(empty: the first step)" }),
    ),
    group.pairs.length
      ? group.pairs.map(pairRow)
      : el("p", { class: "muted", text: "no pair: no scored, kept candidate here beside a scored, dropped one with other text" }),
  );
}

export async function showStep(step) {
  const select = $("tr-pair-step");
  select.value = String(step);
  const at = line;
  try {
    const found = await getJSON(`/ui/api/traces/${at}/pairs?step=${step}`);
    if (at !== line) return; // another trace was opened meanwhile
    const count = found.parents.reduce((n, g) => n + g.pairs.length, 0);
    $("tr-pair-count").textContent = `${count} pair(s) in step ${found.step}`;
    $("tr-pairs").replaceChildren(...found.parents.map(parentGroup));
    $("tr-pairs").dataset.step = String(found.step);
    $("tr-pairs").dataset.pairs = String(count);
  } catch (error) {
    showError(`could not read the pairs: ${error.message}`);
  }
}

// Show the pairs box for `record` (at `at` in the file) if it keeps a search tree.
export function initPairs(at, record) {
  line = at;
  const rounds = Array.isArray(record.search) ? record.search : [];
  $("tr-pairs-box").hidden = rounds.length === 0;
  $("tr-pairs").replaceChildren();
  delete $("tr-pairs").dataset.step;
  if (rounds.length === 0) return;
  const select = $("tr-pair-step");
  select.replaceChildren(...rounds.map((r) => el("option", { value: r.step, text: `step ${r.step}` })));
  select.onchange = () => showStep(Number(select.value));
  showStep(rounds[0].step);
}
