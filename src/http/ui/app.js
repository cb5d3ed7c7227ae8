// vectune's dashboard: a client of the public API, nothing else. No framework, no build
// step, no third-party code: the Pareto plot is a small SVG drawn here (a few hundred
// points and one polyline need no plotting library). It polls every few seconds so a
// running autotune can be watched point by point.
"use strict";

const TOKEN_KEY = "vectune_token";
const POLL_MS = 2000;
const PAGE = 50;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  role: "open", // admin | read | open | none
  harness: null,
  source: "",
  sort: { key: "created_at", dir: -1 },
  page: 0,
  timer: null,
  busy: false,
};

class NeedToken extends Error {}

function canWrite() {
  return state.role === "admin" || state.role === "open";
}

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const role = r.headers.get("x-vectune-role");
  if (role) state.role = role;
  if (r.status === 401) throw new NeedToken();
  const text = await r.text();
  const json = text ? JSON.parse(text) : null;
  if (!r.ok) {
    const e = json && json.error ? json.error.code + ": " + json.error.message : "HTTP " + r.status;
    throw new Error(e);
  }
  return json;
}

// ---------------------------------------------------------------- small DOM helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "onclick") e.addEventListener("click", v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function card(title, ...children) {
  return el("section", { class: "card" }, el("h2", { text: title }), ...children);
}

function fmtConfig(c) {
  if (!c) return "—";
  let s = `m=${c.m} efC=${c.ef_construction} ef=${c.ef_search}`;
  if (c.quantization && c.quantization !== "none") s += ` ${c.quantization}`;
  return s;
}

function sameConfig(a, b) {
  return !!a && !!b && a.m === b.m && a.ef_construction === b.ef_construction && a.ef_search === b.ef_search &&
    (a.quantization || "none") === (b.quantization || "none") && a.seed === b.seed;
}

function num(x, digits) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "—";
}

function progressBar(job) {
  const done = job.progress.done, total = job.progress.total;
  const bar = el("span", { class: "bar", "data-testid": "job-progress", "data-done": done, "data-total": total },
    el("span"));
  bar.firstChild.style.width = (total ? Math.min(100, (100 * done) / total) : 0) + "%";
  return el("span", {}, bar, ` ${done}/${total}`);
}

function showError(msg) {
  const p = document.getElementById("error");
  p.hidden = !msg;
  p.textContent = msg || "";
}

async function act(fn) {
  try {
    await fn();
    showError(null);
  } catch (e) {
    if (e instanceof NeedToken) askToken();
    else showError(e.message);
  }
  await refresh();
}

// ---------------------------------------------------------------- token

function askToken() {
  const box = document.getElementById("auth");
  box.hidden = false;
  const input = box.querySelector("input");
  input.focus();
}

function setupToken() {
  const input = document.querySelector("[data-testid=token-input]");
  input.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    const t = input.value.trim();
    if (!t) return;
    state.token = t;
    sessionStorage.setItem(TOKEN_KEY, t);
    input.value = "";
    document.getElementById("auth").hidden = true;
    refresh();
  });
}

// ---------------------------------------------------------------- overview

async function overview() {
  const { indexes } = await api("GET", "/vectors/indexes");
  const rows = [];
  const running = [];
  for (const ix of indexes) {
    const name = encodeURIComponent(ix.name);
    const [agent, jobs] = await Promise.all([
      api("GET", `/vectors/hnsw/agent/${name}`),
      api("GET", `/vectors/jobs?index=${name}`),
    ]);
    rows.push(el("tr", { "data-testid": "index-row" },
      el("td", {}, el("a", { href: `/ui/indexes/${name}`, text: ix.name })),
      el("td", { class: "num", text: ix.vectors }),
      el("td", { text: ix.dims + " · " + ix.metric }),
      el("td", { text: ix.active ? fmtConfig(ix.active.config) : "not active" }),
      el("td", { class: "num", text: ix.active ? ix.active.generation : "—" }),
      el("td", { text: agent.state }),
      el("td", { class: "num", text: ix.live ? num(ix.live.recall_at_k, 3) : "—" })));
    for (const j of jobs.jobs.filter((j) => j.state === "running" || j.state === "queued")) {
      running.push(el("tr", {}, el("td", { text: ix.name }), el("td", { text: j.kind }), el("td", { text: j.state }),
        el("td", {}, progressBar(j)), el("td", { class: "muted", text: j.id })));
    }
  }
  const head = (...h) => el("tr", {}, h.map((x) => el("th", { text: x })));
  return [
    card(`Indexes (${indexes.length})`, indexes.length
      ? el("table", {}, el("thead", {}, head("index", "vectors", "dims · metric", "serving config", "generation",
        "agent", "live recall")), el("tbody", {}, rows))
      : el("p", { class: "muted", text: "No index yet: POST /vectors/indexes." })),
    card("Running jobs", running.length
      ? el("table", {}, el("thead", {}, head("index", "kind", "state", "progress", "job")), el("tbody", {}, running))
      : el("p", { class: "muted", text: "None running." })),
  ];
}

// ---------------------------------------------------------------- index page

function paretoPlot(points, frontier, promoted, served, target) {
  const W = 860, H = 360, L = 60, R = 20, T = 16, B = 44;
  const box = el("div", {
    class: "plot", "data-testid": "pareto-plot", "data-points": points.length, "data-frontier": frontier.length,
  });
  if (!points.length) {
    box.append(el("p", { class: "muted", text: "No trials for this harness yet." }));
    return box;
  }
  const p50 = points.map((t) => Math.max(t.metrics.search_latency_p50_us, 0.01));
  const rec = points.map((t) => t.metrics.recall_at_k);
  let lo = Math.log10(Math.min(...p50)), hi = Math.log10(Math.max(...p50));
  if (hi - lo < 0.3) { lo -= 0.15; hi += 0.15; }
  let rlo = Math.min(...rec, target ?? 1), rhi = Math.max(...rec, target ?? 0);
  if (rhi - rlo < 0.02) { rlo -= 0.01; rhi += 0.01; }
  rlo = Math.max(0, rlo - 0.01); rhi = Math.min(1, rhi + 0.005);
  const x = (us) => L + ((Math.log10(Math.max(us, 0.01)) - lo) / (hi - lo)) * (W - L - R);
  const y = (r) => H - B - ((r - rlo) / (rhi - rlo)) * (H - T - B);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "recall against p50 latency" });
  s.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  s.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) {
    s.append(svg("text", { x: x(10 ** e), y: H - B + 16, "text-anchor": "middle" }, `${10 ** e} µs`));
  }
  for (let i = 0; i <= 4; i++) {
    const r = rlo + ((rhi - rlo) * i) / 4;
    s.append(svg("text", { x: L - 6, y: y(r) + 4, "text-anchor": "end" }, r.toFixed(3)));
  }
  s.append(svg("text", { x: (W + L) / 2, y: H - 6, "text-anchor": "middle" }, "p50 latency (log scale)"));
  s.append(svg("text", { x: L + 6, y: T + 4 }, "recall@k"));
  if (typeof target === "number") {
    s.append(svg("line", { class: "target", x1: L, x2: W - R, y1: y(target), y2: y(target) }));
    s.append(svg("text", { x: W - R, y: y(target) - 4, "text-anchor": "end" }, `target ${target}`));
  }
  const ids = new Set(frontier.map((f) => f.trial_id));
  const line = frontier.map((f) => `${x(f.search_latency_p50_us)},${y(f.recall_at_k)}`).join(" ");
  s.append(svg("polyline", { class: "frontier", points: line }));
  for (const t of points) {
    const m = t.metrics;
    const c = svg("circle", {
      class: "pt" + (ids.has(t.id) ? " front" : ""), cx: x(m.search_latency_p50_us), cy: y(m.recall_at_k), r: 4,
      "data-trial": t.id,
    });
    c.append(svg("title", {}, `${fmtConfig(t.config)}\nrecall@k ${num(m.recall_at_k, 4)} · p50 ${num(m.search_latency_p50_us, 1)} µs` +
      ` · p99 ${num(m.search_latency_p99_us, 1)} µs\nbuild ${num(m.build_time_secs, 2)} s · ${t.source} · ${t.created_at}`));
    s.append(c);
    if (promoted && t.id === promoted.trial_id) {
      s.append(svg("circle", { class: "promoted", cx: x(m.search_latency_p50_us), cy: y(m.recall_at_k), r: 9 }));
    }
    if (served && sameConfig(t.config, served)) {
      s.append(svg("rect", { class: "served", x: x(m.search_latency_p50_us) - 8, y: y(m.recall_at_k) - 8, width: 16, height: 16 }));
    }
  }
  box.append(s, el("div", { class: "legend" },
    el("span", { text: `${points.length} trials` }), el("span", { text: `${frontier.length} on the frontier (line)` }),
    el("span", { text: "○ promoted" }), el("span", { text: "□ served" })));
  return box;
}

const COLUMNS = [
  ["created_at", "when", (t) => t.created_at],
  ["config", "config", (t) => fmtConfig(t.config)],
  ["recall", "recall@k", (t) => t.metrics.recall_at_k, 4],
  ["p50", "p50 µs", (t) => t.metrics.search_latency_p50_us, 1],
  ["p99", "p99 µs", (t) => t.metrics.search_latency_p99_us, 1],
  ["build", "build s", (t) => t.metrics.build_time_secs, 2],
  ["memory", "MiB", (t) => t.metrics.memory_bytes / 1048576, 1],
  ["source", "source", (t) => t.source],
];

function trialsTable(index, trials, promoted) {
  const filtered = trials.filter((t) => !state.source || t.source === state.source);
  const col = COLUMNS.find((c) => c[0] === state.sort.key) || COLUMNS[0];
  filtered.sort((a, b) => {
    const va = col[2](a), vb = col[2](b);
    return (va < vb ? -1 : va > vb ? 1 : 0) * state.sort.dir;
  });
  const pages = Math.max(1, Math.ceil(filtered.length / PAGE));
  state.page = Math.min(state.page, pages - 1);
  const shown = filtered.slice(state.page * PAGE, (state.page + 1) * PAGE);
  const head = el("tr", {}, COLUMNS.map(([key, label, , digits]) => el("th", {
    class: "sortable" + (digits !== undefined ? " num" : ""), "data-sort": key,
    text: label + (state.sort.key === key ? (state.sort.dir > 0 ? " ▲" : " ▼") : ""),
    onclick: () => {
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : -1 };
      refresh();
    },
  })), el("th", { text: "" }));
  const rows = shown.map((t) => el("tr", { "data-testid": "trial-row", "data-trial": t.id },
    COLUMNS.map(([, , get, digits]) => {
      const v = get(t);
      return el("td", { class: digits !== undefined ? "num" : "", text: digits !== undefined ? num(v, digits) : v });
    }),
    el("td", {}, promoted && promoted.trial_id === t.id ? el("span", { class: "muted", text: "promoted" })
      : canWrite() ? el("button", {
        "data-testid": "promote-button", text: "promote",
        onclick: () => act(() => api("POST", `/vectors/hnsw/promote/${index}/${t.id}?promoted_by=dashboard`)),
      }) : null)));
  const sources = [...new Set(trials.map((t) => t.source))].sort();
  const select = el("select", { "data-testid": "source-filter" }, el("option", { value: "", text: "every source" }),
    sources.map((s) => el("option", { value: s, text: s, selected: s === state.source })));
  select.addEventListener("change", () => { state.source = select.value; state.page = 0; refresh(); });
  const nav = el("span", {},
    el("button", { text: "‹", disabled: state.page === 0, onclick: () => { state.page--; refresh(); } }),
    ` page ${state.page + 1} of ${pages} (${filtered.length} trials) `,
    el("button", { text: "›", disabled: state.page >= pages - 1, onclick: () => { state.page++; refresh(); } }));
  return [el("div", { class: "controls" }, select, nav),
    el("table", { "data-testid": "trials-table" }, el("thead", {}, head), el("tbody", {}, rows))];
}

function timeline(index, p) {
  const entry = (e) => el("span", {}, el("strong", { text: fmtConfig(e.config) }),
    ` · trial ${e.trial_id} · by ${e.promoted_by} · ${e.promoted_at}`, e.note ? el("div", { class: "muted", text: e.note }) : null);
  return [
    p.current ? el("div", { "data-testid": "promotion-current" }, "current: ", entry(p.current))
      : el("p", { class: "muted", "data-testid": "promotion-current", text: "nothing promoted" }),
    (p.current || p.history.length) && canWrite() ? el("p", {}, el("button", {
      "data-testid": "rollback-button", text: "rollback",
      onclick: () => act(() => api("POST", `/vectors/hnsw/rollback/${index}`)),
    })) : null,
    p.history.length ? el("ol", {}, p.history.map((e) => el("li", {}, entry(e)))) : null,
  ];
}

function jobsCard(index, jobs) {
  if (!jobs.length) return el("p", { class: "muted", text: "No jobs." });
  return el("table", {}, el("thead", {}, el("tr", {}, ["kind", "state", "progress", "result / error", ""].map((h) => el("th", { text: h })))),
    el("tbody", {}, jobs.slice(0, 20).map((j) => {
      const res = j.error ? `${j.error.code}: ${j.error.message}`
        : j.result ? (j.kind === "autotune" ? (j.result.promoted ? "promoted " + fmtConfig(j.result.winner && j.result.winner.config)
          : "not promoted: " + (j.result.reason || "")) : `generation ${j.result.generation}`) : "";
      const live = j.state === "running" || j.state === "queued";
      return el("tr", {}, el("td", { text: j.kind }), el("td", { text: j.state }), el("td", {}, progressBar(j)),
        el("td", { text: res }), el("td", {}, live && canWrite() ? el("button", {
          text: "cancel", onclick: () => act(() => api("DELETE", `/vectors/jobs/${j.id}`)),
        }) : null));
    })));
}

function agentCard(index, a) {
  const c = a.config;
  const kv = (k, v) => [el("dt", { text: k }), el("dd", { text: v ?? "—" })];
  const dl = el("dl", { class: "kv" },
    kv("state", a.state), kv("runs", a.runs), kv("trials last hour", a.trials_last_hour),
    kv("last run", a.last_run_at), kv("runs on", a.instance),
    kv("harness", c && c.harness), kv("enabled", c && String(c.enabled)),
    kv("target recall", c && c.target_recall), kv("cooldown s", c && c.cooldown_secs),
    kv("last decision", a.last_decision ? `${a.last_decision.action} — ${a.last_decision.reason}` : null));
  let button = null;
  if (c && canWrite()) {
    button = c.enabled
      ? el("button", { "data-testid": "agent-disable", text: "disable", onclick: () => act(() => api("DELETE", `/vectors/hnsw/agent/${index}`)) })
      : el("button", {
        "data-testid": "agent-enable", text: "enable",
        onclick: () => act(() => api("PUT", `/vectors/hnsw/agent/${index}`, Object.assign({}, c, { enabled: true }))),
      });
  }
  return [dl, button];
}

function liveCard(ix, servedTrial) {
  if (!ix.active) return el("p", { class: "muted", text: "Not active." });
  const l = ix.live;
  const harnessRecall = servedTrial ? servedTrial.metrics.recall_at_k : null;
  const drift = l && harnessRecall !== null && l.recall_ci_low < harnessRecall - 0.02 && l.recall_at_k < harnessRecall;
  return el("dl", { class: "kv", "data-testid": "live-recall" },
    el("dt", { text: "serving" }), el("dd", { text: `generation ${ix.active.generation}: ${fmtConfig(ix.active.config)}` }),
    el("dt", { text: "live recall@k" }), el("dd", { class: drift ? "drift" : "", text: l ? `${num(l.recall_at_k, 4)} (lower bound ${num(l.recall_ci_low, 4)}, ${l.queries} samples)` : "no samples yet" }),
    el("dt", { text: "harness recall@k" }), el("dd", { text: harnessRecall !== null ? num(harnessRecall, 4) + " (its trial)" : "—" }));
}

async function indexPage(name) {
  const index = encodeURIComponent(name);
  const [ix, all, promoted, jobs, agent] = await Promise.all([
    api("GET", `/vectors/indexes/${index}`), api("GET", `/vectors/hnsw/trials/${index}`),
    api("GET", `/vectors/hnsw/promoted/${index}`), api("GET", `/vectors/jobs?index=${index}`),
    api("GET", `/vectors/hnsw/agent/${index}`),
  ]);
  const trials = all.trials;
  const harnesses = [...new Set(trials.map((t) => t.eval_set))].sort();
  if (!state.harness || !harnesses.includes(state.harness)) {
    const served = trials.filter((t) => ix.active && sameConfig(t.config, ix.active.config)).pop();
    state.harness = (agent.config && harnesses.includes(agent.config.harness)) ? agent.config.harness
      : served ? served.eval_set : harnesses[harnesses.length - 1] || null;
  }
  const mine = trials.filter((t) => t.eval_set === state.harness);
  const pareto = state.harness
    ? await api("GET", `/vectors/hnsw/pareto/${index}?harness=${encodeURIComponent(state.harness)}`) : { points: [] };
  const target = agent.config && typeof agent.config.target_recall === "number" ? agent.config.target_recall : null;
  const pick = el("select", { "data-testid": "harness-select" },
    harnesses.map((h) => el("option", { value: h, text: h, selected: h === state.harness })));
  pick.addEventListener("change", () => { state.harness = pick.value; state.page = 0; refresh(); });
  const current = promoted.current;
  const served = ix.active ? ix.active.config : null;
  const servedTrial = mine.filter((t) => sameConfig(t.config, served)).pop() || null;
  document.getElementById("where").textContent = `/ ${name}`;
  return [
    card(`${name}: ${ix.vectors} vectors, ${ix.dims}-d ${ix.metric}`,
      el("div", { class: "controls" }, el("label", {}, "harness ", pick)),
      paretoPlot(mine, pareto.points, current, served, target)),
    el("div", { class: "grid2" },
      card("Live recall", liveCard(ix, servedTrial)),
      card("Promotion", timeline(index, promoted)),
      card("Agent", agentCard(index, agent)),
      card("Jobs", jobsCard(index, jobs.jobs))),
    card(`Trials (${trials.length} in the journal)`, trialsTable(index, mine, current)),
  ];
}

// ---------------------------------------------------------------- loop

function route() {
  const m = location.pathname.match(/^\/ui\/indexes\/([^/]+)\/?$/);
  return m ? { page: "index", name: decodeURIComponent(m[1]) } : { page: "overview" };
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    // the role header says whether a token is needed and what it may do, without a 401
    await api("GET", "/health");
    if (state.role === "none") {
      askToken();
      return;
    }
    document.getElementById("role").textContent = state.role === "open" ? "auth off" : `token: ${state.role}`;
    const r = route();
    const parts = r.page === "index" ? await indexPage(r.name) : await overview();
    const main = document.getElementById("main");
    main.replaceChildren(...parts);
    main.setAttribute("data-rendered", String(Date.now()));
    showError(null);
  } catch (e) {
    if (e instanceof NeedToken) askToken();
    else showError(e.message);
  } finally {
    state.busy = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  refresh();
  state.timer = setInterval(refresh, POLL_MS);
});
