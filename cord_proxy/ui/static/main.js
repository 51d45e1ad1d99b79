// Start-up: ask for a key if the proxy wants one, then show the view named in the URL.
import { getJSON, setKey } from "./api.js";
import { $, showError } from "./dom.js";
import { initPlayground } from "./playground.js";
import { showTeachers } from "./teachers.js";
import { initTraces } from "./traces.js";

const VIEWS = ["playground", "traces", "teachers"];
let available = VIEWS;

function route() {
  const wanted = location.hash.slice(1);
  const view = available.includes(wanted) ? wanted : available[0];
  for (const name of VIEWS) {
    $(`view-${name}`).hidden = name !== view;
    $(`nav-${name}`).classList.toggle("active", name === view);
  }
  showTeachers(view === "teachers");
}

async function start() {
  $("key-prompt").hidden = true;
  const info = await getJSON("/ui/api/info");
  if (info.mode === "view") {
    available = ["traces"];
    $("nav-playground").hidden = true;
    $("nav-teachers").hidden = true;
  } else {
    initPlayground(info);
  }
  initTraces(info);
  $("app").hidden = false;
  window.addEventListener("hashchange", route);
  route();
}

function askForKey(message) {
  $("app").hidden = true;
  $("key-prompt").hidden = false;
  $("key-error").textContent = message;
  $("key-input").focus();
}

async function tryKey() {
  setKey($("key-input").value.trim());
  const auth = await getJSON("/ui/api/auth");
  if (auth.authorized) await start();
  else {
    setKey("");
    askForKey("That key was not accepted.");
  }
}

async function boot() {
  $("key-submit").addEventListener("click", tryKey);
  $("key-input").addEventListener("keydown", (event) => event.key === "Enter" && tryKey());
  const auth = await getJSON("/ui/api/auth");
  if (auth.authorized) await start();
  else askForKey("");
}

boot().catch((error) => {
  $("app").hidden = false;
  showError(`the page could not start: ${error.message}`);
});
