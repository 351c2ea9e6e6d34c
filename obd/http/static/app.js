// obd status page: plain JavaScript, no build step, no library, nothing loaded from
// elsewhere. It reads the /v1 routes like any client (docs/PAGE.md describes it).
"use strict";

const TOKEN_KEY = "obd.token";
const HOUR = 3600000, DAY = 86400000;
const RANGES = { "15m": 900000, "1h": HOUR, "6h": 6 * HOUR, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY };
const EVERY = [1000, 5000, 10000, 30000, 60000, 300000, 900000, HOUR, 4 * HOUR, DAY];
const COINS_EVERY_MS = 3000, GRID_EVERY_MS = 60000, SUMMARY_EVERY_MS = 30000;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  authOn: false,
  canWrite: false,
  coins: [],
  selected: null,    // keyOf(coin)
  clockSkew: 0,      // server time - browser time, from the Date header
  ws: null,
  book: null,
  zoom: null,        // {key, start, end}: the clicked heat-map cell
  timers: null,
};

const $ = (selector) => document.querySelector(selector);
const keyOf = (coin) => coin.exchange + " " + coin.symbol;  // neither holds a space
const fmtTime = (ms) => (ms == null ? "–" : new Date(ms).toISOString().replace("T", " ").slice(0, 19));
const fmtNum = (n) => (n == null ? "–" : n.toLocaleString("en-US"));

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// -- calls --------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, { ...options, headers });
  const date = response.headers.get("Date");
  if (date) state.clockSkew = Date.parse(date) + 500 - Date.now();
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.code || "http_" + response.status,
      error.message || response.statusText);
  }
  return body;
}

function query(params) {
  return Object.entries(params).filter(([, v]) => v != null && v !== "")
    .map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v)).join("&");
}

function showMessage(text, kind = "error") {
  const box = $("#message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

// -- auth ---------------------------------------------------------------------

function scopesOf(token) {
  // The token's own `scope` claim decides whether to offer add/remove; the server
  // checks it again on every call, so a wrong guess only shows a 403.
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - part.length % 4) % 4)));
    return String(claims.scope || claims.scp || "").split(/[\s,]+/);
  } catch (_) {
    return [];
  }
}

function askForToken(problem) {
  $("#main").hidden = true;
  $("#token-form").hidden = false;
  const error = $("#token-error");
  error.textContent = problem || "";
  error.hidden = !problem;
  $("#token-input").focus();
}

function refused(error) {
  // A 401 or 403 on any call: back to the token form, saying why.
  if (error.status === 401) {
    const had = state.token;
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken(had ? "That token was refused (" + error.message + "). Paste a valid token."
      : "");
    return true;
  }
  return false;
}

async function start() {
  try {
    state.coins = (await api("/v1/coins")).items;
  } catch (error) {
    if (error.status === 401) {
      state.authOn = true;
      refused(error);
      return;
    }
    if (error.status === 403 && state.token) {
      askForToken("That token lacks the 'read' scope (" + error.message + ").");
      return;
    }
    showMessage("Cannot read the coins: " + error.message);
    return;
  }
  state.authOn = Boolean(state.token);
  state.canWrite = !state.token || scopesOf(state.token).includes("write");
  $("#token-form").hidden = true;
  $("#main").hidden = false;
  $("#forget-token").hidden = !state.token;
  $("#add-form").hidden = !state.canWrite;
  showMessage("");
  renderCoins();
  if (!state.selected && state.coins.length) select(state.coins[0]);
  refreshGrid();
  if (state.timers) return;
  state.timers = [
    setInterval(refreshCoins, 1000),
    setInterval(renderAges, 1000),
    setInterval(refreshGrid, GRID_EVERY_MS),
    setInterval(() => { if (state.selected) refreshSummary(); }, SUMMARY_EVERY_MS),
  ];
}

// -- coins table -----------------------------------------------------------------

let coinsDue = 0;

async function refreshCoins(force) {
  // Every 3 s, or ten times as long as the last answer took: /v1/coins counts each
  // coin's rows, which a large file makes slow; the selected coin's age stays live
  // through its WebSocket feed meanwhile.
  if (document.hidden || (!force && Date.now() < coinsDue)) return;
  const began = Date.now();
  coinsDue = began + 60000;  // one call at a time
  try {
    const before = state.coins.map(keyOf).join("|");
    const items = (await api("/v1/coins")).items;
    const live = new Map(state.coins.map((coin) => [keyOf(coin), coin.last_ts]));
    for (const coin of items) {  // a snapshot the feed showed is not taken back
      const seen = live.get(keyOf(coin));
      if (seen != null && (coin.last_ts == null || seen > coin.last_ts)) coin.last_ts = seen;
    }
    state.coins = items;
    renderCoins();
    if (state.coins.map(keyOf).join("|") !== before) refreshGrid();
  } catch (error) {
    if (!refused(error)) showMessage("Cannot read the coins: " + error.message);
  } finally {
    coinsDue = Date.now() + Math.max(COINS_EVERY_MS - 100, 10 * (Date.now() - began));
  }
}

function renderCoins() {
  const body = $("#coins tbody");
  body.replaceChildren();
  if (!state.coins.length) {
    const row = body.insertRow();
    const cell = row.insertCell();
    cell.colSpan = 11;
    cell.textContent = "No coins collected" + (state.canWrite ? ": add one below." : ".");
  }
  for (const coin of state.coins) {
    const row = document.createElement("tr");
    row.dataset.key = keyOf(coin);
    if (keyOf(coin) === state.selected) row.classList.add("selected");
    const cells = [coin.exchange, coin.symbol, coin.interval, coin.depth, coin.status, "",
      fmtNum(coin.count), fmtTime(coin.first_ts), fmtTime(coin.last_ts), coin.synthetic ? "yes" : "no"];
    cells.forEach((text, i) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (i === 3 || i === 6) cell.className = "num";
      if (i === 5) cell.className = "age num";
      if (i === 8) cell.className = "last";
      row.append(cell);
    });
    const actions = document.createElement("td");
    if (state.canWrite) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "danger";
      remove.textContent = "remove";
      remove.addEventListener("click", (event) => { event.stopPropagation(); removeCoin(coin, remove); });
      actions.append(remove);
    }
    row.append(actions);
    row.addEventListener("click", () => select(coin));
    body.append(row);
  }
  $("#summary-line").textContent = state.coins.length + " coin" + (state.coins.length === 1 ? "" : "s")
    + " collected" + (state.authOn ? " · auth on" + (state.canWrite ? " (write)" : " (read only)") : "");
  renderAges();
}

function renderAges() {
  const now = Date.now() + state.clockSkew;
  for (const coin of state.coins) {
    const row = document.querySelector(`#coins tr[data-key="${CSS.escape(keyOf(coin))}"]`);
    if (!row) continue;
    const cell = row.querySelector("td.age");
    if (coin.last_ts == null) {
      cell.textContent = "none yet";
      cell.className = "age num stale";
      continue;
    }
    const age = Math.max(0, now - coin.last_ts);
    cell.textContent = age < 120000 ? (age / 1000).toFixed(0) + " s ago"
      : age < 2 * DAY ? (age / 60000).toFixed(0) + " min ago" : (age / DAY).toFixed(1) + " d ago";
    // fresh as /readyz sees it: a snapshot within 3 intervals + 30 s
    const fresh = age <= 3 * coin.interval_ms + 30000;
    cell.className = "age num " + (fresh ? "fresh" : "stale");
    row.querySelector("td.last").textContent = fmtTime(coin.last_ts);
  }
}

async function removeCoin(coin, button) {
  if (button.dataset.armed !== "1") {
    button.dataset.armed = "1";
    button.textContent = "remove " + coin.symbol + "?";
    setTimeout(() => { button.dataset.armed = ""; button.textContent = "remove"; }, 4000);
    return;
  }
  try {
    await api("/v1/coins?" + query({ exchange: coin.exchange, symbol: coin.symbol }), { method: "DELETE" });
    showMessage("Stopped collecting " + coin.symbol + " on " + coin.exchange + " (its data is kept).", "info");
    if (state.selected === keyOf(coin)) state.selected = null;
    await refreshCoins(true);
  } catch (error) {
    if (!refused(error)) showMessage("Could not remove " + coin.symbol + ": " + error.message);
  }
}

let pendingAdd = null;

async function checkAvailability(event) {
  event.preventDefault();
  const form = new FormData($("#add-form"));
  const want = {
    exchange: String(form.get("exchange")).trim(),
    symbol: String(form.get("symbol")).trim(),
  };
  const interval = String(form.get("interval")).trim();
  const depth = String(form.get("depth")).trim();
  if (interval) want.interval = interval;
  if (depth) want.depth = /^\d+$/.test(depth) ? Number(depth) : depth;
  const result = $("#add-result");
  $("#add-confirm").hidden = true;
  result.textContent = "checking…";
  try {
    const found = await api("/v1/availability?" + query({ exchange: want.exchange, symbol: want.symbol }));
    if (!found.available) {
      result.textContent = "not available: " + (found.reason || "the exchange does not list it");
      return;
    }
    pendingAdd = want;
    result.textContent = "available" + (found.tick_size ? " (tick " + found.tick_size + ")" : "");
    $("#add-confirm").hidden = false;
  } catch (error) {
    if (!refused(error)) result.textContent = error.message;
  }
}

async function addCoin() {
  if (!pendingAdd) return;
  const result = $("#add-result");
  try {
    const coin = await api("/v1/coins", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(pendingAdd),
    });
    result.textContent = "collecting " + coin.symbol + " on " + coin.exchange + " every " + coin.interval;
    $("#add-confirm").hidden = true;
    pendingAdd = null;
    await refreshCoins(true);
  } catch (error) {
    if (!refused(error)) result.textContent = error.message;
  }
}

// -- heat-map -----------------------------------------------------------------------

function gridRange() {
  const span = RANGES[$("#grid-range").value] || DAY;
  const bucket = span > 7 * DAY ? DAY : HOUR;
  const end = Date.now() + state.clockSkew;
  const start = Math.floor((end - span) / bucket) * bucket + bucket;  // whole buckets
  return { start, end, bucket };
}

function level(bucket) {
  const reasons = bucket.reasons || {};
  const owed = bucket.expected - (reasons.pending || 0) - (reasons.not_collected || 0);
  if (owed <= 0) return { name: "none", share: null };
  const share = Math.min(1, bucket.present / owed);
  const name = share >= 1 ? "full" : share >= 0.99 ? "high" : share >= 0.9 ? "mid"
    : share >= 0.5 ? "low" : share > 0 ? "bad" : "empty";
  return { name, share };
}

function describe(bucket, bucketMs, share) {
  const lines = [fmtTime(bucket.start) + " – " + fmtTime(bucket.start + bucketMs).slice(11) + " UTC",
    bucket.present + " of " + bucket.expected + " slots present"
      + (share == null ? "" : " (" + (100 * share).toFixed(share >= 0.999 && share < 1 ? 2 : 1) + " %)")];
  for (const [reason, slots] of Object.entries(bucket.reasons || {})) lines.push(reason + ": " + slots + " slots");
  return lines.join("\n");
}

let gridGeneration = 0;

async function refreshGrid() {
  if (document.hidden && gridGeneration) return;
  const generation = ++gridGeneration;
  const { start, end, bucket } = gridRange();
  const every = bucket === DAY ? "1d" : "1h";
  const grids = await Promise.all(state.coins.map((coin) =>
    api("/v1/coverage/grid?" + query({ exchange: coin.exchange, symbol: coin.symbol, start, end, bucket: every }))
      .catch((error) => ({ error }))));
  if (generation !== gridGeneration) return;
  const map = $("#heatmap");
  map.replaceChildren();
  if (!state.coins.length) {
    map.textContent = "No coins, no coverage yet.";
    return;
  }
  map.style.gridTemplateColumns = "max-content 1fr";
  state.coins.forEach((coin, i) => {
    const grid = grids[i];
    const label = document.createElement("div");
    label.className = "hm-label";
    label.textContent = coin.exchange + " " + coin.symbol + " · " + coin.interval;
    label.addEventListener("click", () => select(coin));
    const cells = document.createElement("div");
    cells.className = "hm-cells";
    cells.dataset.key = keyOf(coin);
    if (grid.error) {
      if (refused(grid.error)) return;
      cells.textContent = grid.error.message;
    } else {
      for (const b of grid.buckets) {
        const { name, share } = level(b);
        const cell = document.createElement("span");
        cell.className = "cell lvl-" + name;
        cell.dataset.start = b.start;
        cell.dataset.level = name;
        if (share != null) cell.dataset.share = share.toFixed(6);
        cell.dataset.reasons = Object.keys(b.reasons || {}).join(" ");
        cell.title = describe(b, grid.bucket_ms, share);
        cell.addEventListener("click", () => zoom(coin, b.start, b.start + grid.bucket_ms, cell));
        cells.append(cell);
      }
    }
    map.append(label, cells);
  });
  const axis = document.createElement("div");
  axis.className = "hm-axis";
  const from = document.createElement("span"), to = document.createElement("span");
  from.textContent = fmtTime(start).slice(0, 16);
  to.textContent = "now " + fmtTime(end).slice(11, 16) + " UTC";
  axis.append(from, to);
  map.append(document.createElement("div"), axis);
}

function zoom(coin, start, end, cell) {
  document.querySelectorAll(".cell.zoomed").forEach((c) => c.classList.remove("zoomed"));
  cell.classList.add("zoomed");
  state.zoom = { key: keyOf(coin), start, end };
  select(coin);
}

// -- the selected coin -------------------------------------------------------------

function select(coin) {
  const key = keyOf(coin);
  if (state.zoom && state.zoom.key !== key) state.zoom = null;
  const changed = state.selected !== key;
  state.selected = key;
  document.querySelectorAll("#coins tbody tr").forEach((row) => row.classList.toggle("selected", row.dataset.key === key));
  $("#coin-panel").hidden = false;
  $("#coin-title").textContent = coin.symbol + " on " + coin.exchange + " · every " + coin.interval + " · depth " + coin.depth;
  refreshGaps();
  if (!changed) return;
  state.book = null;
  drawDepth();
  loadLatest(coin);
  subscribe(coin);
  refreshSummary();
}

function selectedCoin() {
  return state.coins.find((coin) => keyOf(coin) === state.selected) || null;
}

async function loadLatest(coin) {
  if (coin.last_ts == null) {  // nothing stored yet: its first snapshot comes live
    $("#book-ts").textContent = "no snapshot yet";
    return;
  }
  try {
    const snapshot = await api("/v1/books/latest?" + query({ exchange: coin.exchange, symbol: coin.symbol }));
    if (state.selected === keyOf(coin) && (!state.book || snapshot.ts > state.book.ts)) showBook(snapshot);
  } catch (error) {
    if (error.status === 404) $("#book-ts").textContent = "no snapshot yet";
    else if (!refused(error)) showMessage(error.message);
  }
}

function showBook(snapshot) {
  state.book = snapshot;
  $("#book-ts").textContent = "at " + fmtTime(snapshot.ts) + " UTC (" + snapshot.capture + ")";
  const coin = state.coins.find((c) => c.exchange === snapshot.exchange && c.symbol === snapshot.symbol);
  if (coin && (coin.last_ts == null || snapshot.ts > coin.last_ts)) {
    coin.last_ts = snapshot.ts;
    renderAges();
  }
  drawDepth();
}

function subscribe(coin) {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const token = state.token ? "?" + query({ access_token: state.token }) : "";
  const ws = new WebSocket(scheme + location.host + "/v1/ws" + token);
  state.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ op: "subscribe", exchange: coin.exchange, symbol: coin.symbol, id: 1 }));
    $("#live").textContent = "● live";
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "snapshot" && state.selected === keyOf(coin)) showBook(message.data);
    else if (message.type === "error") $("#live").textContent = "live feed: " + message.message;
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    $("#live").textContent = "○ reconnecting";
    setTimeout(() => { if (state.ws === ws && selectedCoin()) subscribe(selectedCoin()); }, 3000);
  };
}

async function refreshSummary() {
  const coin = selectedCoin();
  if (!coin) return;
  const span = RANGES[$("#summary-range").value] || HOUR;
  const end = Date.now() + state.clockSkew;
  const step = Math.max(coin.interval_ms, span / 800);
  const every = EVERY.find((ms) => ms >= step) || DAY;
  try {
    const page = await api("/v1/summary?" + query({
      exchange: coin.exchange, symbol: coin.symbol, start: Math.floor(end - span), end: Math.ceil(end),
      every: every / 1000 + "s",
    }));
    if (state.selected !== keyOf(coin)) return;
    $("#summary-note").textContent = page.columns.ts.length + " points, one every " + every / 1000 + " s";
    drawSummary(page.columns, end - span, end);
  } catch (error) {
    if (!refused(error)) showMessage(error.message);
  }
}

async function refreshGaps() {
  const coin = selectedCoin();
  if (!coin) return;
  const zoomed = state.zoom && state.zoom.key === keyOf(coin) ? state.zoom : null;
  const range = zoomed || gridRange();
  const bucket = (zoomed ? zoomed.end - zoomed.start : range.bucket) / 1000 + "s";
  $("#gaps-range").textContent = fmtTime(range.start) + " – "
    + fmtTime(Math.min(range.end, Date.now() + state.clockSkew)) + " UTC" + (zoomed ? " (the clicked cell)" : "");
  try {
    // The grid lists the range's gaps from the gap ledger without counting rows.
    const found = await api("/v1/coverage/grid?" + query({
      exchange: coin.exchange, symbol: coin.symbol, start: range.start, end: range.end, bucket,
    }));
    const body = $("#gaps tbody");
    body.replaceChildren();
    const addRow = (texts) => {
      const row = document.createElement("tr");
      for (const text of texts) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      body.append(row);
      return row;
    };
    for (const [from, to, reason] of found.gaps.slice().reverse()) {
      addRow([fmtTime(from), fmtTime(to), fmtNum(Math.round((to - from) / found.interval_ms)), reason]);
    }
    const fillable = found.gaps.some(([, , reason]) => reason !== "pending");
    const note = $("#gaps-fill");
    note.hidden = !fillable;
    note.textContent = !fillable ? ""
      : found.backfill ? "history providers (" + found.providers.join(", ") + ") may fill these "
        + "gaps: obd backfill, or a WebSocket history request, asks them in that order"
      : "no history provider serves " + coin.exchange + " (" + found.providers.join(", ")
        + "): these gaps stay unless [history] providers names one that does";
    if (found.gaps_truncated) addRow(["…", "", "", "more than " + found.gaps.length + " gaps: click a cell"]);
    if (!found.gaps.length) {
      const expected = found.buckets.reduce((sum, b) => sum + b.expected, 0);
      const cell = addRow(["no gaps: all " + fmtNum(expected) + " slots present"]).firstChild;
      cell.colSpan = 4;
    }
  } catch (error) {
    if (!refused(error)) showMessage(error.message);
  }
}

// -- charts (canvas) ---------------------------------------------------------------

function canvasContext(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
  if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, width, height };
}

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function drawDepth() {
  const { ctx, width, height } = canvasContext($("#depth"));
  const book = state.book;
  if (!book || (!book.bids.length && !book.asks.length)) {
    ctx.fillStyle = css("--muted");
    ctx.fillText(book ? "empty book" : "waiting for a snapshot…", 10, 20);
    return;
  }
  const cumulate = (levels) => { let sum = 0; return levels.map(([p, s]) => [p, (sum += s)]); };
  const bids = cumulate(book.bids), asks = cumulate(book.asks);
  const prices = [...bids, ...asks].map((l) => l[0]);
  const lo = Math.min(...prices), hi = Math.max(...prices);
  const top = Math.max(bids.length ? bids[bids.length - 1][1] : 0, asks.length ? asks[asks.length - 1][1] : 0);
  const pad = { l: 8, r: 8, t: 10, b: 22 };
  const x = (p) => pad.l + (hi === lo ? 0.5 : (p - lo) / (hi - lo)) * (width - pad.l - pad.r);
  const y = (s) => height - pad.b - (top ? s / top : 0) * (height - pad.t - pad.b);
  const side = (levels, colour) => {
    if (!levels.length) return;
    ctx.beginPath();
    ctx.moveTo(x(levels[0][0]), y(0));
    let last = 0;
    for (const [p, s] of levels) { ctx.lineTo(x(p), y(last)); ctx.lineTo(x(p), y(s)); last = s; }
    ctx.lineTo(x(levels[levels.length - 1][0]), y(0));
    ctx.closePath();
    ctx.globalAlpha = 0.25; ctx.fillStyle = colour; ctx.fill();
    ctx.globalAlpha = 1; ctx.strokeStyle = colour; ctx.lineWidth = 1.5; ctx.stroke();
  };
  side(bids, css("--bid"));
  side(asks, css("--ask"));
  ctx.fillStyle = css("--muted");
  ctx.textAlign = "left"; ctx.fillText(String(lo), pad.l, height - 6);
  ctx.textAlign = "right"; ctx.fillText(String(hi), width - pad.r, height - 6);
  ctx.textAlign = "center";
  if (bids.length && asks.length) {
    const mid = (book.bids[0][0] + book.asks[0][0]) / 2;
    ctx.fillText("mid " + mid.toPrecision(8), width / 2, height - 6);
  }
  ctx.textAlign = "left";
  ctx.fillText("cum. size " + top.toPrecision(4), pad.l, pad.t + 4);
}

function drawSummary(columns, from, to) {
  const { ctx, width, height } = canvasContext($("#mid"));
  const pad = { l: 8, r: 8, t: 14, b: 22 };
  const ts = columns.ts;
  if (!ts.length) {
    ctx.fillStyle = css("--muted");
    ctx.fillText("no snapshots in this range", 10, 20);
    return;
  }
  const x = (t) => pad.l + (t - from) / (to - from) * (width - pad.l - pad.r);
  const line = (values, colour, label, align) => {
    const finite = values.filter((v) => v != null && Number.isFinite(v));
    if (!finite.length) return;
    const lo = Math.min(...finite), hi = Math.max(...finite);
    const y = (v) => height - pad.b - (hi === lo ? 0.5 : (v - lo) / (hi - lo)) * (height - pad.t - pad.b);
    ctx.beginPath();
    let drawing = false;
    values.forEach((v, i) => {
      if (v == null || !Number.isFinite(v)) { drawing = false; return; }  // a gap stays a gap
      if (drawing) ctx.lineTo(x(ts[i]), y(v)); else ctx.moveTo(x(ts[i]), y(v));
      drawing = true;
    });
    ctx.strokeStyle = colour; ctx.lineWidth = 1.3; ctx.stroke();
    ctx.fillStyle = colour; ctx.textAlign = align;
    const at = align === "left" ? pad.l : width - pad.r;
    ctx.fillText(label + " " + hi.toPrecision(7), at, pad.t - 2);
    ctx.fillText(label + " " + lo.toPrecision(7), at, height - pad.b + 14);
  };
  line(columns.mid, "#2563eb", "mid", "left");
  line(columns.spread_bps, "#b45309", "spread bps", "right");
  ctx.textAlign = "left";
}

// -- wiring -------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token-input").value.trim();
    if (!token) return askForToken("Paste a token first.");
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token-input").value = "";
    start();
  });
  $("#forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  $("#add-form").addEventListener("submit", checkAvailability);
  $("#add-confirm").addEventListener("click", addCoin);
  $("#grid-range").addEventListener("change", () => { state.zoom = null; refreshGrid(); refreshGaps(); });
  $("#summary-range").addEventListener("change", refreshSummary);
  start();
});
