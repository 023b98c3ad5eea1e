// agentgym viewer: episode list, episode, group and run views over the data embedded in the page
// (agentgym view --out) or fetched from the local server (agentgym view --serve).
// Every text from a record goes into the page as a text node or an attribute value, never as markup.
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("agentgym-data").textContent);
  const SERVED = DATA.mode === "serve";
  const PAGE_SIZE = 50;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2557c7", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#5c940d", "#e67700"];
  const PREFERRED_CURVES = ["train_success_rate", "train_mean_reward", "eval_success_rate", "loss", "entropy",
    "clip_fraction", "train_invalid_rate", "kl"];
  const SHOWN_ELSEWHERE = new Set(["task_id", "split", "turn", "invalid_action", "won"]);

  const state = { index: null, filters: {}, offset: 0, shade: "logprob", viewToken: 0, listTicket: 0 };

  // ------------------------------------------------------------------ DOM helpers
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "onclick" || name === "onchange" || name === "oninput" || name === "onsubmit") {
        el.addEventListener(name.slice(2), value);
      } else {
        el.setAttribute(name, String(value));
      }
    }
  }
  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  function fmt(value, digits) {
    if (value === null || value === undefined) return "—";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    return String(parseFloat(value.toFixed(digits === undefined ? 4 : digits)));
  }
  function pct(value) { return value === null || value === undefined ? "—" : (100 * value).toFixed(1) + "%"; }
  function badge(won) { return h("span", { class: "badge " + (won ? "won" : "lost") }, won ? "won" : "lost"); }
  function link(text, hash, attrs) { return h("a", Object.assign({ href: hash }, attrs || {}), text); }
  function hashFor(kind, value) { return "#/" + kind + (value === undefined ? "" : "/" + encodeURIComponent(value)); }
  function preText(text) { return h("pre", {}, text === undefined || text === null ? "" : String(text)); }
  function imageSrc(src) {
    if (typeof src !== "string") return null;
    if (src.startsWith("img:")) return (DATA.images || {})[src.slice(4)] || null;
    return src.startsWith("/api/") || src.startsWith("data:image/png;base64,") ? src : null;
  }

  // ------------------------------------------------------------------ data: embedded or served
  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }
  // The episode list's filters; agentgym/viewer/collection.py (matches) does the same for the server.
  function matches(row, q) {
    for (const name of ["source", "env_id", "split", "policy", "iteration", "seed"]) {
      const wanted = q[name];
      if (wanted !== undefined && wanted !== null && wanted !== "" && String(row[name]) !== String(wanted)) return false;
    }
    const task = String(q.task || "").trim().toLowerCase();
    if (task && !row.task_id.toLowerCase().includes(task)) return false;
    if ((q.outcome === "won" && !row.won) || (q.outcome === "lost" && row.won)) return false;
    if (q.invalid_min !== undefined && q.invalid_min !== "" && row.invalid < Number(q.invalid_min)) return false;
    if (q.invalid_max !== undefined && q.invalid_max !== "" && row.invalid > Number(q.invalid_max)) return false;
    return true;
  }
  function localQuery(q) {
    let rows = DATA.summaries.filter((row) => matches(row, q));
    if (["return", "turns", "length", "invalid"].includes(q.sort)) {
      rows = rows.slice().sort((a, b) => (a[q.sort] - b[q.sort]) || (a.key - b.key));
      if (q.order === "desc") rows.reverse();
    }
    const offset = Math.max(Number(q.offset) || 0, 0);
    return { total: rows.length, won: rows.filter((r) => r.won).length, offset: offset,
      rows: rows.slice(offset, offset + (Number(q.limit) || 100)) };
  }
  const api = SERVED ? {
    index: () => getJSON("/api/index"),
    episodes: (q) => getJSON("/api/episodes?" + new URLSearchParams(q).toString()),
    episode: (key) => getJSON("/api/episode/" + encodeURIComponent(key)),
    group: (group) => getJSON("/api/group/" + encodeURIComponent(group)),
    run: (source) => getJSON("/api/run/" + encodeURIComponent(source)),
  } : {
    index: async () => DATA.index,
    episodes: async (q) => localQuery(q),
    episode: async (key) => DATA.episodes[String(key)] || null,
    group: async (group) => {
      const members = DATA.summaries.filter((row) => row.group === group);
      return { group: group, episodes: members.map((row) => DATA.episodes[String(row.key)] || { summary: row, turns: null }) };
    },
    run: async (source) => DATA.runs[String(source)] || null,
  };

  // ------------------------------------------------------------------ frame
  function renderTabs(route) {
    const tabs = clear(document.getElementById("tabs"));
    const hasRuns = state.index.sources.some((source) => source.kind === "run");
    const items = [["episodes", "Episodes"], ["sources", "Sources"]].concat(hasRuns ? [["runs", "Runs"]] : []);
    for (const [name, label] of items) {
      tabs.appendChild(link(label, hashFor(name), { class: route === name ? "active" : null, id: "tab-" + name }));
    }
  }
  function renderNotes() {
    const notes = clear(document.getElementById("notes"));
    const lines = (state.index.notes || []).concat(state.index.warnings || []);
    for (const line of lines) notes.appendChild(h("div", { class: "warning" }, line));
  }

  async function route() {
    const token = ++state.viewToken;
    const [, kind, ...rest] = (location.hash || "#/episodes").split("/");
    const value = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
    renderTabs(kind || "episodes");
    const main = document.getElementById("view");
    const views = { episodes: episodesView, episode: episodeView, group: groupView, sources: sourcesView, runs: runsView };
    const view = views[kind] || episodesView;
    try {
      const content = await view(value);
      if (token !== state.viewToken) return;  // a later navigation won
      clear(main).appendChild(content);
      window.scrollTo(0, 0);
    } catch (error) {
      if (token !== state.viewToken) return;
      clear(main).appendChild(h("div", { class: "warning" }, "Could not show this view: " + error.message));
    }
  }

  // ------------------------------------------------------------------ episode list
  function select(name, label, values, describe) {
    const el = h("select", { name: name });
    el.appendChild(h("option", { value: "" }, "any"));
    for (const value of values) {
      const option = h("option", { value: String(value) }, describe ? describe(value) : String(value));
      if (String(state.filters[name] ?? "") === String(value)) option.selected = true;
      el.appendChild(option);
    }
    return h("label", {}, label, el);
  }
  function input(name, label, type, placeholder) {
    return h("label", {}, label, h("input", { name: name, type: type, placeholder: placeholder || null,
      value: state.filters[name] ?? "", min: type === "number" ? 0 : null }));
  }
  function filtersForm() {
    const facets = state.index.facets;
    const sources = state.index.sources;
    const outcome = h("select", { name: "outcome" },
      h("option", { value: "" }, "any"), h("option", { value: "won" }, "won"), h("option", { value: "lost" }, "lost"));
    outcome.value = state.filters.outcome || "";
    const sort = h("select", { name: "sort" }, h("option", { value: "" }, "as recorded"),
      ["return", "turns", "length", "invalid"].map((key) => h("option", { value: key }, key)));
    sort.value = state.filters.sort || "";
    const order = h("select", { name: "order" }, h("option", { value: "desc" }, "high first"), h("option", { value: "asc" }, "low first"));
    order.value = state.filters.order || "desc";
    const form = h("form", { class: "filters", id: "filters" },
      sources.length > 1 ? select("source", "source", facets.source, (i) => sources[i].label) : null,
      select("env_id", "env id", facets.env_id),
      select("split", "split", facets.split),
      input("task", "task contains", "text", "task id"),
      h("label", {}, "outcome", outcome),
      input("seed", "seed", "text", "any"),
      select("policy", "policy", facets.policy),
      facets.iteration.length ? select("iteration", "iteration", facets.iteration) : null,
      input("invalid_min", "invalid ≥", "number"),
      input("invalid_max", "invalid ≤", "number"),
      h("label", {}, "sort by", sort),
      h("label", {}, "order", order),
      h("button", { type: "button", id: "reset-filters", onclick: () => { state.filters = {}; state.offset = 0; route(); } }, "reset"));
    const update = () => {
      const values = {};
      for (const el of form.elements) if (el.name && el.value !== "") values[el.name] = el.value;
      state.filters = values;
      state.offset = 0;
      refreshList();
    };
    form.addEventListener("change", update);
    form.addEventListener("input", (event) => { if (event.target.type === "text" || event.target.type === "number") update(); });
    form.addEventListener("submit", (event) => { event.preventDefault(); update(); });
    return form;
  }

  async function episodesView() {
    const wrap = h("div", {},
      h("h1", {}, "Episodes"),
      filtersForm(),
      h("div", { id: "list" }, h("p", { class: "muted" }, "Loading…")));
    await refreshList(wrap.querySelector("#list"));
    return wrap;
  }

  async function refreshList(target) {
    const list = target || document.getElementById("list");
    if (!list) return;
    const ticket = ++state.listTicket;  // typing sends a query per key: only the latest answer is shown
    const query = Object.assign({}, state.filters, { offset: state.offset, limit: PAGE_SIZE });
    const page = await api.episodes(query);
    if (ticket !== state.listTicket || (!list.isConnected && target === undefined)) return;
    const several = state.index.sources.length > 1;
    const iterations = state.index.facets.iteration.length > 0;
    const header = h("tr", {}, h("th", { class: "num" }, "#"), several ? h("th", {}, "source") : null,
      h("th", {}, "env"), h("th", {}, "split"), h("th", {}, "task"), h("th", {}, "group"), h("th", {}, "policy"),
      iterations ? h("th", { class: "num" }, "iteration") : null, h("th", { class: "num" }, "seed"), h("th", {}, "outcome"),
      h("th", { class: "num" }, "return"), h("th", { class: "num" }, "turns"), h("th", { class: "num" }, "invalid"),
      h("th", { class: "num", title: "characters of the replies" }, "length"));
    const body = h("tbody", {});
    for (const row of page.rows) {
      const tr = h("tr", { class: "clickable episode-row", "data-key": row.key,
        onclick: (event) => { if (event.target.tagName !== "A") location.hash = hashFor("episode", row.key); } },
        h("td", { class: "num" }, link(String(row.key), hashFor("episode", row.key))),
        several ? h("td", {}, state.index.sources[row.source].label) : null,
        h("td", {}, row.env_id.replace(/^agentgym\//, "")), h("td", {}, row.split), h("td", { class: "mono" }, row.task_id),
        h("td", { class: "mono" }, link(row.group_id, hashFor("group", row.group))), h("td", {}, row.policy),
        iterations ? h("td", { class: "num" }, fmt(row.iteration)) : null, h("td", { class: "num" }, fmt(row.seed)),
        h("td", {}, badge(row.won)), h("td", { class: "num" }, fmt(row.return)), h("td", { class: "num" }, row.turns),
        h("td", { class: "num" }, row.invalid), h("td", { class: "num" }, row.length));
      body.appendChild(tr);
    }
    const last = Math.min(page.offset + page.rows.length, page.total);
    const pager = h("div", { class: "pager" },
      h("button", { id: "prev-page", disabled: page.offset === 0 ? "" : null,
        onclick: () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); refreshList(); } }, "‹ previous"),
      h("span", { class: "muted" }, page.total ? `${page.offset + 1}–${last}` : "none"),
      h("button", { id: "next-page", disabled: last >= page.total ? "" : null,
        onclick: () => { state.offset += PAGE_SIZE; refreshList(); } }, "next ›"));
    clear(list).appendChild(h("div", {},
      h("p", {}, h("strong", { id: "episode-count" }, String(page.total)), ` of ${state.index.total} episodes match; `,
        h("span", { id: "won-count" }, String(page.won)), " won."),
      h("table", { id: "episodes" }, h("thead", {}, header), body), pager));
  }

  // ------------------------------------------------------------------ episode
  function shade(value, metric, scale) {
    if (value === null || value === undefined) return null;
    if (metric === "entropy") {
      const alpha = scale > 0 ? Math.min(value / scale, 1) : 0;
      return `rgba(37, 87, 199, ${(0.75 * alpha).toFixed(3)})`;
    }
    const p = Math.exp(value);
    return `rgba(214, 48, 49, ${(0.8 * (1 - p)).toFixed(3)})`;
  }
  function tokenStrip(turn, metric, entropyScale) {
    const logprobs = turn.action_logprobs || [];
    const entropies = turn.action_entropies || [];
    const count = Math.max((turn.action_token_ids || []).length, logprobs.length, entropies.length);
    if (!count || (!logprobs.length && !entropies.length)) return null;
    const values = metric === "entropy" ? entropies : logprobs;
    const strip = h("div", { class: "tokens" });
    for (let i = 0; i < count; i++) {
      const piece = turn.tokens ? turn.tokens[i] : null;
      const parts = [`token ${i + 1}`];
      if (piece !== null) parts.push(JSON.stringify(piece));
      if (logprobs[i] !== undefined) parts.push(`log-prob ${fmt(logprobs[i])} (p = ${fmt(Math.exp(logprobs[i]))})`);
      if (entropies[i] !== undefined) parts.push(`entropy ${fmt(entropies[i])}`);
      const cell = h("span", { class: piece !== null ? "tok" : "tok cell", title: parts.join(" · ") },
        piece !== null ? piece : String(i + 1));
      const color = shade(values[i], metric, entropyScale);
      if (color) cell.style.backgroundColor = color;
      strip.appendChild(cell);
    }
    return strip;
  }

  function isPlain(value) { return value === null || typeof value !== "object"; }
  function tree(value) {
    if (isPlain(value)) {
      const text = value === null ? "null" : String(value);
      return text.includes("\n") || text.length > 160 ? preText(text) : h("span", { class: "mono" }, text);
    }
    if (Array.isArray(value)) {
      if (value.every(isPlain) && value.join(", ").length < 160) return h("span", { class: "mono" }, "[" + value.map(String).join(", ") + "]");
      return h("ol", { class: "tree", start: 0 }, value.map((item) => h("li", {}, tree(item))));
    }
    return h("div", { class: "tree" }, Object.entries(value).map(([key, item]) =>
      h("div", {}, h("span", { class: "tree-key" }, key + ": "), tree(item))));
  }
  // Modules (as in AgentFlow): any object in a turn's info with both an input and an output.
  function findModules(value, path, found) {
    if (isPlain(value) || found.length > 20) return found;
    if (!Array.isArray(value) && "input" in value && "output" in value) {
      found.push([path, value]);
      return found;
    }
    for (const [key, item] of Object.entries(value)) findModules(item, path ? `${path}.${key}` : key, found);
    return found;
  }
  function infoView(info) {
    const rest = {};
    for (const [key, value] of Object.entries(info || {})) if (!SHOWN_ELSEWHERE.has(key)) rest[key] = value;
    const modules = findModules(rest, "", []);
    const moduleViews = modules.map(([path, module]) => {
      const extra = {};
      for (const [key, value] of Object.entries(module)) if (key !== "input" && key !== "output") extra[key] = value;
      return h("div", { class: "module" }, h("h3", {}, module.name || module.module || path || "module"),
        h("div", { class: "columns" }, h("div", {}, h("div", { class: "muted small" }, "input"), tree(module.input)),
          h("div", {}, h("div", { class: "muted small" }, "output"), tree(module.output))),
        Object.keys(extra).length ? tree(extra) : null);
    });
    return h("div", {},
      moduleViews.length ? h("div", {}, h("h3", {}, "Modules"), moduleViews) : null,
      Object.keys(rest).length ? h("details", { class: "info" }, h("summary", {}, `info (${Object.keys(rest).length} keys)`), tree(rest)) : null);
  }
  function keyValues(title, values, cls) {
    const entries = Object.entries(values || {});
    if (!entries.length) return null;
    return h("div", { class: cls || null }, title ? h("h3", {}, title) : null,
      h("table", { class: "kv" }, entries.map(([key, value]) => h("tr", {}, h("td", { class: "muted" }, key), h("td", {}, tree(value))))));
  }

  function screenView(screen) {
    if (!screen) return null;
    const src = imageSrc(screen.src);
    if (!src) return h("p", { class: "muted" }, "This screen is not embedded in the file (cap); `agentgym view --serve` renders it.");
    const w = screen.width, hgt = screen.height;
    const overlay = s("svg", { viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none", class: "overlay" });
    if (screen.votes) {
      for (const [x, y, cw, ch, votes] of screen.votes.cells) {
        const cell = s("rect", { x: x, y: y, width: cw, height: ch, fill: "#f08c00", class: "vote-cell" });
        cell.style.fillOpacity = String(0.15 + 0.55 * votes / Math.max(screen.votes.peak, 1));
        overlay.appendChild(cell);
      }
      if (screen.votes.consensus) overlay.appendChild(boxShape(screen.votes.consensus, "#fab005", "consensus", "8 6"));
    }
    if (screen.target_box) overlay.appendChild(boxShape(screen.target_box, "#2b8a3e", "target-box"));
    if (screen.pred_box) overlay.appendChild(boxShape(screen.pred_box, "#e03131", "pred-box"));
    if (screen.point) {
      const [x, y] = screen.point;
      overlay.appendChild(s("g", { class: "pred-point" },
        s("circle", { cx: x, cy: y, r: 9, fill: "none", stroke: "#e03131", "stroke-width": 3 }),
        s("line", { x1: x - 16, y1: y, x2: x + 16, y2: y, stroke: "#e03131", "stroke-width": 2 }),
        s("line", { x1: x, y1: y - 16, x2: x, y2: y + 16, stroke: "#e03131", "stroke-width": 2 })));
    }
    const legend = h("div", { class: "overlay-legend" },
      screen.target_box ? h("span", {}, swatch("#2b8a3e"), "target box") : null,
      screen.point || screen.pred_box ? h("span", {}, swatch("#e03131"), "prediction") : null,
      screen.votes ? h("span", {}, swatch("#f08c00"), `GUI-RC votes (${screen.votes.parsed} of ${screen.votes.samples} samples parsed, peak ${screen.votes.peak})`) : null,
      screen.votes && screen.votes.consensus ? h("span", {}, swatch("#fab005"), "consensus region") : null);
    return h("div", {}, h("div", { class: "screen" }, h("img", { src: src, alt: "screenshot", width: w, height: hgt }), overlay), legend);
  }
  function boxShape(box, color, cls, dash) {
    const [x1, y1, x2, y2] = box;
    return s("rect", { x: x1, y: y1, width: Math.max(x2 - x1, 1), height: Math.max(y2 - y1, 1), fill: "none",
      stroke: color, "stroke-width": 3, "stroke-dasharray": dash || null, class: cls });
  }
  function swatch(color) { const el = h("span", { class: "swatch" }); el.style.backgroundColor = color; return el; }

  function promptView(prompt, tokens) {
    if (!prompt || !prompt.length) return null;
    return h("details", { class: "prompt" }, h("summary", {}, `prompt as the model saw it (${prompt.length} messages${tokens ? `, ${tokens} tokens` : ""})`),
      prompt.map((message) => h("div", { class: "message" }, h("div", { class: "role" }, message.role),
        typeof message.content === "string" ? preText(message.content) : tree(message.content))));
  }

  function turnView(turn, metric, entropyScale) {
    const rewarded = turn.reward > 0;
    const choice = turn.action_mode === "choice" && turn.choice_logprob !== null && turn.choice_logprob !== undefined;
    const head = h("div", { class: "turn-head" },
      h("strong", {}, `Turn ${turn.turn_index + 1}`),
      h("span", {}, "action ", h("span", { class: "action mono" }, turn.action === "" ? "(empty)" : turn.action)),
      turn.invalid ? h("span", { class: "badge invalid" }, "invalid") : h("span", { class: "badge neutral" }, "valid"),
      h("span", { class: "reward" }, "reward " + fmt(turn.reward)),
      turn.advantage !== null && turn.advantage !== undefined ? h("span", { class: "advantage" }, "advantage " + fmt(turn.advantage)) : null,
      choice ? h("span", { class: "muted", title: "probability of this choice among the admissible actions, and the entropy of that choice" },
        `choice p = ${fmt(Math.exp(turn.choice_logprob))}, entropy ${fmt(turn.choice_entropy)}`) : null,
      turn.agent_id ? h("span", { class: "muted" }, "agent " + turn.agent_id) : null,
      turn.terminated ? h("span", { class: "muted" }, "terminated") : null,
      turn.truncated ? h("span", { class: "muted" }, "truncated") : null);
    const strip = tokenStrip(turn, metric, entropyScale);
    const left = h("div", {},
      h("h3", {}, "Observation ", h("span", { class: "muted small" }, "(as the prompt showed it)")),
      preText(turn.observation));
    const right = h("div", {},
      h("h3", {}, "Reply"), preText(turn.response),
      strip ? h("div", {}, h("div", { class: "legend" }, metric === "entropy" ? "tokens shaded by entropy (darker blue: less certain)" : "tokens shaded by log-prob (darker red: less likely)"), strip) : null,
      h("h3", {}, "Parsed action"), h("div", { class: "mono parsed-action" }, turn.action === "" ? "(empty: nothing parsed)" : turn.action),
      turn.admissible_actions && turn.admissible_actions.length ? h("details", {}, h("summary", {}, `admissible actions (${turn.admissible_actions.length})`),
        h("ul", {}, turn.admissible_actions.map((action) => h("li", { class: "mono" }, action)))) : null,
      keyValues("Trainer annotations", turn.annotations, "annotations"),
      infoView(turn.info),
      h("div", { class: "muted small" }, `state ${turn.state_key} → ${turn.next_state_key}`));
    return h("div", { class: "card turn" + (turn.invalid ? " invalid" : rewarded ? " rewarded" : ""), "data-turn": turn.turn_index },
      head, h("div", { class: "columns" }, left, right),
      turn.screen ? h("div", {}, h("h3", {}, "Screen before the action"), screenView(turn.screen)) : null,
      promptView(turn.prompt, turn.prompt_tokens));
  }

  async function episodeView(key) {
    const episode = await api.episode(key);
    if (!episode) {
      const row = DATA.summaries ? DATA.summaries[Number(key)] : null;
      return h("div", {}, h("h1", {}, row ? row.episode_id : `episode ${key}`),
        h("div", { class: "warning" }, "This episode's record is not embedded in the file (the file caps what it embeds). " +
          "Run `agentgym view --serve` on the same paths to open every episode."));
    }
    const summary = episode.summary;
    const source = state.index.sources[summary.source];
    const metric = state.shade;
    const entropyScale = Math.max(0, ...episode.turns.flatMap((turn) => turn.action_entropies || []));
    const shadeSelect = h("select", { id: "shade", onchange: (event) => { state.shade = event.target.value; route(); } },
      h("option", { value: "logprob" }, "log-prob"), h("option", { value: "entropy" }, "entropy"));
    shadeSelect.value = metric;
    const meta = h("dl", { class: "meta" },
      ...[["source", source.label + ` (${source.kind})`], ["env", episode.env_id], ["split", episode.split],
        ["task", episode.task.id], ["instruction", episode.task.instruction], ["policy", episode.policy],
        ["seed", fmt(episode.seed)], ["iteration", fmt(summary.iteration)],
        ["return", fmt(summary.return)], ["turns", summary.turns], ["invalid turns", summary.invalid]]
        .flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
      h("dt", {}, "group"), h("dd", {}, link(episode.group_id, hashFor("group", summary.group), { id: "group-link" })));
    const task = h("details", {}, h("summary", {}, "task record (payload, answer)"), tree({ payload: episode.task.payload, answer: episode.task.answer }));
    const notes = [episode.token_note, episode.screen_note].filter(Boolean).map((note) => h("div", { class: "warning" }, note));
    return h("div", { id: "episode", "data-key": key },
      h("p", {}, link("← episodes", hashFor("episodes"))),
      h("h1", {}, episode.episode_id, " ", badge(episode.won)),
      h("div", { class: "card" }, meta, task),
      notes,
      h("p", {}, h("label", {}, "shade reply tokens by ", shadeSelect),
        h("span", { class: "muted small" }, " · the observation after the last turn is not in the records.")),
      episode.turns.map((turn) => turnView(turn, metric, entropyScale)));
  }

  // ------------------------------------------------------------------ group
  async function groupView(group) {
    const data = await api.group(group);
    const episodes = data.episodes;
    const rows = episodes.map((episode) => episode.summary);
    const returns = rows.map((row) => row.return);
    const mean = returns.reduce((a, b) => a + b, 0) / Math.max(returns.length, 1);
    const advantages = episodes.flatMap((episode) => (episode.turns || []).map((turn) => turn.advantage))
      .filter((value) => value !== null && value !== undefined);
    let verdict;
    if (returns.length < 2) verdict = "A group of one episode: there is nothing to compare it with.";
    else if (Math.max(...returns) === Math.min(...returns)) {
      verdict = `Every episode returned ${fmt(returns[0])}: the group-relative advantages are all zero, so this group taught nothing ` +
        "(GRPO-style trainers learn only from differences within a group).";
    } else verdict = `Returns differ (${fmt(Math.min(...returns))} to ${fmt(Math.max(...returns))}, mean ${fmt(mean)}): ` +
      "episodes above the mean were reinforced, those below discouraged.";
    if (advantages.length && advantages.every((value) => Math.abs(value) < 1e-9)) verdict += " The recorded advantages are all zero.";
    if (!advantages.length) verdict += " (The records carry no advantages: they were not saved by a trainer.)";
    const columns = episodes.map((episode) => {
      const row = episode.summary;
      const turns = episode.turns;
      const advs = (turns || []).map((turn) => turn.advantage).filter((v) => v !== null && v !== undefined);
      return h("div", { class: "card group-col", "data-key": row.key },
        h("h3", {}, link(row.episode_id, hashFor("episode", row.key)), " ", badge(row.won)),
        h("div", {}, "return ", h("strong", { class: "group-return" }, fmt(row.return)), ` · ${row.turns} turns · ${row.invalid} invalid`),
        advs.length ? h("div", {}, "advantage ", h("strong", {}, fmt(advs[0])), advs.length > 1 && advs.some((v) => v !== advs[0]) ? " (first turn)" : "") : null,
        turns ? turns.map((turn) => h("div", { class: "group-turn" },
          h("span", { class: "mono" }, `${turn.turn_index + 1}. ${turn.action === "" ? "(empty)" : turn.action}`), " ",
          turn.invalid ? h("span", { class: "badge invalid" }, "invalid") : null,
          h("div", { class: "muted small" }, `reward ${fmt(turn.reward)}` + (turn.advantage !== null && turn.advantage !== undefined ? ` · advantage ${fmt(turn.advantage)}` : ""))))
          : h("p", { class: "muted" }, "record not embedded"));
    });
    const first = rows[0] || {};
    return h("div", { id: "group" },
      h("p", {}, link("← episodes", hashFor("episodes"))),
      h("h1", {}, `Group ${first.group_id || group}`),
      h("p", { class: "muted" }, `${rows.length} episodes on task `, h("span", { class: "mono" }, first.task_id || "?"),
        first.iteration !== null && first.iteration !== undefined ? ` · iteration ${first.iteration}` : ""),
      h("p", { class: "verdict", id: "verdict" }, verdict),
      h("div", { class: "group-grid" }, columns));
  }

  // ------------------------------------------------------------------ sources
  async function sourcesView() {
    const body = state.index.sources.map((source) => {
      const stats = source.stats || {};
      let extra = "";
      if (source.results && source.results.summary && source.results.summary.success_rate) {
        const sr = source.results.summary.success_rate;
        extra = `eval: success ${pct(sr.mean)} ± ${pct(sr.std)} over ${sr.n} seeds`;
      } else if (source.heldout) {
        extra = `held-out success ${pct(source.heldout.before)} → ${pct(source.heldout.after)} (random ${pct(source.heldout.random)})`;
      }
      return h("tr", { class: "clickable", onclick: () => { state.filters = { source: String(source.index) }; state.offset = 0; location.hash = hashFor("episodes"); } },
        h("td", {}, source.label), h("td", {}, source.kind), h("td", { class: "mono small" }, source.path),
        h("td", { class: "num" }, fmt(stats.episodes || 0)), h("td", {}, (stats.env_ids || []).join(", ")),
        h("td", {}, (stats.splits || []).join(", ")), h("td", {}, (stats.policies || []).join(", ")),
        h("td", { class: "num" }, pct(stats.success_rate)), h("td", { class: "num" }, fmt(stats.mean_return)),
        h("td", { class: "num" }, fmt(stats.mean_turns, 2)), h("td", { class: "num" }, pct(stats.invalid_rate)), h("td", {}, extra));
    });
    return h("div", {}, h("h1", {}, "Sources"),
      h("p", { class: "muted" }, "The paths given to the viewer, side by side (figures over the episodes each holds). Click one to list its episodes."),
      h("table", { id: "sources" }, h("thead", {}, h("tr", {}, ["source", "kind", "path", "episodes", "env", "split", "policy", "success",
        "mean return", "mean turns", "invalid", "summary"].map((name) => h("th", {}, name)))), h("tbody", {}, body)));
  }

  // ------------------------------------------------------------------ runs
  function lineChart(title, series) {
    const W = 290, H = 180, L = 46, R = 10, T = 10, B = 26;
    const points = series.flatMap((serie) => serie.points);
    let [x0, x1] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const px = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
    const py = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    const chart = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "curve", "data-metric": title });
    chart.appendChild(s("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#aab" }));
    chart.appendChild(s("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#aab" }));
    for (const y of [y0, (y0 + y1) / 2, y1]) {
      chart.appendChild(s("text", { x: L - 4, y: py(y) + 3, "text-anchor": "end" }, fmt(y, 3)));
      chart.appendChild(s("line", { x1: L, y1: py(y), x2: W - R, y2: py(y), stroke: "#eef" }));
    }
    const step = Math.max(1, Math.ceil((x1 - x0) / 6));
    for (let x = Math.ceil(x0); x <= x1; x += step) chart.appendChild(s("text", { x: px(x), y: H - B + 14, "text-anchor": "middle" }, String(x)));
    chart.appendChild(s("text", { x: (L + W - R) / 2, y: H - 2, "text-anchor": "middle" }, "iteration"));
    series.forEach((serie) => {
      if (serie.points.length > 1) {
        chart.appendChild(s("polyline", { points: serie.points.map((p) => `${px(p[0])},${py(p[1])}`).join(" "),
          fill: "none", stroke: serie.color, "stroke-width": 2 }));
      }
      for (const [x, y] of serie.points) {
        chart.appendChild(s("circle", { cx: px(x), cy: py(y), r: 3.5, fill: serie.color },
          s("title", {}, `${serie.label}: ${title} = ${fmt(y, 4)} at iteration ${x}`)));
      }
    });
    return h("div", { class: "chart" }, h("div", { class: "chart-title" }, title), chart);
  }
  function curves(runs) {
    const keys = new Set();
    for (const run of runs) for (const row of run.metrics) for (const [key, value] of Object.entries(row)) {
      if (typeof value === "number" && key !== "iteration" && !key.startsWith("seconds_")) keys.add(key);
    }
    const ordered = PREFERRED_CURVES.filter((key) => keys.has(key)).concat([...keys].filter((key) => !PREFERRED_CURVES.includes(key)).sort());
    const chartOf = (key) => lineChart(key, runs.map((run, i) => ({ label: run.label, color: COLORS[i % COLORS.length],
      points: run.metrics.filter((row) => typeof row[key] === "number" && typeof row.iteration === "number").map((row) => [row.iteration, row[key]]) }))
      .filter((serie) => serie.points.length));
    const main = ordered.filter((key) => PREFERRED_CURVES.includes(key));
    const more = ordered.filter((key) => !PREFERRED_CURVES.includes(key));
    return h("div", {},
      runs.length > 1 ? h("div", { class: "series-legend" }, runs.map((run, i) => h("span", {}, swatch(COLORS[i % COLORS.length]), run.label))) : null,
      h("div", { class: "charts", id: "curves" }, main.map(chartOf)),
      more.length ? h("details", {}, h("summary", {}, `more metrics (${more.length})`), h("div", { class: "charts" }, more.map(chartOf))) : null);
  }
  function heldoutTable(run) {
    const evals = run.metrics.filter((row) => typeof row.eval_success_rate === "number");
    if (!evals.length) return h("p", { class: "muted" }, "No held-out evaluation in metrics.jsonl yet.");
    const lastIsAfter = (row, i) => i === evals.length - 1 && row.iteration !== 0 && !Object.keys(row).some((key) => key.startsWith("seconds_"));
    const random = evals.find((row) => typeof row.random_success_rate === "number");
    const rows = evals.map((row, i) => h("tr", {},
      h("td", {}, row.iteration === 0 ? "before training" : lastIsAfter(row, i) ? `after training (iteration ${row.iteration})` : `iteration ${row.iteration}`),
      h("td", { class: "num" }, pct(row.eval_success_rate)), h("td", { class: "num" }, fmt(row.eval_mean_reward)),
      h("td", { class: "num" }, fmt(row.eval_mean_turns, 2)), h("td", { class: "num" }, pct(row.eval_invalid_rate))));
    if (random) rows.unshift(h("tr", {}, h("td", {}, "random choice among admissible actions"), h("td", { class: "num" }, pct(random.random_success_rate)),
      h("td", {}, ""), h("td", {}, ""), h("td", {}, "")));
    return h("table", { class: "heldout" }, h("thead", {}, h("tr", {}, ["held-out", "success", "mean reward", "turns", "invalid"].map((name) => h("th", {}, name)))), h("tbody", {}, rows));
  }
  function runCard(run) {
    const iterations = run.iterations.map((item) => h("li", {}, h("a", { href: hashFor("episodes"), class: "iteration-link",
      onclick: (event) => { event.preventDefault(); state.filters = { source: String(run.source), iteration: String(item.iteration) };
        state.offset = 0; location.hash = hashFor("episodes"); } }, `iteration ${item.iteration}`), ` (${item.episodes} episodes)`));
    const png = imageSrc(run.curves_src);
    return h("div", { class: "card run", "data-source": run.source },
      h("h2", {}, run.label), h("div", { class: "muted mono small" }, run.path),
      h("h3", {}, "Held-out before and after"), heldoutTable(run),
      h("h3", {}, "Saved episodes"),
      iterations.length ? h("ul", {}, iterations) : h("p", { class: "muted" }, "No trajectories/iteration-*.jsonl in this run (save_episodes: 0?)."),
      h("h3", {}, "Settings"),
      run.config ? h("details", {}, h("summary", {}, `config.json (${run.config.trainer_config || "settings"})`), keyValues(null, run.config))
        : h("p", { class: "warning", id: "config-missing" }, "config.json is missing: this run's settings were not recorded."),
      png ? h("details", {}, h("summary", {}, "learning_curves.png"), h("img", { src: png, class: "curves-png", alt: "learning curves" })) : null,
      run.report ? h("details", {}, h("summary", {}, "report.md"), preText(run.report)) : null);
  }
  async function runsView() {
    const sources = state.index.sources.filter((source) => source.kind === "run");
    const runs = (await Promise.all(sources.map((source) => api.run(source.index)))).filter(Boolean);
    return h("div", { id: "runs" }, h("h1", {}, runs.length > 1 ? `Runs (${runs.length}, curves overlaid)` : "Run"),
      runs.some((run) => run.metrics.length) ? curves(runs) : h("p", { class: "muted" }, "No metrics.jsonl rows to plot."),
      runs.map(runCard));
  }

  // ------------------------------------------------------------------ start
  async function start() {
    try {
      state.index = await api.index();
    } catch (error) {
      clear(document.getElementById("view")).appendChild(h("div", { class: "warning" }, "Could not load the index: " + error.message));
      return;
    }
    renderNotes();
    window.addEventListener("hashchange", route);
    await route();
    document.body.setAttribute("data-ready", "1");
  }
  start();
})();
