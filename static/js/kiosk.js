// Kiosk board: shows each anonymous live session of a board as a tile with its risk gauge.
// The server sends a snapshot on connect, then session / session_end events; after a reconnect
// the board is rebuilt from the new snapshot.

const root = document.getElementById("kiosk");
const board = root.dataset.board;
const tilesEl = document.getElementById("kiosk-tiles");
const emptyEl = document.getElementById("kiosk-empty");
const connectionEl = document.getElementById("kiosk-connection");
const clockEl = document.getElementById("kiosk-clock");
const BANDS = ["low", "moderate", "high"];
const RETRY_MAX_MS = 2000;

const sessions = new Map(); // id -> {risk, band, updated_at}
let attempt = 0;

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
    tile.innerHTML = '<div class="gauge"><span class="risk"></span></div><div class="band"></div><div class="who"></div>';
    tile.querySelector(".who").textContent = `session ${id.slice(0, 6)}`;
    tilesEl.append(tile);
  }
  return tile;
}

function render(id) {
  const s = sessions.get(id);
  const tile = tileFor(id);
  const percent = Math.round(s.risk * 1000) / 10;
  tile.className = `tile band-${BANDS.includes(s.band) ? s.band : "unknown"}`;
  tile.querySelector(".gauge").style.setProperty("--p", String(percent));
  tile.querySelector(".risk").textContent = `${percent.toFixed(0)}%`;
  tile.querySelector(".band").textContent = s.band;
  tile.setAttribute("aria-label", `session ${id.slice(0, 6)}: ${percent.toFixed(0)} percent, ${s.band}`);
}

function renderStats() {
  const counts = { low: 0, moderate: 0, high: 0 };
  for (const s of sessions.values()) if (s.band in counts) counts[s.band] += 1;
  document.getElementById("stat-active").textContent = String(sessions.size);
  for (const band of BANDS) document.getElementById(`stat-${band}`).textContent = String(counts[band]);
  emptyEl.hidden = sessions.size > 0;
}

function stamp(iso) {
  const when = iso ? new Date(iso) : new Date();
  clockEl.dateTime = when.toISOString();
  clockEl.textContent = when.toLocaleTimeString();
}

function handle(message) {
  if (message.type === "snapshot") {
    sessions.clear();
    tilesEl.replaceChildren();
    for (const s of message.sessions) {
      sessions.set(s.id, s);
      render(s.id);
    }
    const latest = message.sessions.map((s) => s.updated_at).sort().at(-1);
    stamp(latest);
  } else if (message.type === "session") {
    sessions.set(message.id, message);
    render(message.id);
    stamp(message.updated_at);
  } else if (message.type === "session_end") {
    sessions.delete(message.id);
    tilesEl.querySelector(`[data-session="${CSS.escape(message.id)}"]`)?.remove();
    stamp();
  }
  renderStats();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/kiosk/${encodeURIComponent(board)}/`);
  setConnection(attempt ? "reconnecting" : "connecting", attempt ? "reconnecting…" : "connecting…");
  socket.addEventListener("open", () => {
    attempt = 0;
    setConnection("open", "live");
  });
  socket.addEventListener("message", (event) => {
    try {
      handle(JSON.parse(event.data));
    } catch (error) {
      console.warn("kiosk: ignored a message it could not read", error);
    }
  });
  socket.addEventListener("close", () => {
    // Exponential backoff with jitter, capped at 2 s: a board is back within ~2 s of its server
    // (or Redis) returning, and a handful of kiosks retrying every 1-2 s costs nothing.
    const delay = Math.min(RETRY_MAX_MS, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    setConnection("closed", `offline, retrying in ${Math.ceil(delay / 1000)} s`);
    setTimeout(connect, delay);
  });
}

renderStats();
connect();
