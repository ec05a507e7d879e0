// The page at "/": pick a model, drop a photo, see the router's answer. Vanilla JS, no build.
//
// Size rule (service/images.py): an image of the model's exact H x W is used as is; one whose
// aspect ratio is within AWNET_RESIZE_TOLERANCE of the model's is resized by the service;
// anything else the service refuses (400). So this page sends the file's bytes unchanged when
// the service would take them, and otherwise centre-crops the photo in a canvas to the
// model's aspect ratio and sends that crop as PNG.
"use strict";

(() => {
  const TOP_K = 5;
  const MAX_SIDE = 1024; // a crop larger than this is scaled down (stays far below the body limit)
  const ACCEPTED = ["image/png", "image/jpeg", "image/webp", "image/bmp"];

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("form"), model: $("model"), refresh: $("refresh"), modelInfo: $("model-info"),
    drop: $("drop"), file: $("file"), previews: $("previews"), preview: $("preview"),
    previewCaption: $("preview-caption"), sentFigure: $("sent-figure"), sent: $("sent"),
    prepNote: $("prep-note"), keyRow: $("api-key-row"), key: $("api-key"),
    classify: $("classify"), status: $("status"), error: $("error"),
    emptyResult: $("empty-result"), body: $("result-body"), cls: $("result-class"),
    prob: $("result-prob"), topk: $("topk"), gauge: $("gauge"), fill: $("gauge-fill"),
    mark: $("gauge-mark"), scale: $("gauge-scale"), pAdv: $("p-adv"),
    threshold: $("threshold"), verdict: $("verdict"), mix: $("mix"),
    verdictNote: $("verdict-note"), mode: $("mode"),
  };

  const tol = Number.parseFloat(document.body.dataset.resizeTolerance);
  const tolerance = Number.isFinite(tol) ? tol : 0.1;
  if (document.body.dataset.apiKey === "required") el.keyRow.hidden = false;

  let entries = []; // the /v1/models listing
  let photo = null; // {file, img (null when the browser cannot decode it), width, height}
  let previewUrl = null;
  let seq = 0; // the latest request; older answers are dropped

  // --- small helpers ---------------------------------------------------------------------
  // 3 significant digits; small values (thresholds, p_adv of clean inputs) as 2.05e-5
  const num = (x) => (x === 0 ? "0" : Math.abs(x) < 1e-3 ? x.toExponential(2)
    : String(Number(x.toPrecision(3))));
  const pct = (x) => `${(100 * x).toFixed(x >= 0.9995 || x < 0.0005 ? 0 : 1)} %`;
  const size = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} kB`
    : `${(n / 1048576).toFixed(1)} MB`);

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = false;
    el.emptyResult.hidden = true;
  }

  function clearResult() {
    el.error.hidden = true;
    el.error.textContent = "";
    el.body.hidden = true;
    el.cls.textContent = "";
    el.topk.replaceChildren();
    for (const o of [el.pAdv, el.threshold, el.verdict, el.mix]) {
      o.textContent = "";
      delete o.dataset.value;
    }
    el.emptyResult.hidden = false;
  }

  async function errorMessage(resp) {
    const text = await resp.text().catch(() => "");
    let message = "";
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === "string") message = body.error;
    } catch {
      // not JSON (a proxy's page): show its text
    }
    if (!message) message = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 300);
    const status = `${resp.status}${resp.statusText ? ` ${resp.statusText}` : ""}`;
    return `The service answered ${status}: ${message || "(no message)"}`;
  }

  // --- models -----------------------------------------------------------------------------
  function describe(entry) {
    const shape = entry.input_shape;
    const parts = [];
    if (shape) {
      const [c, h, w] = shape;
      const kind = c === 1 ? "grey" : c === 3 ? "colour" : `${c} channels`;
      parts.push(`input ${c}×${h}×${w} (${kind})`);
    }
    const kind = entry.manifest && entry.manifest.kind;
    if (kind) parts.push(`kind ${kind}`);
    if (entry.class_names) parts.push(`${entry.class_names.length} classes`);
    if (entry.threshold != null) parts.push(`threshold ${num(entry.threshold)}`);
    if (entry.provider) parts.push(entry.provider.replace("ExecutionProvider", ""));
    return parts.join(" · ");
  }

  function usable(entry) {
    const shape = entry.input_shape;
    return entry.state === "READY" && Array.isArray(shape) && (shape[0] === 1 || shape[0] === 3);
  }

  function selected() {
    const entry = entries[Number.parseInt(el.model.value, 10)];
    return entry && usable(entry) ? entry : null;
  }

  function showModelInfo() {
    const entry = entries[Number.parseInt(el.model.value, 10)];
    if (!entry) {
      el.modelInfo.textContent = "";
    } else if (usable(entry)) {
      el.modelInfo.textContent = describe(entry);
    } else {
      const why = entry.state !== "READY" ? `${entry.state}${entry.reason ? `: ${entry.reason}` : ""}`
        : "this model takes tensors, not images (use the API)";
      el.modelInfo.textContent = `Not available: ${why}`;
    }
    el.classify.disabled = !(selected() && photo);
  }

  async function loadModels() {
    const previous = el.model.selectedOptions[0];
    const keep = previous ? previous.dataset.id : undefined;
    el.status.textContent = "Loading the model list…";
    let resp;
    try {
      resp = await fetch("v1/models", { headers: { Accept: "application/json" } });
    } catch (err) {
      el.status.textContent = "";
      showError(`Could not reach the service to list its models (${err.message}).`);
      return;
    }
    if (!resp.ok) {
      el.status.textContent = "";
      showError(await errorMessage(resp));
      return;
    }
    entries = ((await resp.json()).models || []);
    el.model.replaceChildren();
    let first = -1;
    entries.forEach((entry, i) => {
      const option = document.createElement("option");
      option.value = String(i);
      option.dataset.id = `${entry.name}/${entry.version}`;
      option.dataset.name = entry.name;
      option.dataset.version = entry.version;
      const shape = entry.input_shape ? ` · ${entry.input_shape.join("×")}` : "";
      const state = usable(entry) ? "" : ` (${entry.state === "READY" ? "tensors only" : entry.state.toLowerCase()})`;
      option.textContent = `${entry.name} v${entry.version}${shape}${state}`;
      option.disabled = !usable(entry);
      el.model.append(option);
      if (usable(entry) && (first < 0 || option.dataset.id === keep)) first = i;
    });
    if (entries.length === 0) {
      el.model.append(new Option("No model is served", ""));
    }
    if (entries.length) el.model.value = String(Math.max(first, 0)); // none ready: say why
    el.status.textContent = first >= 0 ? ""
      : "No model version is ready yet: press Refresh in a moment.";
    showModelInfo();
  }

  // --- the photo ---------------------------------------------------------------------------
  async function usePhoto(file) {
    if (!file) return;
    clearResult();
    el.prepNote.textContent = "";
    el.sentFigure.hidden = true;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    const img = new Image();
    img.src = previewUrl;
    let decoded = true;
    try {
      await img.decode();
    } catch {
      decoded = false;
    }
    photo = { file, img: decoded ? img : null, width: img.naturalWidth, height: img.naturalHeight };
    const what = `${file.name || "pasted image"} · ${size(file.size)}`;
    if (decoded) {
      el.preview.src = previewUrl;
      el.preview.alt = `The chosen photo, ${photo.width}×${photo.height}`;
      el.preview.hidden = false;
      el.previewCaption.textContent = `${what} · ${photo.width}×${photo.height}`;
    } else {
      el.preview.removeAttribute("src");
      el.preview.hidden = true;
      el.previewCaption.textContent = what;
    }
    el.previews.hidden = false;
    showModelInfo();
    await classify();
  }

  function within(aspect, modelAspect) {
    return Math.abs(aspect / modelAspect - 1) <= tolerance; // the service's own test
  }

  function encode(img, sx, sy, sw, sh, ow, oh) {
    const canvas = el.sent;
    canvas.width = ow;
    canvas.height = oh;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.clearRect(0, 0, ow, oh);
    ctx.drawImage(img, sx, sy, sw, sh, 0, 0, ow, oh);
    return new Promise((resolve, reject) => {
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the canvas gave no PNG"))),
        "image/png");
    });
  }

  // What to send for this model: {body, type, note, drawn}.
  async function prepare(entry) {
    const [, H, W] = entry.input_shape;
    const { file, img, width: w, height: h } = photo;
    const type = ACCEPTED.includes(file.type) ? file.type : "";
    if (!img) {
      return { body: file, type: type || "application/octet-stream", drawn: false,
        note: "The browser cannot read this file as an image: sent as it is, to hear what the service says." };
    }
    const modelAspect = W / H;
    if ((w === W && h === H) || within(w / h, modelAspect)) {
      const fits = w === W && h === H ? "the model's own size"
        : `the service resizes it to ${W}x${H}`;
      if (type) return { body: file, type, note: `Sent as it is (${w}x${h}: ${fits}).`, drawn: false };
      // a format the browser reads but the API does not (GIF, AVIF...): re-encode as PNG
      const blob = await encode(img, 0, 0, w, h, w, h);
      return { body: blob, type: "image/png", drawn: true,
        note: `Converted to PNG (the API does not take ${file.type || "this format"}); ${fits}.` };
    }
    let sw = w;
    let sh = h;
    if (w / h > modelAspect) sw = Math.max(1, Math.round(h * modelAspect));
    else sh = Math.max(1, Math.round(w / modelAspect));
    const sx = Math.floor((w - sw) / 2);
    const sy = Math.floor((h - sh) / 2);
    const scale = Math.min(1, MAX_SIDE / Math.max(sw, sh));
    let ow = Math.max(1, Math.round(sw * scale));
    let oh = Math.max(1, Math.round(sh * scale));
    if (!within(ow / oh, modelAspect)) {
      ow = W; // rounding left it outside the tolerance (tiny photo, tolerance 0): model's size
      oh = H;
    }
    const blob = await encode(img, sx, sy, sw, sh, ow, oh);
    const scaled = ow !== sw || oh !== sh ? `, scaled to ${ow}x${oh}` : "";
    const note = `Centre-cropped to ${sw}x${sh}${scaled}: the photo is ${w}x${h}, its aspect ratio `
      + `differs from the model's ${W}x${H} by more than ${Math.round(tolerance * 100)} %, `
      + "which the service would refuse.";
    return { body: blob, type: "image/png", note, drawn: true };
  }

  // --- classify ----------------------------------------------------------------------------
  async function classify() {
    const entry = selected();
    if (!photo) return;
    if (!entry) {
      showError("Choose a model version that is ready first.");
      return;
    }
    const mine = ++seq;
    clearResult();
    el.status.textContent = "Classifying…";
    el.form.setAttribute("aria-busy", "true");
    const done = () => {
      if (mine === seq) {
        el.form.removeAttribute("aria-busy");
      }
    };
    try {
      let prepared;
      try {
        prepared = await prepare(entry);
      } catch (err) {
        el.status.textContent = "";
        showError(`Could not prepare the photo: ${err.message}`);
        return;
      }
      if (mine !== seq) return;
      el.prepNote.textContent = prepared.note;
      el.sentFigure.hidden = !prepared.drawn;
      const headers = { "Content-Type": prepared.type, Accept: "application/json" };
      const key = el.key.value.trim();
      if (key) headers.Authorization = `Bearer ${key}`;
      const url = `v1/models/${encodeURIComponent(entry.name)}/versions/`
        + `${encodeURIComponent(entry.version)}/classify?top_k=${TOP_K}`;
      const started = performance.now();
      let resp;
      try {
        resp = await fetch(url, { method: "POST", headers, body: prepared.body });
      } catch (err) {
        if (mine !== seq) return;
        el.status.textContent = "";
        showError(`Could not reach the service (${err.message}).`);
        return;
      }
      if (mine !== seq) return;
      if (!resp.ok) {
        const message = await errorMessage(resp);
        if (mine !== seq) return;
        if (resp.status === 401) {
          el.keyRow.hidden = false;
          el.key.focus();
        }
        el.status.textContent = "";
        showError(message);
        return;
      }
      let answer;
      try {
        answer = await resp.json();
      } catch {
        el.status.textContent = "";
        showError("The service answered, but not with JSON.");
        return;
      }
      if (mine !== seq) return;
      el.status.textContent = `Answered in ${Math.round(performance.now() - started)} ms.`;
      render(answer);
    } finally {
      done();
    }
  }

  function setOutput(o, text, value) {
    o.textContent = text;
    o.dataset.value = String(value);
  }

  function render(a) {
    el.emptyResult.hidden = true;
    el.cls.textContent = a.class;
    el.prob.textContent = `probability ${pct(a.probability)} · ${a.model} v${a.version}`;
    const rows = (a.top_k || []).map((c) => {
      const li = document.createElement("li");
      li.dataset.class = c.class;
      li.dataset.probability = String(c.probability);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = c.class;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.style.width = `${Math.max(0, Math.min(1, c.probability)) * 100}%`;
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = pct(c.probability);
      li.append(name, bar, value);
      return li;
    });
    el.topk.replaceChildren(...rows);

    const adversarial = a.verdict === "adversarial";
    setOutput(el.pAdv, num(a.p_adv), a.p_adv);
    setOutput(el.threshold, num(a.threshold), a.threshold);
    setOutput(el.verdict, a.verdict, a.verdict);
    setOutput(el.mix, num(a.mix), a.mix);
    el.mode.textContent = a.mode;
    el.verdict.className = adversarial ? "bad" : "good";
    el.verdictNote.textContent = adversarial
      ? `p_adv ≥ threshold: the router flags this input as adversarial. Mix ${num(a.mix)}: `
        + "0 is the clean branch, 1 the robust one."
      : `p_adv < threshold: the router sees a clean input. Mix ${num(a.mix)}: `
        + "0 is the clean branch, 1 the robust one.";
    gauge(a.p_adv, a.threshold, adversarial);
    el.body.hidden = false;
  }

  // p_adv and the threshold on a log scale (thresholds are often far below 0.01).
  function gauge(p, t, adversarial) {
    const positive = [p, t].filter((x) => x > 0);
    const smallest = positive.length ? Math.min(...positive) : 1;
    const lo = Math.max(-12, Math.min(-3, Math.floor(Math.log10(smallest)) - 1));
    const pos = (x) => (x <= 0 ? 0 : Math.max(0, Math.min(1, (Math.log10(x) - lo) / -lo))) * 100;
    el.fill.style.width = `${pos(p)}%`;
    el.fill.className = `gauge-fill ${adversarial ? "bad" : "good"}`;
    el.mark.style.left = `${pos(t)}%`;
    el.gauge.setAttribute("aria-label",
      `p_adv ${num(p)} against the threshold ${num(t)} (log scale): ${adversarial ? "above" : "below"}`);
    const ticks = [];
    const step = Math.max(1, Math.ceil(-lo / 4));
    for (let e = lo; e <= 0; e += step) ticks.push(e);
    if (ticks[ticks.length - 1] !== 0) ticks.push(0);
    el.scale.replaceChildren(...ticks.map((e) => {
      const span = document.createElement("span");
      span.style.left = `${((e - lo) / -lo) * 100}%`;
      span.textContent = e === 0 ? "1" : `1e${e}`;
      return span;
    }));
  }

  // --- events ------------------------------------------------------------------------------
  el.file.addEventListener("change", () => usePhoto(el.file.files[0]));
  el.model.addEventListener("change", () => {
    showModelInfo();
    if (photo && selected()) classify();
  });
  el.refresh.addEventListener("click", () => loadModels());
  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    classify();
  });
  for (const name of ["dragenter", "dragover"]) {
    el.drop.addEventListener(name, (event) => {
      event.preventDefault();
      el.drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "dragend"]) {
    el.drop.addEventListener(name, () => el.drop.classList.remove("over"));
  }
  el.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    el.drop.classList.remove("over");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      try {
        el.file.files = files;
      } catch {
        // older browsers: the input keeps its old file, the drop is used all the same
      }
      usePhoto(files[0]);
    }
  });
  // a photo dropped next to the zone must not replace the page
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? [...event.clipboardData.files] : [];
    const image = items.find((f) => f.type.startsWith("image/"));
    if (image) usePhoto(image);
  });

  loadModels();
})();
