// The live picture of the fabric: hosts by rack, their peers (ToRs, route
// reflectors), gateways and upstream routers, BGP sessions as edges, colored
// by what the agents last reported (GET /v1/health). No library, no CDN.
"use strict";

const REFRESH_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 120;
const NODE_H = 36;
// Rows, top to bottom: upstream routers, gateways, peers of hosts, hosts.
const LAYER_Y = [40, 140, 250, 370];

const state = { token: null, data: null, selected: null, traced: new Set() };

// --- talking to the controller ---------------------------------------------------

function readToken() {
  // A token in the URL's fragment (#token=...) never reaches a server log.
  const match = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
  if (match) {
    sessionStorage.setItem("l3fabric-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("l3fabric-token");
}

class AuthError extends Error {}

async function api(path) {
  const headers = { Accept: "application/json" };
  if (state.token) headers["X-Auth-Token"] = state.token;
  const response = await fetch(path, { headers });
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(`${response.status}: a token with the admin role is needed`);
  }
  const body = await response.json();
  if (!response.ok) {
    const error = body.NeutronError || {};
    throw new Error(error.message || `${path}: HTTP ${response.status}`);
  }
  return body;
}

// --- the graph ----------------------------------------------------------------------

function healthClass(health) {
  if (!health || !health.up) return "down";
  return health.problems.length ? "degraded" : "ok";
}

function buildGraph(fabric, hosts, gateways, health) {
  const nodes = new Map();
  const byAddress = new Map();
  const healthOf = new Map(health.nodes.map((n) => [`${n.kind}:${n.name}`, n]));
  const add = (node) => {
    if (!nodes.has(node.id)) nodes.set(node.id, node);
    return nodes.get(node.id);
  };
  for (const g of gateways) {
    const id = `gateway:${g.name}`;
    add({ id, kind: "gateway", name: g.name, layer: 1, view: g, health: healthOf.get(id) });
    const locals = [...(g.upstream || []), ...(g.fabric_peers || [])].map((p) => p.local).filter(Boolean);
    for (const a of [...(g.fabric_addresses || []), g.router_id, ...locals]) byAddress.set(a, id);
  }
  for (const h of hosts) {
    const id = `host:${h.name}`;
    add({ id, kind: "host", name: h.name, layer: 3, rack: h.rack || "", view: h, health: healthOf.get(id) });
    byAddress.set(h.address, id);
    byAddress.set(h.router_id, id);
    // This end's address of each session (a host's IPv6 link address, say).
    for (const p of h.peers || []) if (p.local) byAddress.set(p.local, id);
  }
  // Routers without an agent: known from registrations, or only from sessions.
  const peerNode = (address, name, layer, rack) => {
    if (!byAddress.has(address)) {
      const id = `peer:${address}`;
      add({ id, kind: "peer", name: name || address, address, layer, rack });
      byAddress.set(address, id);
    }
    return byAddress.get(address);
  };
  const edges = new Map();
  const edge = (from, to, established, label) => {
    const key = [from, to].sort().join("|");
    const seen = edges.get(key);
    // Both ends report a session: it is up only if both say so.
    edges.set(key, { from, to, label, established: seen ? seen.established && established : established });
  };
  for (const g of gateways) {
    for (const p of g.upstream || []) peerNode(p.address, p.name, 0, "");
  }
  for (const r of fabric.route_reflectors || []) peerNode(r, `rr ${r}`, 2, "");
  for (const h of hosts) {
    for (const p of h.peers || []) {
      const to = peerNode(p.address, p.name, 2, h.rack || "");
      edge(`host:${h.name}`, to, false, p.name);
    }
  }
  for (const n of health.nodes) {
    const from = `${n.kind}:${n.name}`;
    for (const s of n.sessions) {
      if (!s.peer) continue;
      const layer = n.kind === "gateway" && !byAddress.has(s.peer) ? 0 : 2;
      const rack = nodes.get(from) ? nodes.get(from).rack || "" : "";
      const to = peerNode(s.peer, s.name, layer, rack);
      const key = [from, to].sort().join("|");
      const declared = edges.get(key);
      // A declared session that is also reported: the report decides.
      if (declared && !declared.reported) edges.delete(key);
      edge(from, to, s.established, s.name);
      edges.get(key).reported = true;
    }
  }
  return { nodes, edges: [...edges.values()], byAddress };
}

function layout(graph, width) {
  const racks = [...new Set([...graph.nodes.values()].filter((n) => n.kind === "host").map((n) => n.rack))].sort();
  const hostsIn = (rack) => [...graph.nodes.values()].filter((n) => n.kind === "host" && n.rack === rack);
  const total = Math.max(1, racks.reduce((sum, r) => sum + Math.max(1, hostsIn(r).length), 0));
  const spread = (list, x0, x1, y) => {
    list.sort((a, b) => a.name.localeCompare(b.name));
    list.forEach((n, i) => {
      n.x = x0 + ((i + 0.5) * (x1 - x0)) / list.length;
      n.y = y;
    });
  };
  const boxes = [];
  let x = 10;
  for (const rack of racks) {
    const span = ((width - 20) * Math.max(1, hostsIn(rack).length)) / total;
    spread(hostsIn(rack), x, x + span, LAYER_Y[3]);
    const peers = [...graph.nodes.values()].filter((n) => n.layer === 2 && n.rack === rack);
    spread(peers, x, x + span, LAYER_Y[2]);
    if (rack) boxes.push({ rack, x, span });
    x += span;
  }
  for (const layer of [0, 1, 2]) {
    const free = [...graph.nodes.values()].filter((n) => n.layer === layer && n.x === undefined);
    spread(free, 10, width - 10, LAYER_Y[layer]);
  }
  return boxes;
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function draw(graph) {
  const svg = document.getElementById("graph");
  const width = svg.clientWidth || 900;
  const boxes = layout(graph, width);
  svg.setAttribute("viewBox", `0 0 ${width} ${LAYER_Y[3] + 60}`);
  svg.replaceChildren();
  for (const b of boxes) {
    el("rect", { class: "rack", x: b.x + 4, y: LAYER_Y[2] - 30, width: b.span - 8, height: LAYER_Y[3] - LAYER_Y[2] + 60 }, svg);
    el("text", { class: "rack-label", x: b.x + 10, y: LAYER_Y[2] - 34 }, svg).textContent = `rack ${b.rack}`;
  }
  for (const e of graph.edges) {
    const a = graph.nodes.get(e.from);
    const b = graph.nodes.get(e.to);
    const line = el("line", { class: e.established ? "edge" : "edge down", x1: a.x, y1: a.y, x2: b.x, y2: b.y }, svg);
    line.dataset.edge = `${e.from}|${e.to}`;
    el("title", {}, line).textContent = `${e.label}: ${e.established ? "established" : "not established"}`;
  }
  for (const n of graph.nodes.values()) {
    const health = n.kind === "peer" ? "peer" : healthClass(n.health);
    const classes = ["node", health];
    if (state.selected === n.id) classes.push("selected");
    if (state.traced.has(n.id)) classes.push("traced");
    const g = el("g", { class: classes.join(" "), transform: `translate(${n.x - NODE_W / 2},${n.y - NODE_H / 2})` }, svg);
    g.dataset.node = n.id;
    g.dataset.health = health;
    el("rect", { width: NODE_W, height: NODE_H }, g);
    el("text", { x: NODE_W / 2, y: 15 }, g).textContent = n.name;
    el("text", { x: NODE_W / 2, y: 29, "font-size": "10" }, g).textContent = n.kind === "peer" ? n.address : n.kind;
    g.addEventListener("click", () => select(n.id).catch(showError));
  }
}

// --- the side panel -----------------------------------------------------------------

function text(tag, content, cls) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (cls) node.className = cls;
  return node;
}

function table(headers, rows) {
  const t = document.createElement("table");
  const head = t.createTHead().insertRow();
  for (const h of headers) head.appendChild(text("th", h));
  const body = t.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const cell of row) tr.insertCell().textContent = cell ?? "-";
  }
  return t;
}

async function select(id) {
  state.selected = id;
  state.traced = new Set();
  if (state.data) draw(state.data);
  const node = state.data && state.data.nodes.get(id);
  const panel = document.getElementById("panel");
  if (!node) return;
  const parts = [text("h2", `${node.kind} ${node.name}`)];
  if (node.kind === "peer") {
    parts.push(text("p", `A router without an l3fabric agent, at ${node.address}. Its sessions, as its peers report them:`));
    const rows = state.data.edges.filter((e) => e.from === id || e.to === id)
      .map((e) => [e.from === id ? e.to : e.from, e.label, e.established ? "established" : "down"]);
    parts.push(table(["peer", "session", "state"], rows));
    panel.replaceChildren(...parts);
    return;
  }
  const h = node.health;
  if (!h) {
    parts.push(text("p", "Its agent never reported.", "problem"));
  } else {
    parts.push(text("p", `heartbeat ${h.heartbeat_age_s ?? "-"} s ago · agent ${h.version || "?"} · last pass ${h.last_pass_s ?? "-"} s`));
    for (const p of h.problems) parts.push(text("p", p, "problem"));
    parts.push(text("h3", "BGP sessions"));
    parts.push(table(["session", "peer", "state", "since", "routes in", "routes out"],
      h.sessions.map((s) => [s.name, s.peer, s.state, s.since, s.routes_in, s.routes_out])));
  }
  panel.replaceChildren(...parts);
  if (node.kind === "host") {
    const ports = await api(`/v2.0/ports?binding:host_id=${encodeURIComponent(node.name)}`);
    if (state.selected !== id) return;
    panel.appendChild(text("h3", "VMs and their routes (/32, /128)"));
    panel.appendChild(table(["VM", "port", "addresses", "status"], ports.ports.map((p) => [
      p.device_id, p.name || p.id, p.fixed_ips.map((f) => f.ip_address).join(", "), p.status])));
  } else {
    const nat = node.view.nat || {};
    panel.appendChild(text("h3", "Announced upstream and translated"));
    panel.appendChild(table(["public prefixes", "private prefixes (source NAT)"], [[
      (nat.public_prefixes || []).join(", "), (nat.private_prefixes || []).join(", ")]]));
  }
}

async function runTrace(query) {
  const panel = document.getElementById("panel");
  const found = await api(`/v1/trace?query=${encodeURIComponent(query)}`);
  state.selected = null;
  state.traced = new Set();
  const parts = [text("h2", `trace ${query}`)];
  if (!found.trace.length) parts.push(text("p", "No port has this address, id or device.", "problem"));
  for (const e of found.trace) {
    const r = e.route;
    parts.push(text("h3", e.address));
    parts.push(table(["", ""], [
      ["port", `${e.port} (${e.port_status})`], ["VM", e.device], ["network", `${e.network} (${e.network_kind})`],
      ["host", e.host], ["security groups", e.security_groups.join(", ") + (e.port_security ? "" : " (port security off)")],
      ["reach", e.reach.kind + (e.reach.gateway ? ` via gateway ${e.reach.gateway} (${e.reach.prefix})` : "")],
      ["route at", r.origin ? r.origin + (r.origin_up ? "" : " (agent down)") : "nowhere"],
      ["announced to", r.announced_to.map((a) => `${a.peer} (${a.session})`).join(", ")],
      ["learned by gateways", r.gateways.map((g) => `${g.gateway} (${g.session})`).join(", ")],
    ]));
    if (r.origin) state.traced.add(`host:${r.origin}`);
    for (const a of r.announced_to) if (state.data && state.data.byAddress.has(a.peer)) state.traced.add(state.data.byAddress.get(a.peer));
    for (const g of r.gateways) state.traced.add(`gateway:${g.gateway}`);
  }
  panel.replaceChildren(...parts);
  panel.dataset.trace = query;
  if (state.data) draw(state.data);
}

// --- refreshing -----------------------------------------------------------------------

function showError(error) {
  const summary = document.getElementById("summary");
  summary.dataset.state = "error";
  summary.textContent = error.message;
  document.getElementById("login").hidden = !(error instanceof AuthError);
}

async function refresh() {
  try {
    const [fabric, hosts, gateways, health] = await Promise.all([
      api("/v1/fabric"), api("/v1/hosts"), api("/v1/gateways"), api("/v1/health"),
    ]);
    state.data = buildGraph(fabric, hosts.hosts, gateways.gateways, health);
    draw(state.data);
    const bad = health.nodes.filter((n) => healthClass(n) !== "ok");
    const summary = document.getElementById("summary");
    summary.dataset.state = bad.length ? "degraded" : "ok";
    summary.textContent = bad.length
      ? `degraded: ${bad.map((n) => n.name).join(", ")}`
      : `${hosts.hosts.length} hosts, ${gateways.gateways.length} gateways: all healthy`;
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.getElementById("login").hidden = true;
  } catch (error) {
    showError(error);
  }
  setTimeout(refresh, REFRESH_MS);
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = document.getElementById("query").value.trim();
  if (query) runTrace(query).catch(showError);
});
document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = document.getElementById("token").value.trim();
  sessionStorage.setItem("l3fabric-token", state.token);
});
state.token = readToken();
refresh();
