// The playground: one streamed decode through /v1/chat/completions, then its beam tree.
import { streamChat } from "./api.js";
import { $, el, fmt, seconds, showError, summary, usd } from "./dom.js";
import { legend, renderTree } from "./tree.js";

const NUMBERS = {
  "pg-beam-width": "beam_width",
  "pg-proposals": "proposals_per_teacher",
  "pg-max-steps": "max_steps",
  "pg-max-step-tokens": "max_step_tokens",
  "pg-thinking-budget": "thinking_budget",
  "pg-answer-budget": "answer_budget",
};
let ensembles = [];
let running = null;
let sequence = 0;

function mark(node) {
  sequence += 1;
  node.dataset.seq = String(sequence);
}

function fillDefaults() {
  const ensemble = ensembles.find((e) => e.name === $("pg-ensemble").value);
  if (!ensemble) return;
  for (const [id, option] of Object.entries(NUMBERS)) $(id).value = ensemble.defaults[option];
  $("pg-segmentation").value = ensemble.defaults.segmentation;
  legend($("pg-legend"), ensemble.teachers);
}

export function initPlayground(info) {
  ensembles = info.ensembles;
  $("pg-ensemble").replaceChildren(...ensembles.map((e) => el("option", { value: e.name, text: e.name })));
  $("pg-ensemble").addEventListener("change", fillDefaults);
  fillDefaults();
  $("pg-run").addEventListener("click", run);
  $("pg-stop").addEventListener("click", () => running && running.abort());
}

function request() {
  const cord = { include_candidates: true, segmentation: $("pg-segmentation").value };
  for (const [id, option] of Object.entries(NUMBERS)) {
    if ($(id).value !== "") cord[option] = Number($(id).value);
  }
  const reference = $("pg-reference").value.trim();
  if (reference) cord.reference_answer = reference;
  const body = {
    model: $("pg-ensemble").value,
    messages: [{ role: "user", content: $("pg-question").value }],
    stream: true,
    stream_options: { include_usage: true },
    cord,
  };
  if ($("pg-seed").value !== "") body.seed = Number($("pg-seed").value);
  return body;
}

function reset() {
  for (const id of ["pg-steps", "pg-answer", "pg-summary", "pg-tree"]) $(id).replaceChildren();
  delete $("pg-answer").dataset.seq;
  delete $("pg-tree").dataset.seq;
  delete $("pg-tree").dataset.candidates;
  showError("");
}

function onChunk(chunk, result) {
  if (chunk.error) throw new Error(chunk.error.message || "the decode failed");
  if (chunk.usage) result.usage = chunk.usage;
  if (chunk.cord) result.cord = chunk.cord;
  const choice = (chunk.choices || []).find((c) => c.index === 0);
  if (!choice) return;
  const delta = choice.delta || {};
  if (delta.reasoning_content) {
    const step = el("pre", { class: "step text", text: delta.reasoning_content });
    mark(step);
    $("pg-steps").append(step);
    $("pg-status").textContent = `${$("pg-steps").children.length} step(s) certain…`;
  }
  if (delta.content) {
    const answer = $("pg-answer");
    if (!answer.dataset.seq) mark(answer);
    answer.textContent += delta.content;
  }
}

function finish(result, started) {
  const { cord, usage } = result;
  if (!cord) throw new Error("the stream ended without its cord provenance");
  summary($("pg-summary"), [
    ["score", fmt(cord.score)],
    ["closed by", cord.closed_by],
    ["cost", usd(cord.cost_usd)],
    ["prompt tokens", fmt(usage ? usage.prompt_tokens : null)],
    ["completion tokens", fmt(usage ? usage.completion_tokens : null)],
    ["reasoning tokens", fmt(usage ? usage.completion_tokens_details.reasoning_tokens : null)],
    ["decode wall time", seconds(cord.wall_s)],
    ["wall time seen here", seconds((performance.now() - started) / 1000)],
  ]);
  legend($("pg-legend"), cord.teachers.map((t) => t.name));
  const count = renderTree($("pg-tree"), cord.steps);
  mark($("pg-tree"));
  $("pg-status").textContent = `done: ${cord.steps.length} step(s), ${count} candidate(s)`;
}

async function run() {
  reset();
  running = new AbortController();
  $("pg-run").disabled = true;
  $("pg-stop").disabled = false;
  $("pg-status").textContent = "decoding…";
  const started = performance.now();
  const result = {};
  try {
    await streamChat(request(), (chunk) => onChunk(chunk, result), running.signal);
    finish(result, started);
  } catch (error) {
    $("pg-status").textContent = "";
    showError(error.name === "AbortError" ? "stopped" : `decode failed: ${error.message}`);
  } finally {
    running = null;
    $("pg-run").disabled = false;
    $("pg-stop").disabled = true;
  }
}
