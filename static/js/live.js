// The live assessment: sends each keystroke over /ws/predict/ and shows the newest risk.
// Without JavaScript the page is the plain form; the submit button always leads to the result page.
// Protocol (README, "Live predictions"): {"type": "update", "seq", "features"} in; "prediction",
// "cleared" and "error" replies out. Replies older than the newest one shown are ignored.

const form = document.getElementById("assessment-form");
const panel = document.getElementById("live-panel");

// The page's ?board=NAME puts this session on that kiosk board (the server checks the name).
const board = new URLSearchParams(location.search).get("board");
const boardQuery = board ? `?board=${encodeURIComponent(board)}` : "";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 5000;

if (form && panel && "WebSocket" in window) {
  start();
}

function start() {
  const inputs = [...form.querySelectorAll("input[data-feature]")];
  const byKey = new Map(inputs.map((input) => [input.dataset.feature, input]));
  const labels = new Map(
    [...panel.querySelectorAll("[data-contribution]")].map((row) => [
      row.dataset.contribution,
      row.querySelector("th").textContent.trim(),
    ]),
  );
  const el = (id) => document.getElementById(id);
  const ui = {
    status: el("live-status"),
    risk: el("live-risk"),
    gauge: el("live-gauge"),
    value: el("live-risk-value"),
    text: el("live-risk-text"),
    bandLine: el("live-band-line"),
    band: el("live-band"),
    problem: el("live-problem"),
    warnings: el("live-warnings"),
    imputed: el("live-imputed"),
    model: el("live-model"),
  };

  let socket = null;
  let nextSeq = 0; // seq of the next update; grows across reconnects
  let shownSeq = -1; // seq of the newest reply shown
  let attempt = 0; // failed connection attempts in a row
  let retryTimer = null;
  const sentAt = new Map(); // feature -> seq of the last update that carried it
  const serverErrors = new Map(); // feature -> seq of the update the server refused for it

  panel.hidden = false;

  // Reading the form. undefined: not a number yet ("1e", "-"), so nothing is sent for it.
  function readValue(input) {
    if (input.validity.badInput) return undefined;
    const raw = input.value.trim();
    if (raw === "") return null;
    const value = Number(raw);
    return Number.isFinite(value) ? value : undefined;
  }

  function locallyValid(input, value) {
    if (value === undefined) return false;
    if (value === null) return true;
    if (value < Number(input.min) || value > Number(input.max)) return false;
    return input.inputMode !== "numeric" || Number.isInteger(value);
  }

  function fullState() {
    const features = {};
    for (const [key, input] of byKey) {
      const value = readValue(input);
      if (locallyValid(input, value)) features[key] = value;
    }
    return features;
  }

  // Field messages: the local "not a number yet" and the server's refusals, next to the field.
  function fieldMessage(input, text) {
    const field = input.closest(".field");
    let message = field.querySelector(".live-error");
    if (!message) {
      message = document.createElement("p");
      message.className = "error live-error";
      message.id = `${input.id}-live-error`;
      field.append(message);
    }
    message.textContent = text || "";
    message.hidden = !text;
    field.classList.toggle("live-invalid", Boolean(text));
    const describedBy = new Set((input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
    if (text) describedBy.add(message.id);
    else describedBy.delete(message.id);
    input.setAttribute("aria-describedby", [...describedBy].join(" "));
    input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  // Sending.
  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function sendUpdate(features) {
    const seq = nextSeq++;
    for (const key of Object.keys(features)) sentAt.set(key, seq);
    send({ type: "update", seq, features });
  }

  form.addEventListener("input", (event) => {
    const input = event.target;
    const key = input.dataset && input.dataset.feature;
    if (!key) return;
    const value = readValue(input);
    if (value === undefined) {
      fieldMessage(input, "Not a complete number yet.");
      return;
    }
    if (!serverErrors.has(key)) fieldMessage(input, "");
    sendUpdate({ [key]: value });
  });

  // Receiving.
  function onReply(reply) {
    if (reply.type === "prediction" || reply.type === "cleared") {
      if (reply.seq <= shownSeq) return; // an older answer overtaken by a newer one
      shownSeq = reply.seq;
      for (const [key, refusedSeq] of serverErrors) {
        const sent = sentAt.get(key) ?? -1;
        if (sent > refusedSeq && sent <= reply.seq) {
          serverErrors.delete(key);
          const input = byKey.get(key);
          fieldMessage(input, readValue(input) === undefined ? "Not a complete number yet." : "");
        }
      }
      showProblem("");
      if (reply.type === "prediction") showPrediction(reply);
      else showCleared();
    } else if (reply.type === "error" && reply.errors) {
      for (const [key, messages] of Object.entries(reply.errors)) {
        const input = byKey.get(key);
        if (input) {
          serverErrors.set(key, reply.seq);
          fieldMessage(input, messages.join(" "));
        } else {
          showProblem(messages.join(" "));
        }
      }
    } else if (reply.type === "error" && reply.code === "model_unavailable") {
      showProblem("The model is unavailable right now; the result page will say why.");
    }
  }

  // Showing.
  function showProblem(text) {
    ui.problem.textContent = text;
    ui.problem.hidden = !text;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text; // no repeated live-region announcements
  }

  function showPrediction(p) {
    const percent = Math.round(1000 * p.risk) / 10;
    ui.risk.className = `live-risk band-${p.band}`;
    ui.gauge.setAttribute("stroke-dasharray", `${Math.max(0, Math.min(100, 100 * p.risk))} 100`);
    setText(ui.value, `${percent.toFixed(1)}%`);
    setText(ui.text, "risk of diabetes within five years");
    setText(ui.band, p.band);
    ui.bandLine.hidden = false;

    const largest = Math.max(...Object.values(p.contributions).map(Math.abs), 0) || 1;
    for (const row of panel.querySelectorAll("[data-contribution]")) {
      const c = p.contributions[row.dataset.contribution] ?? 0;
      const bar = row.querySelector(".bar");
      bar.className = `bar ${c >= 0 ? "up" : "down"}`;
      bar.style.width = `${((50 * Math.abs(c)) / largest).toFixed(1)}%`;
      row.querySelector(".num").textContent = c.toFixed(2);
      row.classList.toggle("imputed", p.imputed.includes(row.dataset.contribution));
    }

    const estimated = p.imputed.map((key) => labels.get(key) || key);
    ui.imputed.textContent = estimated.length ? `Estimated from similar people: ${estimated.join(", ")}.` : "";
    ui.imputed.hidden = !estimated.length;

    ui.warnings.replaceChildren(
      ...p.warnings.map((warning) => {
        const item = document.createElement("li");
        item.textContent = describeWarning(warning);
        return item;
      }),
    );
    ui.warnings.hidden = !p.warnings.length;
    ui.model.textContent = `Model ${p.model.name} ${p.model.version}`;
  }

  function describeWarning(warning) {
    const [kind, key] = warning.split(":");
    if (kind === "extrapolated" && labels.has(key)) {
      return `${labels.get(key)} is outside the range the model was trained on, so this estimate is less certain.`;
    }
    return warning;
  }

  function showCleared() {
    ui.risk.className = "live-risk band-none";
    ui.gauge.setAttribute("stroke-dasharray", "0 100");
    setText(ui.value, "–");
    setText(ui.text, "Enter a measurement to see your risk of diabetes within five years.");
    ui.bandLine.hidden = true;
    for (const row of panel.querySelectorAll("[data-contribution]")) {
      row.querySelector(".bar").style.width = "0%";
      row.querySelector(".num").textContent = "–";
      row.classList.remove("imputed");
    }
    ui.imputed.hidden = true;
    ui.warnings.hidden = true;
  }

  function showStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  // The connection: reconnect with capped, jittered exponential backoff; re-send the whole state.
  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws/predict/${boardQuery}`);
    socket = ws;
    ws.addEventListener("open", () => {
      attempt = 0;
      showStatus("connected", "connected");
      const features = fullState();
      if (Object.values(features).some((value) => value !== null)) sendUpdate(features);
    });
    ws.addEventListener("message", (event) => {
      let reply;
      try {
        reply = JSON.parse(event.data);
      } catch {
        return;
      }
      onReply(reply);
    });
    ws.addEventListener("close", () => {
      if (socket !== ws) return;
      socket = null;
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    attempt += 1;
    if (navigator.onLine === false) showStatus("offline", "offline");
    else showStatus("reconnecting", "reconnecting…");
    retryTimer = setTimeout(connect, delay);
  }

  window.addEventListener("online", () => {
    if (!socket) connect();
  });
  window.addEventListener("offline", () => showStatus("offline", "offline"));
  // A page restored from the back/forward cache has a closed socket: open a new one.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && !socket) connect();
  });

  connect();
}
