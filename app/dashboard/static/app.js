// The dashboard: state over REST, changes over the event stream, controls by role.
import { Api, ApiError } from "./api.js";
import { CandleChart, EquityChart } from "./charts.js";
import { LiveStream } from "./live.js";

const KEY_STORAGE = "cryptofunk.api_key";
const ROLE_RANK = { viewer: 1, trader: 2, admin: 3 };
const LIST_LIMIT = 50;
const REFRESH_DEBOUNCE_MS = 300;
const CANDLES_EVERY_MS = 5000;

const $ = (selector, root = document) => root.querySelector(selector);
const state = {
  api: null,
  me: null,
  stream: null,
  sessions: [],
  sessionId: null,
  orders: new Map(),
  positions: new Map(),
  agents: new Map(),
  decisions: [],
  decisionId: null,
  searchQuery: null,
  refreshTimers: new Map(),
  equityChart: null,
  candleChart: null,
  candleTimer: null,
};

// ---------- formatting ----------
const number = (value, digits = 2) =>
  value === null || value === undefined ? "" : Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });
const quantity = (value) => (value === null || value === undefined ? "" : String(Number(value)));
const time = (stamp) => (stamp ? new Date(stamp).toLocaleTimeString("en-GB", { hour12: false }) : "");
const dateTime = (stamp) => (stamp ? new Date(stamp).toLocaleString("en-GB", { hour12: false }) : "");

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function signed(value) {
  return cell(number(value), Number(value) > 0 ? "up" : Number(value) < 0 ? "down" : "");
}

function row(cells, attributes = {}) {
  const tr = document.createElement("tr");
  for (const [name, value] of Object.entries(attributes)) tr.dataset[name] = value;
  tr.append(...cells);
  return tr;
}

function fill(table, rows) {
  const body = $(`#${table} tbody`);
  body.replaceChildren(...rows);
}

// ---------- errors next to their field ----------
function clearErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
}

function showError(form, failure) {
  const text = failure instanceof ApiError ? failure.text : String(failure);
  const field = failure instanceof ApiError ? failure.body.field : null;
  const slot = (field && form.querySelector(`[data-error-for="${CSS.escape(field)}"]`))
    || form.querySelector('[data-error-for="_form"]')
    || form.querySelector("[data-error-for]");
  slot.textContent = text;
}

function banner(text) {
  const element = $("#banner");
  element.textContent = text || "";
  element.hidden = !text;
}

// ---------- loading state over REST ----------
async function loadSessions() {
  const body = await state.api.get(`/api/v1/sessions?limit=20`);
  state.sessions = body.sessions;
  if (!state.sessionId || !state.sessions.some((s) => s.id === state.sessionId)) {
    const active = state.sessions.find((s) => s.status === "RUNNING" || s.status === "PAUSED");
    state.sessionId = (active || state.sessions[0] || {}).id || null;
  }
  renderSessions();
  await loadSessionDetail();
}

function renderSessions() {
  fill("sessions", state.sessions.map((s) => {
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = s.id === state.sessionId ? "shown" : "show";
    open.disabled = s.id === state.sessionId;
    open.addEventListener("click", () => {
      state.sessionId = s.id;
      renderSessions();
      loadSessionDetail().catch(report);
    });
    const action = document.createElement("td");
    action.append(open);
    return row([
      cell(s.symbol), cell(s.mode), cell(s.status), cell(dateTime(s.started_at)),
      signed(s.total_pnl), cell(String(s.total_trades)), action,
    ], { sessionId: s.id, status: s.status });
  }));
}

async function loadSessionDetail() {
  const detail = $("#session-detail");
  if (!state.sessionId) {
    detail.hidden = true;
    return;
  }
  const [{ session }, curve] = await Promise.all([
    state.api.get(`/api/v1/sessions/${state.sessionId}`),
    state.api.get(`/api/v1/sessions/${state.sessionId}/equity?limit=5000`),
  ]);
  detail.hidden = false;
  detail.dataset.sessionId = session.id;
  detail.dataset.status = session.status;
  $("#session-title").textContent = `${session.symbol} · ${session.mode} · ${session.status}`;
  const stats = [
    ["Equity", number(session.equity)], ["Cash", number(session.cash)],
    ["Realized P&L", number(session.realized_pnl)], ["Unrealized P&L", number(session.unrealized_pnl)],
    ["Total P&L", number(session.total_pnl)], ["Trades", String(session.total_trades)],
    ["Won / lost", `${session.winning_trades} / ${session.losing_trades}`],
    ["Max drawdown", `${number(Number(session.max_drawdown) * 100)} %`],
    ["Sharpe", number(session.sharpe_ratio)], ["Open positions", String(session.open_positions)],
  ];
  $("#session-stats").replaceChildren(...stats.map(([label, value]) => {
    const pair = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value;
    pair.append(dt, dd);
    return pair;
  }));
  const controls = $("#session-detail .controls");
  $('[data-action="pause"]', controls).disabled = session.status !== "RUNNING";
  $('[data-action="resume"]', controls).disabled = session.status !== "PAUSED";
  $('[data-action="stop"]', controls).disabled = session.status === "STOPPED";
  if (!state.equityChart) state.equityChart = new EquityChart($("#equity-chart"));
  state.equityChart.show(curve.points);
  if (session.status !== "STOPPED") state.equityChart.extend(new Date().toISOString(), session.equity);
  const chart = $("#equity-chart");
  chart.dataset.points = String(state.equityChart.count);
  chart.dataset.last = String(session.equity);
}

async function loadPositions() {
  const body = await state.api.get(`/api/v1/positions?status=open&limit=${LIST_LIMIT}`);
  state.positions = new Map(body.positions.map((p) => [p.id, p]));
  renderPositions();
}

function renderPositions() {
  fill("positions", [...state.positions.values()]
    .filter((p) => p.status !== "CLOSED")
    .map((p) => row([
      cell(p.symbol), cell(p.side), cell(quantity(p.quantity)), cell(number(p.entry_price)),
      signed(p.unrealized_pnl), signed(p.realized_pnl), cell(dateTime(p.entry_time)),
    ], { positionId: p.id })));
}

async function loadOrders() {
  const body = await state.api.get(`/api/v1/orders?limit=${LIST_LIMIT}`);
  state.orders = new Map(body.orders.map((o) => [o.id, o]));
  renderOrders();
}

const CANCELLABLE = new Set(["NEW", "PARTIALLY_FILLED"]);

function renderOrders() {
  const mayTrade = allows("trader");
  const orders = [...state.orders.values()]
    .sort((a, b) => (b.placed_at || "").localeCompare(a.placed_at || ""))
    .slice(0, LIST_LIMIT);
  fill("orders", orders.map((o) => {
    const actions = document.createElement("td");
    if (mayTrade && CANCELLABLE.has(o.status)) {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = "Cancel";
      cancel.addEventListener("click", () => cancelOrder(o.id, actions));
      actions.append(cancel);
    }
    return row([
      cell(time(o.placed_at)), cell(o.symbol), cell(o.side), cell(o.type),
      cell(quantity(o.quantity)), cell(quantity(o.executed_quantity)),
      cell(number(averagePrice(o))), cell(o.status, `status-${o.status}`), actions,
    ], { orderId: o.id, status: o.status });
  }));
}

// What the fills averaged, or the order's own price while nothing is filled.
function averagePrice(order) {
  const filled = Number(order.executed_quantity);
  return filled > 0 ? Number(order.executed_quote_quantity) / filled : order.price;
}

async function cancelOrder(orderId, slot) {
  try {
    const { order } = await state.api.delete(`/api/v1/orders/${orderId}`);
    state.orders.set(order.id, order);
    renderOrders();
  } catch (failure) {
    const note = document.createElement("span");
    note.className = "error";
    note.textContent = failure.text || String(failure);
    slot.append(note);
  }
}

async function loadTrades() {
  const body = await state.api.get(`/api/v1/trades?limit=${LIST_LIMIT}`);
  fill("trades", body.trades.map(tradeRow));
}

function tradeRow(t) {
  return row([
    cell(time(t.executed_at)), cell(t.symbol), cell(t.side, t.side === "BUY" ? "up" : "down"),
    cell(number(t.price)), cell(quantity(t.quantity)), cell(number(t.commission, 4)),
  ], { tradeId: t.id || t.trade_id });
}

async function loadAgents() {
  const body = await state.api.get("/api/v1/agents");
  state.agents = new Map(body.agents.map((a) => [a.name, a]));
  renderAgents();
}

function renderAgents() {
  fill("agents", [...state.agents.values()].map((a) => row([
    cell(a.name), cell(a.status),
    cell(a.is_healthy ? "healthy" : "unhealthy", a.is_healthy ? "up" : "down"),
    cell(dateTime(a.last_seen_at)),
  ], { agent: a.name })));
}

async function loadDecisions() {
  if (state.searchQuery) {
    const body = await state.api.post("/api/v1/decisions/search",
      { query: state.searchQuery, limit: LIST_LIMIT });
    state.decisions = body.results.map((hit) => ({ ...hit.decision, highlight: hit.highlight }));
    const ranked = body.semantic === "on" ? "words and meaning" : "words";
    $("#search-status").textContent = `${body.count} found, ranked by ${ranked}`;
  } else {
    const body = await state.api.get(`/api/v1/decisions?limit=${LIST_LIMIT}`);
    state.decisions = body.decisions;
    $("#search-status").textContent = "";
  }
  renderDecisions();
}

async function submitSearch(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const query = new FormData(form).get("query").trim();
  const previous = state.searchQuery;
  state.searchQuery = query || null;
  try {
    await loadDecisions();
  } catch (failure) {
    state.searchQuery = previous;
    showError(form, failure);
  }
}

function clearSearch() {
  const form = $("#search-form");
  form.reset();
  clearErrors(form);
  state.searchQuery = null;
  loadDecisions().catch(report);
}

function renderDecisions() {
  fill("decisions", state.decisions.map((d) => {
    const tr = row([
      cell(time(d.created_at)), cell(d.agent_name), cell(d.symbol), cell(d.decision),
      cell(number(d.confidence)), cell(d.outcome),
    ], { decisionId: d.id });
    if (d.highlight) tr.title = d.highlight.replaceAll("**", "");
    tr.tabIndex = 0;
    tr.classList.toggle("selected", d.id === state.decisionId);
    tr.addEventListener("click", () => showDecision(d.id).catch(report));
    return tr;
  }));
}

async function showDecision(decisionId) {
  state.decisionId = decisionId;
  renderDecisions();
  const [decision, similar] = await Promise.all([
    state.api.get(`/api/v1/decisions/${decisionId}`),
    state.api.get(`/api/v1/decisions/${decisionId}/similar?limit=5`).catch((failure) => {
      if (failure instanceof ApiError && failure.status === 404) return { similar: [] };
      throw failure;
    }),
  ]);
  const article = $("#decision-detail");
  article.hidden = false;
  article.dataset.decisionId = decisionId;
  $("#decision-title").textContent =
    `${decision.agent_name}: ${decision.decision} ${decision.symbol} (${number(decision.confidence)})`;
  $("#decision-reasoning").textContent = decision.reasoning;
  $("#decision-context").textContent = JSON.stringify(decision.context, null, 2);
  fill("similar", similar.similar.map((s) => {
    const tr = row([
      cell(time(s.created_at)), cell(s.symbol), cell(s.decision), cell(s.outcome),
      cell(number(s.similarity, 3)),
    ], { decisionId: s.id });
    tr.addEventListener("click", () => showDecision(s.id).catch(report));
    return tr;
  }));
}

async function loadSymbols() {
  const body = await state.api.get("/api/v1/market/prices");
  const select = $("#candle-symbol");
  const chosen = select.value;
  const symbols = new Set(body.prices.map((p) => p.symbol));
  for (const s of state.sessions) if (s.status !== "STOPPED") symbols.add(s.symbol);
  select.replaceChildren(...[...symbols].sort().map((symbol) => {
    const option = document.createElement("option");
    option.textContent = symbol;
    return option;
  }));
  const active = state.sessions.find((s) => s.id === state.sessionId);
  if (symbols.has(chosen)) select.value = chosen;
  else if (active && symbols.has(active.symbol)) select.value = active.symbol;
  await loadCandles();
}

async function loadCandles() {
  const symbol = $("#candle-symbol").value;
  if (!symbol) return;
  const interval = $("#candle-interval").value;
  const body = await state.api.get(
    `/api/v1/market/candles/${encodeURIComponent(symbol)}?interval=${interval}&limit=200`);
  if (!state.candleChart) state.candleChart = new CandleChart($("#candle-chart"));
  state.candleChart.show(body.candles);
  $("#candle-chart").dataset.candles = String(body.count);
  const last = body.candles[body.candles.length - 1];
  $("#last-price").textContent = last ? `last ${number(last.close)}` : "no ticks yet";
}

async function loadEngine() {
  const status = await state.api.get("/api/v1/status");
  showEngine(status.engine.state);
}

function showEngine(engineState) {
  const badge = $("#engine");
  badge.textContent = `engine: ${engineState}`;
  badge.className = `badge ${engineState === "active" ? "online" : "offline"}`;
}

async function loadEverything() {
  await Promise.all([
    loadSessions().then(loadSymbols), loadPositions(), loadOrders(), loadTrades(), loadAgents(),
    loadDecisions(), loadEngine(),
  ]);
}

// ---------- live events ----------
function refreshSoon(name, load) {
  clearTimeout(state.refreshTimers.get(name));
  state.refreshTimers.set(name, setTimeout(() => load().catch(report), REFRESH_DEBOUNCE_MS));
}

function onEvent(message) {
  const data = message.data || {};
  switch (message.type) {
    case "order_update": {
      const known = state.orders.get(data.order_id);
      if (known) {
        state.orders.set(data.order_id, { ...known, ...data, id: data.order_id });
        renderOrders();
      }
      refreshSoon("orders", loadOrders);
      break;
    }
    case "trade":
      $("#trades tbody").prepend(tradeRow({ ...data, id: data.trade_id }));
      refreshSoon("session", loadSessions);
      break;
    case "position_update": {
      const id = data.position_id;
      const known = state.positions.get(id) || {};
      state.positions.set(id, { ...known, ...data, id });
      renderPositions();
      refreshSoon("positions", loadPositions);
      refreshSoon("session", loadSessions);
      break;
    }
    case "agent_status":
      state.agents.set(data.name, { ...state.agents.get(data.name), ...data });
      renderAgents();
      break;
    case "decision":
      refreshSoon("decisions", loadDecisions);
      break;
    case "system_status":
      if (data.status === "engine_started") showEngine("active");
      else if (data.status === "engine_stopped") showEngine("none");
      refreshSoon("session", loadSessions);
      break;
    case "error":
      banner(`${data.error}${data.details ? `: ${data.details}` : ""}`);
      break;
    default:
      break;
  }
}

function onStreamState(name, detail) {
  const badge = $("#connection");
  badge.dataset.state = name;
  badge.className = `badge ${name === "connected" ? "online" : "offline"}`;
  badge.textContent = name === "offline" ? "disconnected" : name;
  badge.title = detail || "";
  if (name === "offline") banner(`Live updates are down (${detail}). Figures may be stale.`);
  else if (name === "connected") banner("");
}

// ---------- controls ----------
function allows(role) {
  return state.me && ROLE_RANK[state.me.role] >= ROLE_RANK[role];
}

function applyRole() {
  for (const element of document.querySelectorAll("[data-needs]")) {
    element.hidden = !allows(element.dataset.needs);
  }
  const me = state.me;
  $("#identity").textContent = me.auth_enabled ? `${me.name} (${me.role})` : "authentication off";
  $("#sign-out").hidden = !me.auth_enabled;
}

function formBody(form, numeric) {
  const body = {};
  for (const [name, value] of new FormData(form).entries()) {
    if (value === "") continue;
    body[name] = numeric.includes(name) ? Number(value) : value;
  }
  return body;
}

async function submitStart(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  try {
    const started = await state.api.post("/api/v1/trade/start", formBody(form, ["initial_capital"]));
    state.sessionId = started.session_id;
    await loadSessions();
    await loadSymbols();
  } catch (failure) {
    showError(form, failure);
  }
}

async function submitOrder(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  try {
    const { order } = await state.api.post(
      "/api/v1/orders", formBody(form, ["quantity", "price", "stop_price"]));
    state.orders.set(order.id, order);
    renderOrders();
  } catch (failure) {
    showError(form, failure);
  }
}

async function sessionAction(action) {
  const slot = $('#session-detail [data-error-for="session"]');
  slot.textContent = "";
  try {
    await state.api.post(`/api/v1/trade/${action}`, { session_id: state.sessionId });
    await loadSessions();
  } catch (failure) {
    slot.textContent = failure.text || String(failure);
  }
}

function report(failure) {
  if (failure instanceof ApiError && failure.status === 401) {
    signOut("Your key was refused; sign in again.");
    return;
  }
  banner(failure instanceof ApiError ? failure.text : String(failure));
}

// ---------- signing in ----------
async function open(key) {
  const api = new Api(key);
  const me = await api.get("/api/v1/auth/me");
  state.api = api;
  state.me = me;
  $("#sign-in").hidden = true;
  $("#main").hidden = false;
  applyRole();
  await loadEverything();
  state.stream = new LiveStream({
    tokenSource: async () => {
      if (!me.auth_enabled || me.authenticated_by !== "key") return null;
      return (await api.post("/api/v1/auth/token")).token;
    },
    onEvent,
    onState: onStreamState,
    onReconnect: () => loadEverything().catch(report),
  });
  state.stream.start();
  state.candleTimer = setInterval(() => loadCandles().catch(report), CANDLES_EVERY_MS);
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  if (state.stream) state.stream.stop();
  clearInterval(state.candleTimer);
  state.stream = null;
  state.me = null;
  $("#main").hidden = true;
  $("#sign-in").hidden = false;
  onStreamState("offline", "signed out");
  banner(message || "");
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const key = $("#api-key").value.trim();
  try {
    await open(key);
    sessionStorage.setItem(KEY_STORAGE, key);
    form.reset();
  } catch (failure) {
    showError(form, failure);
  }
}

async function start() {
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut());
  $("#start-form").addEventListener("submit", submitStart);
  $("#order-form").addEventListener("submit", submitOrder);
  $("#search-form").addEventListener("submit", submitSearch);
  $("#search-clear").addEventListener("click", clearSearch);
  for (const button of document.querySelectorAll("#session-detail [data-action]")) {
    button.addEventListener("click", () => sessionAction(button.dataset.action));
  }
  $("#candle-symbol").addEventListener("change", () => loadCandles().catch(report));
  $("#candle-interval").addEventListener("change", () => loadCandles().catch(report));
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored === null) {
    $("#sign-in").hidden = false;  // nothing to try yet: no request that can only be refused
    return;
  }
  try {
    await open(stored);
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 401) {
      sessionStorage.removeItem(KEY_STORAGE);
      $("#sign-in").hidden = false;
      return;
    }
    $("#sign-in").hidden = false;
    banner(failure instanceof ApiError ? failure.text : String(failure));
  }
}

start();
