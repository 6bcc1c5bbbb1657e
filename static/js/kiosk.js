// Kiosk board: shows each anonymous shared session of a board as a tile with its risk gauge,
// highest risk first (never in order of arrival, and never with an id: docs/kiosk.md).
// The server sends a snapshot on connect, then session / session_end events and a heartbeat every
// 5 s. After a reconnect the board is rebuilt from the new snapshot. The percent shown is the
// server's ("percent": the whole percent kept inside its band), so it never reads as another band.
// When nothing arrives for STALE_AFTER_MS the board is marked stale, in words and style (announced
// once to screen readers), and the page reconnects: a frozen server or Redis never leaves it
// showing old numbers as "live".

const root = document.getElementById("kiosk");
const board = root.dataset.board;
const tilesEl = document.getElementById("kiosk-tiles");
const emptyEl = document.getElementById("kiosk-empty");
const connectionEl = document.getElementById("kiosk-connection");
const clockEl = document.getElementById("kiosk-clock");
const staleEl = document.getElementById("kiosk-stale");
const dimmed = [tilesEl, emptyEl, document.querySelector(".kiosk-stats")].filter(Boolean); // greyed while stale
const BANDS = ["low", "moderate", "high"];
const RETRY_MAX_MS = 2000;
const STALE_AFTER_MS = 12000; // two heartbeats missed, and some slack
const OPEN_TIMEOUT_MS = 10000; // a handshake that hangs longer is given up and retried
const MAX_TILES = 200; // as many as a snapshot lists (the highest risks); "active" still counts them all

const sessions = new Map(); // id -> {risk, band, percent, updated_at}
let hidden = 0; // sessions on the board that are not shown as tiles
let attempt = 0;
let socket = null; // the current socket; events of sockets given up on are ignored
let lastFrame = 0; // when the current socket last brought anything
let live = false;
let stale = false;

function setConnection(state, text) {
  connectionEl.dataset.state = state;
  connectionEl.textContent = text;
}

function tileFor(id) {
  let tile = tilesEl.querySelector(`[data-session="${CSS.escape(id)}"]`);
  if (!tile) {
    tile = document.createElement("article");
    tile.className = "tile";
    tile.dataset.session = id;
    tile.innerHTML = '<div class="gauge"><span class="risk"></span></div><div class="band"></div>';
    tilesEl.append(tile);
  }
  return tile;
}

function render(id) {
  const s = sessions.get(id);
  const tile = tileFor(id);
  const percent = Number.isInteger(s.percent) ? s.percent : Math.round(s.risk * 100);
  tile.className = `tile band-${BANDS.includes(s.band) ? s.band : "unknown"}`;
  tile.style.order = String(Math.round((1 - s.risk) * 1e6)); // highest risk first, whatever arrived when
  tile.querySelector(".gauge").style.setProperty("--p", String(percent));
  tile.querySelector(".risk").textContent = `${percent}%`;
  tile.querySelector(".band").textContent = s.band;
  tile.setAttribute("aria-label", `${percent} percent, ${s.band}`);
}

function removeTile(id) {
  sessions.delete(id);
  tilesEl.querySelector(`[data-session="${CSS.escape(id)}"]`)?.remove();
}

function renderStats() {
  const counts = { low: 0, moderate: 0, high: 0 };
  for (const s of sessions.values()) if (s.band in counts) counts[s.band] += 1;
  document.getElementById("stat-active").textContent = String(sessions.size + hidden);
  for (const band of BANDS) document.getElementById(`stat-${band}`).textContent = String(counts[band]);
  emptyEl.hidden = sessions.size + hidden > 0;
  // Smaller tiles as more people share, so a lobby screen shows as many as it can without
  // scrolling (static/css/kiosk.css); the lowest risks are the ones past the bottom edge.
  tilesEl.dataset.density = sessions.size > 40 ? "dense" : sessions.size > 15 ? "compact" : "roomy";
}

function stamp(iso) {
  const when = iso ? new Date(iso) : new Date();
  clockEl.dateTime = when.toISOString();
  clockEl.textContent = when.toLocaleTimeString();
}

function markStale(why) {
  live = false;
  setConnection("stale", `not live: ${why}, reconnecting…`);
  if (stale) return; // said once per outage: a screen reader hears it once
  stale = true;
  root.dataset.stale = "true";
  for (const el of dimmed) Object.assign(el.style, { opacity: "0.45", filter: "grayscale(1)" });
  staleEl.hidden = false;
  const when = clockEl.dateTime ? `is from ${clockEl.textContent}, not now` : "may be out of date";
  staleEl.textContent = `Not live: ${why}. What the board shows ${when}; reconnecting…`;
}

function markLive() {
  live = true;
  setConnection("open", "live");
  if (!stale) return;
  stale = false;
  delete root.dataset.stale;
  for (const el of dimmed) Object.assign(el.style, { opacity: "", filter: "" });
  staleEl.hidden = true;
  staleEl.textContent = "";
}

function handle(message) {
  if (message.type === "snapshot") {
    sessions.clear();
    tilesEl.replaceChildren();
    for (const s of message.sessions) {
      sessions.set(s.id, s);
      render(s.id);
    }
    hidden = Math.max(0, (message.stats?.active ?? 0) - sessions.size);
    const latest = message.sessions.map((s) => s.updated_at).sort().at(-1);
    stamp(latest);
    markLive();
  } else if (message.type === "heartbeat") {
    if (typeof message.active === "number") hidden = Math.max(0, message.active - sessions.size);
  } else if (message.type === "session") {
    if (!sessions.has(message.id) && sessions.size >= MAX_TILES) {
      // Keep the highest risks as tiles; the lowest stays counted in "active".
      const lowest = [...sessions.entries()].sort((a, b) => a[1].risk - b[1].risk)[0][0];
      removeTile(lowest);
      hidden += 1;
    }
    sessions.set(message.id, message);
    render(message.id);
    stamp(message.updated_at);
  } else if (message.type === "session_end") {
    if (sessions.has(message.id)) removeTile(message.id);
    else hidden = Math.max(0, hidden - 1);
    stamp();
  }
  renderStats();
}

function giveUp(old) {
  // Stop listening to a socket that went quiet; closing it may itself hang, so do not wait.
  if (old === socket) socket = null;
  try {
    old.close();
  } catch {
    // already closing
  }
}

function retry() {
  // Exponential backoff with jitter, capped at 2 s: a board is back within ~2 s of its server
  // (or Redis) returning, and a handful of kiosks retrying every 1-2 s costs nothing.
  const delay = Math.min(RETRY_MAX_MS, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
  attempt += 1;
  setTimeout(connect, delay);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const current = new WebSocket(`${scheme}://${location.host}/ws/kiosk/${encodeURIComponent(board)}/`);
  socket = current;
  lastFrame = Date.now();
  if (!stale) setConnection(attempt ? "reconnecting" : "connecting", attempt ? "reconnecting…" : "connecting…");
  current.addEventListener("open", () => {
    if (current !== socket) return;
    attempt = 0;
    lastFrame = Date.now();
  });
  current.addEventListener("message", (event) => {
    if (current !== socket) return;
    lastFrame = Date.now();
    try {
      handle(JSON.parse(event.data));
    } catch (error) {
      console.warn("kiosk: ignored a message it could not read", error);
    }
  });
  current.addEventListener("close", (event) => {
    if (current !== socket) return;
    socket = null;
    // 1011: the server is up but cannot read the board (its Redis is down or frozen).
    markStale(event.code === 1011 ? "the server cannot reach the board's data" : "the connection to the server was lost");
    retry();
  });
}

// The watchdog: a socket that brings nothing for too long (no heartbeat) or cannot finish its
// handshake is given up on, and the page reconnects.
setInterval(() => {
  if (socket === null) return;
  const quiet = Date.now() - lastFrame;
  if (socket.readyState === WebSocket.CONNECTING && quiet > OPEN_TIMEOUT_MS) {
    giveUp(socket);
    retry();
  } else if (socket.readyState === WebSocket.OPEN && quiet > STALE_AFTER_MS) {
    markStale(live ? "no news from the server for a while" : "the board is not answering");
    giveUp(socket);
    retry();
  }
}, 1000);

renderStats();
connect();
