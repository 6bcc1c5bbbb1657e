// The live assessment: sends each keystroke over /ws/predict/ and shows the newest risk, in a
// compact strip that stays on screen while typing and in the full panel after the form.
// Without JavaScript the page is the plain form; the submit button always leads to the result page.
// Protocol (README, "Live predictions"): {"type": "update", "seq", "features"} in; "prediction",
// "cleared" and "error" replies out. Replies older than the newest one shown are ignored.
// Never a stale number shown as current (README, "The person's pages"): whenever the risk shown
// does not describe the form (a field invalid or half-typed, an answer pending, the socket down),
// the strip and the panel say so in words and style; a screen reader hears each reason once.

const form = document.getElementById("assessment-form");
const panel = document.getElementById("live-panel");

// A page reached from a kiosk board's code (?board=NAME) offers to share on that board; nothing is
// shared until the person ticks the box, and unticking it stops (docs/kiosk.md, "Sharing").
const shareBox = document.getElementById("share");

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 5000;
const MG_DL_PER_MMOL_L = 18.016; // as live/forms.py
const SMALL_POINTS = 0.5; // as live/wording.py

if (form && panel && "WebSocket" in window) {
  start();
}

// Reading what a person typed, as live/forms.py reads it: "33,6" is 33.6; "1,000" is unclear.
// Returns {value} (null for blank), or {problem} with words for the person.
export function readTyped(raw) {
  const text = raw.trim();
  if (text === "") return { value: null };
  let normal = text;
  if (text.includes(",")) {
    if (/^[+-]?\d{1,3},\d{3}$/.test(text)) {
      return {
        problem: `Is ${text} a thousand-separated number or a decimal? Type it without the comma, or with a point for decimals.`,
      };
    }
    if (!/^[+-]?\d+,\d+$/.test(text)) return { problem: "Use digits and at most one decimal point or comma." };
    normal = text.replace(",", ".");
  }
  if (/^[+-]?(\d+\.?\d*|\.\d+)$/.test(normal)) return { value: Number(normal) };
  if (/^[+-]?(\d+\.?\d*)?[eE]?[+-]?$/.test(normal) || normal === ".") return { problem: "Not a complete number yet." };
  return { problem: "Use digits and at most one decimal point or comma." };
}

function start() {
  const inputs = [...form.querySelectorAll("input[data-feature]")];
  const byKey = new Map(inputs.map((input) => [input.dataset.feature, input]));
  const rows = [...panel.querySelectorAll("[data-contribution]")];
  const labels = new Map(rows.map((row) => [row.dataset.contribution, row.dataset.label]));
  const messages = new Map(
    [...document.querySelectorAll("#warning-texts [data-warning]")].map((p) => [p.dataset.warning, p.textContent]),
  );
  // Clinical warnings also show under their field and in the strip: on a phone the panel is below.
  const clinicalKeys = new Map(
    [...document.querySelectorAll("#warning-texts [data-key]")].map((p) => [p.dataset.warning, p.dataset.key]),
  );
  const glucoseUnit = form.querySelector("[data-glucose-unit]");
  const el = (id) => document.getElementById(id);
  const ui = {
    strip: el("risk-strip"),
    stripValue: el("strip-value"),
    stripBand: el("strip-band"),
    stripFresh: el("strip-fresh"),
    stripStatus: el("strip-status"),
    stripClinical: el("strip-clinical"),
    status: el("live-status"),
    risk: el("live-risk"),
    gauge: el("live-gauge"),
    value: el("live-risk-value"),
    text: el("live-risk-text"),
    bandLine: el("live-band-line"),
    band: el("live-band"),
    pending: el("live-pending"),
    stale: el("live-stale"),
    problem: el("live-problem"),
    clinical: el("live-clinical"),
    warnings: el("live-warnings"),
    imputed: el("live-imputed"),
    model: el("live-model"),
  };

  let socket = null;
  let nextSeq = 0; // seq of the next update; grows across reconnects
  let shownSeq = -1; // seq of the newest reply shown
  let answeredSeq = -1; // seq of the newest reply of any kind (an error answers too)
  let shownRisk = false; // a number is on screen
  let attempt = 0; // failed connection attempts in a row
  let retryTimer = null;
  const sentAt = new Map(); // feature -> seq of the last update that carried it
  const serverErrors = new Map(); // feature -> seq of the update the server refused for it
  const localErrors = new Map(); // feature -> words: what is typed is not a number (yet)

  panel.hidden = false;
  ui.strip.hidden = false;

  // Reading the form.
  function modelValue(key, value) {
    if (value === null || key !== "glucose" || !glucoseUnit || glucoseUnit.value !== "mmol/L") return value;
    return Math.round(value * MG_DL_PER_MMOL_L * 10) / 10; // the model and the API keep mg/dL
  }

  function read(key) {
    const result = readTyped(byKey.get(key).value);
    return "problem" in result ? result : { value: modelValue(key, result.value) };
  }

  function fullState() {
    const features = {};
    for (const key of byKey.keys()) {
      const result = read(key);
      if (!("problem" in result)) features[key] = result.value;
    }
    return features;
  }

  // Field messages: what is typed is not a number yet, or the server refused it.
  function fieldMessage(input, text) {
    const field = input.closest(".field");
    let message = field.querySelector(".live-error");
    if (!message) {
      message = document.createElement("p");
      message.className = "error live-error";
      message.id = `${input.id}-live-error`;
      message.setAttribute("aria-live", "polite");
      input.closest(".input-row").after(message);
    }
    if (message.textContent !== (text || "")) message.textContent = text || "";
    message.hidden = !text;
    field.classList.toggle("live-invalid", Boolean(text));
    const describedBy = new Set((input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
    if (text) describedBy.add(message.id);
    else describedBy.delete(message.id);
    input.setAttribute("aria-describedby", [...describedBy].join(" "));
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  function refreshField(key) {
    const input = byKey.get(key);
    // A refused submission already says what is wrong under the field: say it once.
    if (input.closest(".field").querySelector("p.error:not(.live-error)")) return;
    const local = localErrors.get(key);
    const server = serverErrors.has(key) ? serverErrors.get(key).text : "";
    fieldMessage(input, local || server);
  }

  // Sending.
  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function sendUpdate(features) {
    const seq = nextSeq++;
    for (const key of Object.keys(features)) sentAt.set(key, seq);
    send({ type: "update", seq, features });
    showFreshness();
  }

  // The server's message from a refused submission (no-JS path) goes once the field is edited.
  function dropRenderedError(input) {
    const rendered = input.closest(".field").querySelector("p.error:not(.live-error)");
    if (!rendered) return;
    const ids = (input.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== rendered.id);
    input.setAttribute("aria-describedby", ids.join(" "));
    rendered.remove();
  }

  function onFieldInput(input) {
    dropRenderedError(input);
    const key = input.dataset.feature;
    const result = read(key);
    if ("problem" in result) {
      localErrors.set(key, result.problem);
      refreshField(key);
      showFreshness();
      return;
    }
    localErrors.delete(key);
    refreshField(key);
    sendUpdate({ [key]: result.value });
  }

  form.addEventListener("input", (event) => {
    if (event.target.dataset && event.target.dataset.feature) onFieldInput(event.target);
  });
  if (glucoseUnit) {
    glucoseUnit.addEventListener("change", () => {
      el("glucose-unit-label").textContent = glucoseUnit.value;
      onFieldInput(byKey.get("glucose"));
    });
  }

  // Receiving.
  function onReply(reply) {
    if (Number.isInteger(reply.seq)) answeredSeq = Math.max(answeredSeq, reply.seq);
    if (reply.type === "prediction" || reply.type === "cleared") {
      if (reply.seq <= shownSeq) return showFreshness(); // an older answer overtaken by a newer one
      shownSeq = reply.seq;
      for (const [key, refused] of serverErrors) {
        const sent = sentAt.get(key) ?? -1;
        if (sent > refused.seq && sent <= reply.seq) {
          serverErrors.delete(key);
          refreshField(key);
        }
      }
      showProblem("");
      if (reply.type === "prediction") showPrediction(reply);
      else showCleared();
    } else if (reply.type === "error" && reply.errors) {
      for (const [key, texts] of Object.entries(reply.errors)) {
        if (byKey.has(key)) {
          serverErrors.set(key, { seq: reply.seq, text: texts.join(" ") });
          refreshField(key);
        } else {
          showProblem(texts.join(" "));
        }
      }
    } else if (reply.type === "shared") {
      showShared(reply);
    } else if (reply.type === "error" && reply.code === "model_unavailable") {
      showProblem("The model is unavailable right now; the result page will say why.");
    }
    showFreshness();
  }

  // Showing.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text; // no repeated live-region announcements
  }

  function showProblem(text) {
    setText(ui.problem, text);
    ui.problem.hidden = !text;
  }

  // One decimal, kept inside the band shown beside it (live/wording.py shown_percent: the same
  // rule on every surface), so 0.4996 in "moderate" reads 49.9%, never 50.0%.
  const bands = panel && panel.dataset.bands ? JSON.parse(panel.dataset.bands) : {};
  function percentText(risk, band) {
    let shown = Math.round(1000 * risk);
    const range = bands[band];
    if (range) {
      const floor = Math.ceil(Math.round(range[0] * 1000 * 1e6) / 1e6);
      const ceiling = range[1] >= 1 ? 1000 : Math.ceil(Math.round(range[1] * 1000 * 1e6) / 1e6) - 1;
      shown = Math.min(Math.max(shown, floor), Math.max(floor, ceiling));
    }
    return `${(shown / 10).toFixed(1)}%`;
  }

  function driverPhrase(label, points) {
    if (Math.abs(points) < SMALL_POINTS) return `${label} makes little difference`;
    const size = Math.abs(points) >= 1.5 ? Math.abs(points).toFixed(0) : "1";
    return `${label} ${points > 0 ? "adds" : "takes off"} about ${size} ${size === "1" ? "point" : "points"}`;
  }

  function showPrediction(p) {
    shownRisk = true;
    const percent = percentText(p.risk, p.band);
    ui.risk.className = `live-risk band-${p.band}`;
    ui.strip.classList.remove("band-none", "band-low", "band-moderate", "band-high");
    ui.strip.classList.add(`band-${p.band}`);
    ui.gauge.setAttribute("stroke-dasharray", `${Math.max(0, Math.min(100, 100 * p.risk))} 100`);
    setText(ui.value, percent);
    setText(ui.text, "risk of diabetes within five years");
    setText(ui.band, p.band);
    ui.bandLine.hidden = false;
    setText(ui.stripValue, percent);
    setText(ui.stripBand, `${p.band} risk`);

    const points = p.points || {};
    const largest = Math.max(...Object.values(points).map(Math.abs), 0) || 1;
    for (const row of rows) {
      const key = row.dataset.contribution;
      const value = points[key] ?? 0;
      const width = (50 * Math.abs(value)) / largest;
      const bar = row.querySelector(".bar");
      bar.setAttribute("class", `bar ${value >= 0 ? "up" : "down"}`);
      bar.setAttribute("x", String(value >= 0 ? 50 : 50 - width));
      bar.setAttribute("width", width.toFixed(1));
      setText(row.querySelector(".phrase"), driverPhrase(labels.get(key), value));
      setText(row.querySelector(".num"), `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(1)}`);
      row.classList.toggle("imputed", p.imputed.includes(key));
    }

    const estimated = p.imputed.map((key) => labels.get(key) || key);
    setText(ui.imputed, estimated.length ? `Estimated from similar people: ${estimated.join(", ")}.` : "");
    ui.imputed.hidden = !estimated.length;

    const clinical = p.warnings.filter((w) => w.startsWith("clinical:"));
    const cautions = p.warnings.filter((w) => !w.startsWith("clinical:"));
    showList(ui.clinical, clinical);
    showClinicalAtFields(clinical);
    showList(ui.warnings, cautions);
    setText(ui.model, `Model ${p.model.name} ${p.model.version}`);
  }

  function showList(list, codes) {
    const texts = codes.map((code) => messages.get(code) || code);
    const now = [...list.children].map((item) => item.textContent);
    if (now.join("\n") !== texts.join("\n")) {
      list.replaceChildren(
        ...texts.map((text) => {
          const item = document.createElement("li");
          item.textContent = text;
          return item;
        }),
      );
    }
    list.hidden = !texts.length;
  }

  function showClinicalAtFields(codes) {
    const byField = new Map(codes.filter((code) => clinicalKeys.has(code)).map((code) => [clinicalKeys.get(code), code]));
    for (const key of new Set(clinicalKeys.values())) {
      const note = el(`id_${key}_clinical`);
      if (!note) continue;
      setText(note, byField.has(key) ? messages.get(byField.get(key)) : "");
      note.hidden = !byField.has(key);
    }
    ui.stripClinical.hidden = !codes.length;
  }

  function showCleared() {
    shownRisk = false;
    ui.risk.className = "live-risk band-none";
    ui.strip.classList.remove("band-low", "band-moderate", "band-high");
    ui.strip.classList.add("band-none");
    ui.gauge.setAttribute("stroke-dasharray", "0 100");
    setText(ui.value, "–");
    setText(ui.text, "Enter a measurement to see your risk of diabetes within five years.");
    setText(ui.stripValue, "–");
    setText(ui.stripBand, "no estimate yet");
    ui.bandLine.hidden = true;
    for (const row of rows) {
      row.querySelector(".bar").setAttribute("width", "0");
      setText(row.querySelector(".phrase"), labels.get(row.dataset.contribution));
      setText(row.querySelector(".num"), "–");
      row.classList.remove("imputed");
    }
    ui.imputed.hidden = true;
    ui.clinical.hidden = true;
    showClinicalAtFields([]);
    ui.warnings.hidden = true;
  }

  // Is the risk on screen the answer to what is in the form? Words for the first reason it is not.
  function staleReason() {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      return "Not up to date: the connection to the server is lost and the page is reconnecting. The risk shown is for earlier values.";
    }
    const invalid = [...new Set([...localErrors.keys(), ...serverErrors.keys()])];
    if (invalid.length) {
      const names = invalid.map((key) => labels.get(key) || key).join(", ");
      return `Not up to date: ${names} ${invalid.length > 1 ? "are" : "is"} not a value the model can use yet. The risk shown is for earlier values.`;
    }
    return "";
  }

  function showFreshness() {
    const reason = shownRisk ? staleReason() : "";
    const pending = shownRisk && !reason && nextSeq - 1 > answeredSeq;
    const stale = Boolean(reason) || pending;
    ui.strip.classList.toggle("is-stale", stale);
    panel.classList.toggle("is-stale", stale);
    ui.stripFresh.dataset.fresh = reason ? "stale" : pending ? "pending" : "fresh";
    setText(ui.stripFresh, reason ? "not up to date" : pending ? "updating…" : "");
    // The polite status region speaks once per reason; "updating" is only shown, never spoken.
    setText(ui.stale, reason);
    ui.pending.hidden = !pending;
  }

  function showStatus(state, text) {
    for (const node of [ui.status, ui.stripStatus]) {
      node.dataset.state = state;
      setText(node, text);
    }
    showFreshness();
  }

  // Sharing on the kiosk board: the box is the person's choice; the server's "shared" reply says
  // what is on (a new tile appears only after_s seconds later, so nobody can tell whose it is).
  const shareToggle = el("share-on-board");
  const shareStatus = el("share-status");
  function sharing() {
    return Boolean(shareBox && shareToggle && shareToggle.checked);
  }
  function sendShare() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return; // sent again on (re)connect
    socket.send(JSON.stringify({ type: "share", board: sharing() ? shareBox.dataset.board : null }));
  }
  function showShared(reply) {
    if (!shareStatus) return;
    if (reply.board) {
      const after = Math.round(reply.after_s ?? 0);
      setText(
        shareStatus,
        after > 0
          ? `Shared: your anonymous risk appears on the screen in about ${after} seconds, and follows your changes.`
          : "Shared: your anonymous risk is on the screen and follows your changes.",
      );
    } else {
      setText(shareStatus, "Not shared: only you see your risk.");
    }
  }
  if (shareBox && shareToggle) {
    shareBox.hidden = false;
    shareToggle.checked = false; // never restored by the browser: sharing is chosen each visit
    shareToggle.addEventListener("change", () => {
      if (!sharing()) setText(shareStatus, "Not shared: only you see your risk.");
      sendShare();
    });
  }

  // "Try an example": fill every field (blank where the example has nothing) and send it all.
  const examples = el("examples");
  if (examples) {
    examples.hidden = false;
    examples.addEventListener("click", (event) => {
      const button = event.target.closest("[data-example]");
      if (!button) return;
      const values = JSON.parse(button.dataset.example);
      if (glucoseUnit) {
        glucoseUnit.value = "mg/dL";
        el("glucose-unit-label").textContent = "mg/dL";
      }
      const features = {};
      for (const [key, input] of byKey) {
        input.value = key in values ? String(values[key]) : "";
        features[key] = key in values ? values[key] : null;
        localErrors.delete(key);
        serverErrors.delete(key);
        refreshField(key);
      }
      sendUpdate(features);
    });
  }

  // The BMI helper: height and weight, metric or imperial, to BMI (kg/m²).
  const helper = el("bmi-helper");
  if (helper) {
    helper.hidden = false;
    const use = el("bmi-use");
    const result = el("bmi-result");
    let bmi = null;
    const number = (id) => {
      const parsed = readTyped(el(id).value);
      return "problem" in parsed || parsed.value === null ? null : parsed.value;
    };
    const compute = () => {
      const units = helper.querySelector("input[name='bmi-units']:checked").value;
      for (const grid of helper.querySelectorAll(".helper-grid")) grid.hidden = grid.dataset.units !== units;
      let metres = null;
      let kilograms = null;
      if (units === "metric") {
        const cm = number("bmi-height-cm");
        metres = cm === null ? null : cm / 100;
        kilograms = number("bmi-weight-kg");
      } else {
        const feet = number("bmi-height-ft");
        const inches = number("bmi-height-in") ?? 0;
        const pounds = number("bmi-weight-lb");
        metres = feet === null ? null : (feet * 12 + inches) * 0.0254;
        kilograms = pounds === null ? null : pounds * 0.45359237;
      }
      bmi = metres && kilograms ? Math.round((kilograms / (metres * metres)) * 10) / 10 : null;
      const usable = bmi !== null && bmi >= 10 && bmi <= 90;
      setText(
        result,
        bmi === null
          ? "Type your height and weight."
          : usable
            ? `Your BMI is ${bmi}.`
            : `That gives a BMI of ${bmi}, outside 10 to 90: check the height and weight.`,
      );
      use.disabled = !usable;
    };
    helper.addEventListener("input", compute);
    helper.addEventListener("change", compute);
    use.addEventListener("click", () => {
      const input = byKey.get("bmi");
      input.value = String(bmi);
      onFieldInput(input);
      input.focus();
    });
  }

  // The connection: reconnect with capped, jittered exponential backoff; re-send the whole state.
  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws/predict/`);
    socket = ws;
    ws.addEventListener("open", () => {
      attempt = 0;
      const features = fullState();
      if (Object.values(features).some((value) => value !== null)) sendUpdate(features);
      if (sharing()) sendShare();
      showStatus("connected", "connected");
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

  // Fields typed before the script ran (or kept by the browser) get their messages now.
  for (const input of inputs) {
    const result = read(input.dataset.feature);
    if (!("problem" in result)) continue;
    localErrors.set(input.dataset.feature, result.problem); // the shown risk will not include it
    refreshField(input.dataset.feature);
  }
  connect();
}
