// The page of `hf-charrnn explain`: the text coloured by one unit's activation or by surprisal, the model's next-token
// guesses on hover or tap, and the units that track simple properties of the text. All data is inline
// (#report-data, written by hf_charrnn/explain/report.py, whose docstring gives the formats and colour formulas).
// The text is drawn lazily: blocks of plain text become per-token spans when they come near the screen, so 20,000
// characters and more open at once; switching units recolours only the blocks drawn so far.
"use strict";
(function () {
  const BLOCK_TOKENS = 500;
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const count = data.tokens.length;
  const view = { mode: "unit", layer: 0, kind: "hidden", unit: 0 }; // what colours the text now
  let selected = null; // the token whose details are pinned by a click or tap
  const unpacked = new Map(); // "layer/kind" -> Int8Array, unit-major
  const unpacking = new Map(); // "layer/kind" -> the promise of its unpacking
  let wanted = Object.assign({}, view); // the latest choice, shown once its states are unpacked
  const blocks = [];
  const $ = (id) => document.getElementById(id);
  const textView = $("text");
  const details = $("details");

  // Colours: the same formulas as unit_colour and surprisal_colour in report.py.
  function mix(target, amount) {
    return "rgb(" + target.map((c) => Math.round(255 + (c - 255) * amount)).join(", ") + ")";
  }
  function unitColour(t) {
    t = Math.max(-1, Math.min(1, t));
    return t >= 0 ? mix(data.colours.positive, t) : mix(data.colours.negative, -t);
  }
  function surprisalColour(bits) {
    return mix(data.colours.surprisal, Math.min(bits / data.surprisal_scale, 1));
  }

  function stateBlock(layer, kind) {
    return data.states.find((s) => s.layer === layer && s.kind === kind);
  }
  function unpack(layer, kind) {
    const key = layer + "/" + kind;
    if (!unpacking.has(key)) {
      const binary = atob(stateBlock(layer, kind).data);
      const bytes = new Uint8Array(binary.length);
      for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      unpacking.set(key, new Response(stream).arrayBuffer().then((buffer) => unpacked.set(key, new Int8Array(buffer))));
    }
    return unpacking.get(key);
  }
  function activation(i) {
    const block = stateBlock(view.layer, view.kind);
    const values = unpacked.get(view.layer + "/" + view.kind);
    return (values[view.unit * count + i] * block.largest[view.unit]) / 127;
  }
  function isUnpacked() {
    return unpacked.has(view.layer + "/" + view.kind);
  }
  // [background, strength from 0 to 1] of token i; "" before the first state is unpacked.
  function colourAt(i) {
    if (view.mode === "surprisal") {
      return [surprisalColour(data.surprisal[i]), Math.min(data.surprisal[i] / data.surprisal_scale, 1)];
    }
    if (!isUnpacked()) return ["", 0];
    const t = activation(i) / stateBlock(view.layer, view.kind).display[view.unit];
    return [unitColour(t), Math.min(Math.abs(t), 1)];
  }

  // A token in the hover box: whitespace made visible.
  function shown(token) {
    return token.replace(/\n/g, "\u23ce").replace(/ /g, "\u2423").replace(/\t/g, "\u21e5");
  }
  // A token in the text: a line break keeps a visible mark (so it can be coloured and hovered), and a combining mark
  // that starts a token gets a dotted circle to sit on (alone it would have no width).
  function inText(token) {
    return token.replace(/\n/g, "\u23ce\n").replace(/^(\p{M})/u, "\u25cc$1");
  }
  function element(tag, text, attributes) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    for (const [name, value] of Object.entries(attributes || {})) el.setAttribute(name, value);
    return el;
  }

  // Lazy drawing.
  function buildBlocks() {
    const observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        drawBlock(blocks[Number(entry.target.dataset.block)]);
      }
    }, { rootMargin: "1000px 0px" });
    for (let start = 0, b = 0; start < count; start += BLOCK_TOKENS, b++) {
      const end = Math.min(count, start + BLOCK_TOKENS);
      const el = element("span", data.tokens.slice(start, end).map(inText).join(""), { "data-block": b });
      textView.appendChild(el);
      blocks.push({ el, start, end, drawn: false });
      observer.observe(el);
    }
  }
  function drawBlock(block) {
    if (block.drawn) return;
    const fragment = document.createDocumentFragment();
    for (let i = block.start; i < block.end; i++) fragment.appendChild(element("span", inText(data.tokens[i]), { "data-i": i }));
    block.el.textContent = "";
    block.el.appendChild(fragment);
    block.drawn = true;
    colourBlock(block);
  }
  function colourBlock(block) {
    const spans = block.el.children;
    for (let k = 0; k < spans.length; k++) {
      const [background, strength] = colourAt(block.start + k);
      spans[k].style.backgroundColor = background;
      spans[k].style.color = strength > 0.6 ? "#fff" : ""; // dark text on a strong colour would be hard to read
    }
  }
  function recolour() {
    for (const block of blocks) if (block.drawn) colourBlock(block);
    drawLegend();
    $("view-title").textContent = view.mode === "surprisal"
      ? "Surprisal: how unexpected each token was (bits)"
      : `Layer ${view.layer}, ${view.kind} state, unit ${view.unit}`;
    if (selected !== null) showDetails(selected);
    document.body.dataset.showing = view.mode === "surprisal" ? "surprisal" : `${view.layer}/${view.kind}/${view.unit}`;
  }
  function drawLegend() {
    if (view.mode === "surprisal") {
      $("legend-low").textContent = "0 bits";
      $("legend-high").textContent = `${data.surprisal_scale}+ bits`;
      $("legend-bar").style.background = `linear-gradient(to right, ${surprisalColour(0)}, ${surprisalColour(data.surprisal_scale)})`;
      return;
    }
    const scale = stateBlock(view.layer, view.kind).display[view.unit];
    $("legend-low").textContent = (-scale).toPrecision(3);
    $("legend-high").textContent = "+" + scale.toPrecision(3);
    $("legend-bar").style.background = `linear-gradient(to right, ${unitColour(-1)}, ${unitColour(0)}, ${unitColour(1)})`;
  }

  // Choosing what colours the text.
  async function choose(changes) {
    const next = Object.assign({}, wanted, changes);
    const block = stateBlock(next.layer, next.kind);
    if (!block) return;
    next.unit = Math.max(0, Math.min(block.units - 1, next.unit));
    wanted = next;
    if (next.mode === "unit") await unpack(next.layer, next.kind);
    if (wanted !== next) return; // a later choice came while this one was unpacking: it wins
    Object.assign(view, next);
    $("layer").value = String(view.layer);
    $("kind").value = view.kind;
    $("unit-slider").max = String(block.units - 1);
    $("unit-slider").value = String(view.unit);
    $("unit-search").value = String(view.unit);
    $("unit-message").textContent = "";
    $("picker").disabled = view.mode !== "unit";
    document.querySelector(`input[name=mode][value=${view.mode}]`).checked = true;
    recolour();
  }
  function searchUnit() {
    const field = $("unit-search");
    const units = stateBlock(view.layer, view.kind).units;
    const wanted = Number(field.value.trim());
    if (!/^\d+$/.test(field.value.trim()) || wanted >= units) {
      $("unit-message").textContent = `no unit ${field.value.trim() || "?"}: this layer has units 0 to ${units - 1}`;
      return;
    }
    $("unit-message").textContent = "";
    choose({ unit: wanted });
  }
  function buildControls() {
    const layers = [...new Set(data.states.map((s) => s.layer))];
    for (const layer of layers) $("layer").appendChild(element("option", `${layer}`, { value: layer }));
    for (const kind of [...new Set(data.states.map((s) => s.kind))]) $("kind").appendChild(element("option", kind, { value: kind }));
    $("layer").addEventListener("change", (e) => choose({ layer: Number(e.target.value) }));
    $("kind").addEventListener("change", (e) => choose({ kind: e.target.value }));
    $("unit-slider").addEventListener("input", (e) => choose({ unit: Number(e.target.value) }));
    $("unit-search").addEventListener("keydown", (e) => { if (e.key === "Enter") searchUnit(); });
    $("previous-unit").addEventListener("click", () => choose({ unit: view.unit - 1 }));
    $("next-unit").addEventListener("click", () => choose({ unit: view.unit + 1 }));
    for (const radio of document.querySelectorAll("input[name=mode]")) {
      radio.addEventListener("change", (e) => choose({ mode: e.target.value }));
    }
  }
  function buildRankedLists() {
    const container = $("ranked-lists");
    const names = Object.keys(data.ranked_units);
    if (!names.length) container.appendChild(element("p", "This text is too short or too uniform to rank units."));
    for (const name of names) {
      container.appendChild(element("h3", name));
      const list = element("ol");
      for (const u of data.ranked_units[name]) {
        const item = element("li");
        const button = element("button", `layer ${u.layer} ${u.kind} ${u.unit}`, { type: "button",
          "data-layer": u.layer, "data-kind": u.kind, "data-unit": u.unit });
        button.addEventListener("click", () => {
          choose({ mode: "unit", layer: u.layer, kind: u.kind, unit: u.unit });
          $("text-panel").scrollIntoView({ behavior: "smooth" });
        });
        item.append(button, element("span", ` r = ${u.correlation >= 0 ? "+" : ""}${u.correlation.toFixed(2)}`, { class: "r" }));
        list.appendChild(item);
      }
      container.appendChild(list);
    }
  }

  // What the model thought at a token: on hover, and pinned by a click or tap.
  function showDetails(i) {
    const span = textView.querySelector(`span[data-i="${i}"]`);
    if (!span) return;
    details.textContent = "";
    const head = element("div");
    head.append("after ", element("code", shown(data.tokens[i])), ` · surprisal ${data.surprisal[i].toFixed(2)} bits`);
    if (view.mode === "unit" && isUnpacked()) head.append(` · activation ${activation(i).toPrecision(3)}`);
    const list = element("ol", undefined, { "aria-label": "most likely next tokens" });
    for (let k = 0; k < data.top_k; k++) {
      const token = data.vocabulary[data.top_ids[i * data.top_k + k]];
      const probability = data.top_probabilities[i * data.top_k + k];
      const item = element("li", undefined, { "data-token": token, "data-probability": probability });
      item.append(element("code", shown(token)), element("span", `${(probability * 100).toFixed(1)}%`, { class: "p" }));
      list.appendChild(item);
    }
    details.append(head, element("div", "next:"), list);
    details.dataset.index = String(i);
    details.hidden = false;
    const box = span.getBoundingClientRect();
    details.style.left = `${Math.max(4, Math.min(window.scrollX + box.left, window.scrollX + document.documentElement.clientWidth - details.offsetWidth - 4))}px`;
    const below = box.bottom + 6 + details.offsetHeight <= document.documentElement.clientHeight;
    details.style.top = `${window.scrollY + (below ? box.bottom + 6 : box.top - details.offsetHeight - 6)}px`;
  }
  function tokenIndex(target) {
    return target instanceof HTMLElement && target.dataset.i !== undefined ? Number(target.dataset.i) : null;
  }
  // Pins the details of token i (null: unpins), drawing its block first if needed.
  function pin(i) {
    const previous = textView.querySelector("span.selected");
    if (previous) previous.classList.remove("selected");
    selected = i;
    if (i === null) { details.hidden = true; return; }
    drawBlock(blocks[Math.floor(i / BLOCK_TOKENS)]);
    const span = textView.querySelector(`span[data-i="${i}"]`);
    span.classList.add("selected");
    span.scrollIntoView({ block: "nearest" });
    showDetails(i);
  }
  function watchPointerAndKeys() {
    textView.addEventListener("mouseover", (e) => {
      const i = tokenIndex(e.target);
      if (i !== null && selected === null) showDetails(i);
    });
    textView.addEventListener("mouseleave", () => { if (selected === null) details.hidden = true; });
    textView.addEventListener("click", (e) => {
      const i = tokenIndex(e.target);
      pin(i === null || i === selected ? null : i);
    });
    // The keyboard's way in: arrows step through the tokens (their details are read out), Escape leaves.
    textView.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 40, ArrowUp: -40 }[e.key];
      if (step !== undefined) {
        e.preventDefault();
        pin(Math.max(0, Math.min(count - 1, (selected === null ? -1 : selected) + step)));
      } else if (e.key === "Escape") {
        pin(null);
      }
    });
  }

  async function start() {
    const m = data.model;
    $("title").textContent = `Inside ${m.name}`;
    $("summary").textContent = `${m.cell_type.toUpperCase()}, ${m.num_layers} layer(s) of ${m.hidden_size} units · ` +
      `${count.toLocaleString()} tokens · ${data.bits_per_character.toFixed(3)} bits per character on this text. ` +
      "Hover over (or tap) a character for the model's guesses at the next one.";
    buildControls();
    buildRankedLists();
    watchPointerAndKeys();
    buildBlocks();
    const first = Object.values(data.ranked_units)[0];
    await choose(first && first.length ? { layer: first[0].layer, kind: first[0].kind, unit: first[0].unit } : {});
    drawBlock(blocks[0]);
    document.body.dataset.readyMs = performance.now().toFixed(1);
    document.body.dataset.ready = "true";
  }
  if (typeof DecompressionStream === "undefined") {
    document.body.prepend(element("p", "This browser is too old for this page (it lacks DecompressionStream); " +
      "open it in a current Chrome, Edge, Firefox or Safari."));
  } else {
    start();
  }
})();
