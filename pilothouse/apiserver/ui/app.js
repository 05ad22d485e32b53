// The dashboard: a live map of nodes and their pods, workloads, events, logs and any object's YAML.
// Everything comes from list+watch over the API (api.js). Watch events only queue work: one flush per
// animation frame touches the DOM for the objects that changed since the last frame, so thousands of
// pods and bursts of events never re-render the whole page.

import { ApiError, get, listWatch, request, setToken, stream, token, lines } from "./api.js";
import { toYaml } from "./yaml.js";

const $ = (id) => document.getElementById(id);
const UNSCHEDULED = "(unscheduled)";
const MAX_EVENTS = 200;
const POLL_MS = 3000;
const FRAME_BUDGET_MS = 12;
// Node boxes live on shelves of about SHELF boxes, and a shelf off screen is skipped whole
// (content-visibility on the shelf): per-box content-visibility made Chromium check 5,000 boxes'
// visibility on every frame (0.8 s of the 5,000-node load), and lay out every box for each new one.
// 120 boxes: a whole number of rows for 2, 3, 4, 5, 6, 8, 10 or 12 boxes a row.
const SHELF = 120;

const state = {
  namespace: "",
  filter: "",
  watches: null,           // AbortController of the running list+watches
  nodes: new Map(),        // name -> {obj, el, podsEl, countEl, usageEl, pods: Set<key>, known}
  pods: new Map(),         // ns/name -> {obj, el, node}
  workloads: new Map(),    // kind/ns/name -> {obj, row}
  pending: new Map(),      // "pod:key" | "node:name" | "wl:key" -> [type, obj]; flushed per frame
  pendingEvents: [],
  frame: 0,
  selected: null,          // {kind, namespace, name, path}
  detail: null,            // AbortController of the detail pane's stream (logs)
  metrics: false,          // metrics.k8s.io answers
  firstPaint: 0,
  summarised: 0,
  summaryTimer: 0,
  order: [],               // node names in order, for placing a new node box in O(log n)
};
window.pilothouseDashboard = state;  // for tests and bench/dashboard.py: first paint, counts

// ------------------------------------------------------------------ object paths

const KINDS = {
  Pod: ["/api/v1", "pods"], Node: ["/api/v1", "nodes"], Event: ["/api/v1", "events"],
  Deployment: ["/apis/apps/v1", "deployments"], StatefulSet: ["/apis/apps/v1", "statefulsets"],
  DaemonSet: ["/apis/apps/v1", "daemonsets"],
};

function collectionPath(kind, namespace) {
  const [prefix, plural] = KINDS[kind];
  return namespace && kind !== "Node" ? `${prefix}/namespaces/${encodeURIComponent(namespace)}/${plural}`
    : `${prefix}/${plural}`;
}

function objectPath(kind, namespace, name) {
  return `${collectionPath(kind, namespace)}/${encodeURIComponent(name)}`;
}

const keyOf = (obj) => `${obj.metadata.namespace || ""}/${obj.metadata.name}`;

// ------------------------------------------------------------------ batching

function queue(slot, type, obj) {
  state.pending.set(slot, [type, obj]);
  schedule();
}

function schedule() {
  if (!state.frame) state.frame = requestAnimationFrame(flush);
}

// Applies queued changes for at most FRAME_BUDGET_MS, in arrival order; the rest waits for the next
// frame, so a list of thousands of objects paints in slices and the page never stops answering.
function flush() {
  state.frame = 0;
  const touched = new Set();
  const deadline = performance.now() + FRAME_BUDGET_MS;
  let done = 0;
  for (const [slot, [type, obj]] of state.pending) {
    state.pending.delete(slot);
    const kind = slot.slice(0, slot.indexOf(":"));
    if (kind === "node") applyNode(type, obj, touched);
    else if (kind === "node-head") touched.add(obj.metadata.name);
    else if (kind === "pod") applyPod(type, obj, touched);
    else applyWorkload(type, obj);
    if (++done % 64 === 0 && performance.now() > deadline) break;
  }
  for (const name of touched) refreshNodeHead(name);
  if (state.pendingEvents.length) applyEvents();
  if (state.pending.size) schedule();
  if (performance.now() - state.summarised > 500) updateSummary();
  else if (!state.summaryTimer) state.summaryTimer = setTimeout(() => { state.summaryTimer = 0; updateSummary(); }, 500);
  if (!state.firstPaint && state.pods.size + state.nodes.size > 0) state.firstPaint = performance.now();
}

// ------------------------------------------------------------------ the map

function nodeReady(obj) {
  const ready = ((obj.status || {}).conditions || []).find((c) => c.type === "Ready");
  return ready && ready.status === "True";
}

function ensureNode(name, known) {
  let node = state.nodes.get(name);
  if (node) return node;
  const el = document.createElement("div");
  el.className = "node unknown";
  el.dataset.name = name;
  const head = document.createElement("div");
  head.className = "node-head";
  const nameEl = document.createElement("span");
  nameEl.className = "name";
  nameEl.textContent = name;
  const countEl = document.createElement("span");
  countEl.className = "count";
  const usageEl = document.createElement("span");
  usageEl.className = "usage";
  head.append(nameEl, countEl, usageEl);
  const podsEl = document.createElement("div");
  podsEl.className = "pods";
  el.append(head, podsEl);
  node = { obj: null, el, podsEl, countEl, usageEl, pods: new Set(), known, shelf: null };
  state.nodes.set(name, node);
  placeNode(name, node);
  return node;
}

function newShelf(after) {
  const shelf = document.createElement("div");
  shelf.className = "shelf";
  if (after) after.after(shelf); else $("map").append(shelf);
  return shelf;
}

// Nodes in name order on shelves, the unscheduled box first. A node goes before the next one in
// order (on its shelf), or at the end of the last shelf; a shelf grown to twice SHELF is split.
function placeNode(name, node) {
  if (name === UNSCHEDULED) { $("map").prepend(node.el); return; }
  let low = 0;
  let high = state.order.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (state.order[mid] < name) low = mid + 1; else high = mid;
  }
  state.order.splice(low, 0, name);
  const next = state.nodes.get(state.order[low + 1]);
  if (next) {
    node.shelf = next.shelf;
    next.el.before(node.el);
  } else {
    const last = state.nodes.get(state.order[low - 1]);
    node.shelf = last && last.shelf.childElementCount < SHELF ? last.shelf : newShelf(last && last.shelf);
    node.shelf.append(node.el);
  }
  if (node.shelf.childElementCount >= 2 * SHELF) splitShelf(node.shelf);
}

function splitShelf(shelf) {
  const half = newShelf(shelf);
  const moving = [...shelf.children].slice(SHELF);
  half.append(...moving);
  for (const el of moving) state.nodes.get(el.dataset.name).shelf = half;
}

function dropNode(name) {
  const node = state.nodes.get(name);
  node.el.remove();
  if (node.shelf && !node.shelf.childElementCount) node.shelf.remove();
  state.nodes.delete(name);
  const at = state.order.indexOf(name);
  if (at >= 0) state.order.splice(at, 1);
}

function applyNode(type, obj, touched) {
  const name = obj.metadata.name;
  if (type === "DELETED") {
    const node = state.nodes.get(name);
    if (!node) return;
    node.obj = null;
    if (node.pods.size === 0) dropNode(name);
    else node.el.className = "node unknown";
    return;
  }
  const node = ensureNode(name, true);
  const first = !node.obj;
  node.obj = obj;
  // Heartbeats rewrite every node's status every few seconds: touch the DOM only when what it shows
  // changes, or thousands of unchanged boxes are restyled.
  setIfChanged(node.el, "className", "node " + (nodeReady(obj) ? "ready" : "notready"));
  setIfChanged(node.el, "title", `${name}\n${nodeReady(obj) ? "Ready" : "NotReady"}`);
  if (first) touched.add(name);
}

function setIfChanged(el, property, value) {
  if (el[property] !== value) el[property] = value;
}

function refreshNodeHead(name) {
  const node = state.nodes.get(name);
  if (!node) return;
  if (!node.obj && node.pods.size === 0 && name !== UNSCHEDULED) {
    dropNode(name);
    return;
  }
  node.countEl.textContent = `${node.pods.size} pods`;
  if (name === UNSCHEDULED) node.el.hidden = node.pods.size === 0;
}

function podReady(obj) {
  const ready = ((obj.status || {}).conditions || []).find((c) => c.type === "Ready");
  return ready && ready.status === "True";
}

function podClass(obj) {
  if (obj.metadata.deletionTimestamp) return "pod terminating";
  const phase = ((obj.status || {}).phase || "Pending").toLowerCase();
  const known = ["pending", "running", "succeeded", "failed"].includes(phase) ? phase : "unknownphase";
  return `pod ${known}${podReady(obj) ? " ready" : ""}`;
}

function podTitle(obj) {
  const status = obj.status || {};
  const restarts = (status.containerStatuses || []).reduce((sum, c) => sum + (c.restartCount || 0), 0);
  return `${keyOf(obj)}\n${status.phase || "Pending"}${podReady(obj) ? ", ready" : ""}` +
    `${obj.metadata.deletionTimestamp ? ", terminating" : ""}\nrestarts: ${restarts}`;
}

function matchesFilter(key) {
  return !state.filter || key.includes(state.filter);
}

function applyPod(type, obj, touched) {
  const key = keyOf(obj);
  const entry = state.pods.get(key);
  if (type === "DELETED") {
    if (!entry) return;
    entry.el.remove();
    const node = state.nodes.get(entry.node);
    if (node) { node.pods.delete(key); touched.add(entry.node); }
    state.pods.delete(key);
    return;
  }
  const nodeName = (obj.spec || {}).nodeName || UNSCHEDULED;
  let pod = entry;
  if (!pod) {
    const el = document.createElement("span");
    el.dataset.key = key;
    pod = { obj, el, node: "" };
    state.pods.set(key, pod);
  }
  pod.obj = obj;
  setIfChanged(pod.el, "className", podClass(obj) + (matchesFilter(key) ? "" : " filtered") +
    (state.selected && state.selected.kind === "Pod" && state.selected.key === key ? " selected" : ""));
  setIfChanged(pod.el, "title", podTitle(obj));
  if (pod.node !== nodeName) {
    const old = state.nodes.get(pod.node);
    if (old) { old.pods.delete(key); touched.add(pod.node); }
    const node = ensureNode(nodeName, false);
    node.podsEl.append(pod.el);
    node.pods.add(key);
    pod.node = nodeName;
    touched.add(nodeName);
  }
}

function resetPods(items) {
  for (const pod of state.pods.values()) pod.el.remove();
  for (const node of state.nodes.values()) node.pods.clear();
  state.pods.clear();
  for (const [slot] of state.pending) if (slot.startsWith("pod:")) state.pending.delete(slot);
  for (const name of [...state.nodes.keys()]) queue(`node-head:${name}`, "HEAD", { metadata: { name } });
  for (const item of items) queue(`pod:${keyOf(item)}`, "ADDED", item);
}

function resetNodes(items) {
  const names = new Set(items.map((item) => item.metadata.name));
  for (const [name, node] of state.nodes) {
    if (!names.has(name) && node.obj) queue(`node:${name}`, "DELETED", node.obj);
  }
  for (const item of items) queue(`node:${item.metadata.name}`, "ADDED", item);
}

// ------------------------------------------------------------------ workloads

function workloadFigures(obj) {
  const spec = obj.spec || {};
  const status = obj.status || {};
  if (obj.kind === "DaemonSet") {
    return [status.numberReady || 0, status.desiredNumberScheduled || 0, status.updatedNumberScheduled || 0];
  }
  const desired = spec.replicas ?? 1;
  return [status.readyReplicas || 0, desired, status.updatedReplicas || 0];
}

function rolloutState(obj) {
  const [ready, desired, updated] = workloadFigures(obj);
  const observed = (obj.status || {}).observedGeneration ?? 0;
  if (observed < (obj.metadata.generation || 0)) return ["rolling", "pending"];
  if (updated < desired) return ["rolling", "rolling out"];
  if (ready < desired) return ["rolling", "scaling"];
  return ["complete", "complete"];
}

function applyWorkload(type, obj) {
  const key = `${obj.kind}/${keyOf(obj)}`;
  const entry = state.workloads.get(key);
  if (type === "DELETED") {
    if (entry) { entry.row.remove(); state.workloads.delete(key); }
    return;
  }
  let row = entry && entry.row;
  if (!row) {
    row = document.createElement("tr");
    row.dataset.key = key;
    for (let i = 0; i < 5; i++) row.append(document.createElement("td"));
    row.addEventListener("click", () => select(obj.kind, obj.metadata.namespace, obj.metadata.name));
    const body = $("workloads").tBodies[0];
    let before = null;
    for (const other of body.rows) if (other.dataset.key > key) { before = other; break; }
    body.insertBefore(row, before);
    state.workloads.set(key, { obj, row });
  }
  state.workloads.get(key).obj = obj;
  const [ready, desired, updated] = workloadFigures(obj);
  const [cls, text] = rolloutState(obj);
  const cells = row.cells;
  cells[0].textContent = obj.kind;
  cells[1].textContent = keyOf(obj).replace(/^\//, "");
  cells[2].textContent = `${ready}/${desired}`;
  cells[3].textContent = String(updated);
  cells[4].textContent = text;
  cells[4].className = cls;
}

function workloadHandlers(kind) {
  return {
    reset(items) {
      const listed = new Set(items.map((item) => `${kind}/${keyOf(item)}`));
      for (const [key, entry] of state.workloads) {
        if (key.startsWith(kind + "/") && !listed.has(key)) queue(`wl:${key}`, "DELETED", entry.obj);
      }
      for (const item of items) { item.kind = kind; queue(`wl:${kind}/${keyOf(item)}`, "ADDED", item); }
    },
    change(type, obj) { obj.kind = kind; queue(`wl:${kind}/${keyOf(obj)}`, type, obj); },
    failed: (error) => problem("workloads-problem", `${kind}s: ${describe(error)}`),
  };
}

// ------------------------------------------------------------------ events

function eventTime(obj) {
  return obj.lastTimestamp || obj.eventTime || (obj.series || {}).lastObservedTime || obj.metadata.creationTimestamp || "";
}

// The newest MAX_EVENTS, newest first. RFC 3339 times in UTC order as plain strings: no localeCompare,
// which cost about a microsecond a comparison over the thousands of events of a cluster's first list.
function newestEvents(events) {
  const timed = events.map((obj) => [eventTime(obj), obj]);
  timed.sort((a, b) => (a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : 0));
  return timed.slice(0, MAX_EVENTS).map((pair) => pair[1]);
}

function pushEvent(obj) {
  state.pendingEvents.push(obj);
  // Only MAX_EVENTS are ever shown: a long list's later pages (or a storm) are cut down as they come.
  if (state.pendingEvents.length > 4 * MAX_EVENTS) state.pendingEvents = newestEvents(state.pendingEvents);
  schedule();
}

function applyEvents() {
  const list = $("events");
  const fragment = document.createDocumentFragment();
  const batch = newestEvents(state.pendingEvents.splice(0));
  for (const obj of batch) {
    const li = document.createElement("li");
    li.className = obj.type || "Normal";
    const object = obj.involvedObject || {};
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = obj.reason || "";
    li.append(`${eventTime(obj).replace("T", " ").replace("Z", "")} `, reason,
      ` ${(object.kind || "").toLowerCase()}/${object.name || ""}: ${obj.message || ""}`);
    fragment.append(li);
  }
  list.prepend(fragment);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

// ------------------------------------------------------------------ watches

function describe(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) return "401 Unauthorized: the API server refused the request without valid credentials";
    if (error.status === 403) return `403 Forbidden: ${error.message}`;
    return `${error.status} ${error.reason}: ${error.message}`;
  }
  return String(error && error.message ? error.message : error);
}

function problem(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = !text;
}

function startWatches() {
  if (state.watches) state.watches.abort();
  const controller = new AbortController();
  state.watches = controller;
  const signal = controller.signal;
  for (const id of ["map-problem", "workloads-problem", "events-problem"]) problem(id, "");
  $("events").replaceChildren();
  listWatch(collectionPath("Node"), {
    reset: resetNodes,
    change: (type, obj) => queue(`node:${obj.metadata.name}`, type, obj),
    failed: (error) => problem("map-problem", `nodes: ${describe(error)}`),
  }, signal);
  listWatch(collectionPath("Pod", state.namespace), {
    reset: resetPods,
    change: (type, obj) => queue(`pod:${keyOf(obj)}`, type, obj),
    failed: (error) => problem("map-problem", `pods: ${describe(error)}`),
  }, signal);
  // A browser opens at most 6 HTTP/1.1 connections to one server and a watch holds one for good:
  // nodes, pods, events and Deployments are watched, StatefulSets and DaemonSets listed every few
  // seconds, which leaves connections for the YAML fetches and a log stream.
  listWatch(collectionPath("Deployment", state.namespace), workloadHandlers("Deployment"), signal);
  for (const kind of ["StatefulSet", "DaemonSet"]) poll(collectionPath(kind, state.namespace), workloadHandlers(kind), signal);
  listWatch(collectionPath("Event", state.namespace), {
    reset(items) { $("events").replaceChildren(); state.pendingEvents = items.slice(-MAX_EVENTS); schedule(); },
    change(type, obj) { if (type !== "DELETED") pushEvent(obj); },
    failed: (error) => problem("events-problem", describe(error)),
  }, signal);
  pollMetrics(signal);
}

// List `path` every few seconds: reset(items) each time (changes in between show up at the next list).
async function poll(path, { reset, failed }, signal) {
  while (!signal.aborted) {
    try {
      reset((await get(path, signal)).items || []);
    } catch (error) {
      if (signal.aborted) return;
      failed(error);
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

// Node CPU/memory from metrics.k8s.io, only when that API answers (else the figures stay hidden).
async function pollMetrics(signal) {
  while (!signal.aborted) {
    try {
      const list = await get("/apis/metrics.k8s.io/v1beta1/nodes", signal);
      state.metrics = true;
      for (const item of list.items || []) {
        const node = state.nodes.get(item.metadata.name);
        if (node) node.usageEl.textContent = `${item.usage.cpu} cpu ${item.usage.memory}`;
      }
    } catch {
      state.metrics = false;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 15000));
  }
}

async function loadNamespaces() {
  const select = $("namespace");
  try {
    const list = await get("/api/v1/namespaces");
    for (const item of list.items) {
      const option = document.createElement("option");
      option.value = option.textContent = item.metadata.name;
      select.append(option);
    }
  } catch {
    // Not allowed to list namespaces: the user types one instead (a namespaced role is common).
    const option = document.createElement("option");
    option.value = "?";
    option.textContent = "other…";
    select.append(option);
  }
}

function updateSummary() {
  state.summarised = performance.now();
  let ready = 0;
  for (const pod of state.pods.values()) if (podReady(pod.obj)) ready++;
  const nodes = [...state.nodes.values()].filter((n) => n.obj).length;
  $("summary").textContent = `${nodes} nodes · ${state.pods.size} pods (${ready} ready)`;
}

// ------------------------------------------------------------------ detail: YAML, JSON, logs

async function select(kind, namespace, name) {
  document.querySelectorAll(".pod.selected, #workloads tr.selected").forEach((el) => el.classList.remove("selected"));
  const key = `${namespace || ""}/${name}`;
  state.selected = { kind, namespace, name, key };
  if (kind === "Pod") {
    const pod = state.pods.get(key);
    if (pod) { pod.el.classList.add("selected"); pod.el.scrollIntoView({ block: "nearest" }); }
  } else {
    const entry = state.workloads.get(`${kind}/${key}`);
    if (entry) entry.row.classList.add("selected");
  }
  await showObject("yaml");
}

function openDetail(title) {
  if (state.detail) state.detail.abort();
  state.detail = new AbortController();
  $("detail").hidden = false;
  $("detail-title").textContent = title;
  $("show-logs").hidden = !state.selected || state.selected.kind !== "Pod";
  $("detail-body").textContent = "";
  $("detail-metrics").hidden = true;
  return state.detail.signal;
}

async function showObject(format) {
  const sel = state.selected;
  if (!sel) return;
  const signal = openDetail(`${sel.kind} ${sel.key.replace(/^\//, "")}`);
  const body = $("detail-body");
  try {
    const obj = await get(objectPath(sel.kind, sel.namespace, sel.name), signal);
    delete obj.metadata.managedFields;  // as kubectl get -o yaml (--show-managed-fields=false)
    body.textContent = format === "json" ? JSON.stringify(obj, null, 2) : toYaml(obj);
    body.dataset.format = format;
  } catch (error) {
    if (!signal.aborted) body.textContent = describe(error);
  }
  if (sel.kind === "Pod" && state.metrics) showPodMetrics(sel, signal);
}

async function showPodMetrics(sel, signal) {
  try {
    const metrics = await get(`/apis/metrics.k8s.io/v1beta1/namespaces/${sel.namespace}/pods/${sel.name}`, signal);
    const el = $("detail-metrics");
    el.textContent = (metrics.containers || []).map((c) => `${c.name}: ${c.usage.cpu} cpu, ${c.usage.memory}`).join(" · ");
    el.hidden = false;
  } catch { /* no figures yet for this pod */ }
}

async function showLogs() {
  const sel = state.selected;
  if (!sel || sel.kind !== "Pod") return;
  const signal = openDetail(`logs ${sel.key.replace(/^\//, "")}`);
  const body = $("detail-body");
  body.dataset.format = "logs";
  let buffered = [];
  let scheduled = 0;
  const paint = () => {
    scheduled = 0;
    const stick = body.scrollTop + body.clientHeight >= body.scrollHeight - 4;
    body.append(buffered.join(""));
    buffered = [];
    if (stick) body.scrollTop = body.scrollHeight;
  };
  try {
    // A pod of several containers needs one named: the first, as kubectl's default container.
    const pod = state.pods.get(sel.key);
    const first = pod && ((pod.obj.spec || {}).containers || [])[0];
    const container = first ? `&container=${encodeURIComponent(first.name)}` : "";
    const path = `${objectPath("Pod", sel.namespace, sel.name)}/log?follow=true&tailLines=1000${container}`;
    const response = await stream(path, signal, "*/*");
    for await (const line of lines(response)) {
      buffered.push(line + "\n");
      if (!scheduled) scheduled = requestAnimationFrame(paint);
    }
    body.append("\n— end of log —\n");
  } catch (error) {
    if (!signal.aborted) body.append(`\n${describe(error)}\n`);
  }
}

function closeDetail() {
  if (state.detail) state.detail.abort();
  state.detail = null;
  $("detail").hidden = true;
}

// ------------------------------------------------------------------ keyboard and filter

function visiblePods() {
  return [...document.querySelectorAll("#map .pod:not(.filtered)")];
}

function movePod(step) {
  const pods = visiblePods();
  if (!pods.length) return;
  const current = state.selected && state.selected.kind === "Pod" ? pods.findIndex((el) => el.dataset.key === state.selected.key) : -1;
  const next = pods[Math.max(0, Math.min(pods.length - 1, current < 0 ? 0 : current + step))];
  const [namespace, name] = next.dataset.key.split("/");
  select("Pod", namespace, name);
}

function applyFilter() {
  for (const [key, pod] of state.pods) pod.el.classList.toggle("filtered", !matchesFilter(key));
}

function onKey(event) {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (event.key === "Escape") {
    if (typing) document.activeElement.blur();
    else closeDetail();
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    "/": () => $("filter").focus(),
    n: () => $("namespace").focus(),
    j: () => movePod(1),
    k: () => movePod(-1),
    y: () => showObject("yaml"),
    Enter: () => showObject("yaml"),
    l: () => showLogs(),
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
}

// ------------------------------------------------------------------ sign in

async function whoAmI() {
  // SelfSubjectReview (kubectl auth whoami): who the API server takes this page's credentials for.
  const review = await request("/apis/authentication.k8s.io/v1/selfsubjectreviews", {
    method: "POST", body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  });
  return review.status.userInfo.username;
}

function showLogin(reason) {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-reason").textContent = reason;
  $("signout").hidden = !token();
  $("token").focus();
}

async function start() {
  try {
    const user = await whoAmI();
    $("whoami").textContent = `signed in as ${user}`;
    $("signout").hidden = !token();
    $("login").hidden = true;
    $("main").hidden = false;
    await loadNamespaces();
    startWatches();
  } catch (error) {
    // Without credentials the server answers 401, or (anonymous auth on) takes the caller for
    // system:anonymous, whom RBAC refuses: both are a refusal of a request without credentials.
    const anonymous = error instanceof ApiError && error.status === 403 && error.message.includes("system:anonymous");
    if (error instanceof ApiError && (error.status === 401 || anonymous)) {
      showLogin(token() ? `The API server refused this token (${describe(error)}).`
        : `The API server refused the request without credentials (${describe(error)}). Sign in with a token.`);
    } else if (error instanceof ApiError && error.status === 403) {
      showLogin(`The API server refused this identity (403 Forbidden): ${error.message}`);
    } else {
      showLogin(`Could not reach the API server: ${describe(error)}`);
    }
  }
}

function init() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("token").value.trim());
    $("token").value = "";
    start();
  });
  $("signout").addEventListener("click", () => {
    // A reload, so that nothing the last user could see stays on the page for the next one.
    setToken("");
    location.reload();
  });
  $("namespace").addEventListener("change", (event) => {
    let value = event.target.value;
    if (value === "?") value = (prompt("namespace") || "").trim();
    state.namespace = value;
    startWatches();
  });
  let filterTimer = 0;
  $("filter").addEventListener("input", (event) => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { state.filter = event.target.value.trim(); requestAnimationFrame(applyFilter); }, 120);
  });
  $("show-yaml").addEventListener("click", () => showObject("yaml"));
  $("show-json").addEventListener("click", () => showObject("json"));
  $("show-logs").addEventListener("click", () => showLogs());
  $("close-detail").addEventListener("click", closeDetail);
  $("map").addEventListener("click", (event) => {
    const key = event.target.dataset && event.target.dataset.key;
    if (!key) return;
    const [namespace, name] = key.split("/");
    select("Pod", namespace, name);
  });
  document.addEventListener("keydown", onKey);
  start();
}

init();
