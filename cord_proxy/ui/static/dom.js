// DOM helpers. Text from a trace or an API is only ever set as text, never parsed as HTML.
const SVG = "http://www.w3.org/2000/svg";

function apply(node, props) {
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.setAttribute("class", value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  apply(node, props);
  append(node, children);
  return node;
}

export function svg(tag, props = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  apply(node, props);
  append(node, children);
  return node;
}

export const $ = (id) => document.getElementById(id);

export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  return value.toFixed(digits);
}

export function seconds(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(2)} s`;
}

export function usd(value) {
  return value === null || value === undefined ? "–" : `$${value.toFixed(4)}`;
}

export function summary(list, pairs) {
  list.replaceChildren();
  for (const [term, value] of pairs) list.append(el("dt", { text: term }), el("dd", { text: value }));
}

export function showError(message) {
  const banner = $("banner");
  banner.textContent = message;
  banner.hidden = !message;
}
