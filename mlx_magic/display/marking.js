// mlx_magic's previews as a drawing board (anywidget): drag a box, click a point.
// The marks are the model's `marks` list, synced to the kernel, in pixels of the
// image as the cell gave it (a tile's `scale` turns thumbnail pixels into those);
// the kernel numbers them 1, 2, ... in this order.
const PALETTE = ["#e6194b", "#3cb44b", "#0082c8", "#f58230", "#911eb4", "#46f0f0",
  "#f032e6", "#d2f53c", "#008080", "#aa6e28", "#800000", "#000080"];

function element(tag, css, props = {}) {
  const node = Object.assign(document.createElement(tag), props);
  node.style.cssText = css;
  return node;
}

function render({ model, el }) {
  const root = element("div", "display:flex;gap:8px;flex-wrap:wrap;align-items:flex-end",
    { className: "mlx-magic-previews mlx-magic-board" });
  const boards = [];
  for (const tile of model.get("tiles")) {
    const figure = element("figure", "margin:0;text-align:center");
    const frame = element("div", "position:relative;display:inline-block;line-height:0");
    frame.append(element("img", "", { className: "mlx-magic-preview", src: tile.src,
      width: tile.width, height: tile.height, alt: tile.caption }));
    if (tile.image !== null) {
      const canvas = element("canvas", "position:absolute;left:0;top:0;cursor:crosshair;" +
        "touch-action:none", { className: "mlx-magic-marks", width: tile.width,
        height: tile.height });
      frame.append(canvas);
      boards.push({ canvas, tile });
      follow(canvas, tile);
    }
    figure.append(frame, element("figcaption", "font-size:0.8em;opacity:0.75",
      { textContent: tile.caption }));
    root.append(figure);
  }
  const label = element("input", "width:9em;font-size:0.85em",
    { placeholder: "label (optional)", value: model.get("label") });
  label.addEventListener("input", () => { model.set("label", label.value); model.save_changes(); });
  // The output is redrawn as marks come in: a new view may render while the old one is
  // still typed in. Each view's field follows the label, so the next mark gets the last one.
  const relabel = () => { if (label.value !== model.get("label")) label.value = model.get("label"); };
  model.on("change:label", relabel);
  const undo = element("button", "font-size:0.85em", { textContent: "Undo" });
  undo.addEventListener("click", () => save(model.get("marks").slice(0, -1)));
  const clear = element("button", "font-size:0.85em", { textContent: "Clear" });
  clear.addEventListener("click", () => save([]));
  const bar = element("div", "display:flex;gap:6px;align-items:center;width:100%;" +
    "font-size:0.8em;opacity:0.8", { className: "mlx-magic-marks-bar" });
  bar.append(element("span", "", { textContent: "✎ drag: box · click: point · use as --region @1, --marks" }),
    label, undo, clear);
  if (boards.length) root.append(bar);

  function save(marks) { model.set("marks", marks); model.save_changes(); draw(); }

  function draw(rubber) {
    for (const { canvas, tile } of boards) {
      const g = canvas.getContext("2d");
      g.clearRect(0, 0, canvas.width, canvas.height);
      g.font = "bold 12px sans-serif";
      const named = model.get("named");
      model.get("marks").forEach((mark, index) => {
        if (mark.image !== tile.image) return;
        // Once an answer named marks, those stand out and the others turn grey.
        const standsOut = !named.length || named.includes(index + 1);
        const colour = standsOut ? PALETTE[index % PALETTE.length] : "#969696";
        const at = mark.coordinates.map((value) => value / tile.scale);
        g.strokeStyle = g.fillStyle = colour;
        g.lineWidth = named.length && standsOut ? 4 : 2;
        let [x, y] = at;
        if (mark.kind === "box") g.strokeRect(at[0], at[1], at[2] - at[0], at[3] - at[1]);
        else { g.beginPath(); g.arc(x, y, 4, 0, 2 * Math.PI); g.fill(); x += 6; y -= 8; }
        const number = String(index + 1);
        g.fillRect(x, y, g.measureText(number).width + 6, 15);
        g.fillStyle = "#fff";
        g.fillText(number, x + 3, y + 12);
      });
      if (rubber && rubber.canvas === canvas) {
        const [x0, y0, x1, y1] = rubber.box;
        g.setLineDash([4, 3]);
        g.strokeStyle = "#000";
        g.strokeRect(x0, y0, x1 - x0, y1 - y0);
        g.setLineDash([]);
      }
    }
  }

  function follow(canvas, tile) {
    let start = null;
    const at = (event) => {
      const rect = canvas.getBoundingClientRect();
      const x = (event.clientX - rect.left) * canvas.width / rect.width;
      const y = (event.clientY - rect.top) * canvas.height / rect.height;
      return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
    };
    canvas.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      canvas.setPointerCapture(event.pointerId);
      start = at(event);
      event.preventDefault();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (start) draw({ canvas, box: [...start, ...at(event)] });
    });
    canvas.addEventListener("pointerup", (event) => {
      if (!start) return;
      const [x0, y0] = start;
      const [x1, y1] = at(event);
      start = null;
      const common = { label: label.value.trim(), image: tile.image };
      // A drag shorter than 4 thumbnail pixels is a click: a point.
      const mark = Math.abs(x1 - x0) < 4 && Math.abs(y1 - y0) < 4
        ? { kind: "point", coordinates: [x0, y0].map((v) => v * tile.scale), ...common }
        : { kind: "box", coordinates: [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1),
          Math.max(y0, y1)].map((v) => v * tile.scale), ...common };
      save([...model.get("marks"), mark]);
    });
  }

  const redraw = () => draw();
  model.on("change:marks", redraw);
  model.on("change:named", redraw);
  draw();
  el.append(root);
  return () => {
    model.off("change:marks", redraw);
    model.off("change:named", redraw);
    model.off("change:label", relabel);
  };
}

export default { render };
