// Marking what to change: brush and eraser strokes, a rectangle typed in percent (the keyboard
// way), undo, and outpainting (growing the canvas on one side). buildMask turns it into the
// mask the API wants.
import { $, els } from './dom.js';
import { copyOf, imageCtx, maskCtx, setCanvasSize } from './editor.js';

const EXTEND_FRACTION = 0.25;
const UNDO_DEPTH = 30;
const INK = '#ff2d8a';
const pen = { painting: false, last: null };

function brushRadius() {
  // The slider is in screen pixels; the canvas may be drawn larger or smaller than it is.
  const r = els.mask.getBoundingClientRect();
  return (Number(els.brush.value) / 2) * (els.mask.width / (r.width || els.mask.width));
}

function toCanvas(e) {
  const r = els.mask.getBoundingClientRect();
  return { x: (e.clientX - r.left) * els.mask.width / r.width,
    y: (e.clientY - r.top) * els.mask.height / r.height };
}

function stroke(from, to) {
  const eraser = document.querySelector('input[name="tool"]:checked').value === 'eraser';
  maskCtx.globalCompositeOperation = eraser ? 'destination-out' : 'source-over';
  maskCtx.strokeStyle = maskCtx.fillStyle = INK;
  maskCtx.lineCap = maskCtx.lineJoin = 'round';
  maskCtx.lineWidth = brushRadius() * 2;
  maskCtx.beginPath();
  maskCtx.moveTo(from.x, from.y);
  maskCtx.lineTo(to.x + 0.01, to.y);  // a zero-length line draws nothing: nudge it for dots
  maskCtx.stroke();
}

// Undo and redo: the mask as it was before each stroke (or rectangle), the newest last; a new
// stroke forgets what was undone. A snapshot of another canvas size (after Extend) is skipped.
const undoStack = [];
const redoStack = [];
const snapshot = () => maskCtx.getImageData(0, 0, els.mask.width, els.mask.height);
function checkpoint() {
  undoStack.push(snapshot());
  if (undoStack.length > UNDO_DEPTH) undoStack.shift();
  redoStack.length = 0;
}
function swap(from, to) {
  const last = from.pop();
  if (last && last.width === els.mask.width && last.height === els.mask.height) {
    to.push(snapshot());
    maskCtx.putImageData(last, 0, 0);
  }
}
const undoMask = () => swap(undoStack, redoStack);
const redoMask = () => swap(redoStack, undoStack);
$('undo-mask').addEventListener('click', undoMask);
$('redo-mask').addEventListener('click', redoMask);
els.editor.addEventListener('keydown', (e) => {
  if (!(e.ctrlKey || e.metaKey) || e.target.matches('textarea, input')) return;
  const key = e.key.toLowerCase();
  if (key === 'z' || key === 'y') {
    e.preventDefault();
    if (key === 'y' || e.shiftKey) redoMask();
    else undoMask();
  }
});

// The keyboard way to mark the area: a rectangle in percent of the picture.
$('rect-mark').addEventListener('click', () => {
  const pct = (id) => Math.min(100, Math.max(0, Number($(id).value) || 0)) / 100;
  const { width: w, height: h } = els.mask;
  checkpoint();
  maskCtx.globalCompositeOperation = 'source-over';
  maskCtx.fillStyle = INK;
  maskCtx.fillRect(pct('rect-x') * w, pct('rect-y') * h, pct('rect-w') * w, pct('rect-h') * h);
});

els.mask.addEventListener('pointerdown', (e) => {
  e.preventDefault();
  checkpoint();
  els.mask.setPointerCapture(e.pointerId);
  pen.painting = true;
  pen.last = toCanvas(e);
  stroke(pen.last, pen.last);
});
els.mask.addEventListener('pointermove', (e) => {
  if (!pen.painting) return;
  const p = toCanvas(e);
  stroke(pen.last, p);
  pen.last = p;
});
for (const type of ['pointerup', 'pointercancel']) {
  els.mask.addEventListener(type, () => { pen.painting = false; });
}
$('clear-mask').addEventListener('click', () => {
  checkpoint();
  maskCtx.clearRect(0, 0, els.mask.width, els.mask.height);
});

// Outpainting: grow the canvas on one side, keeping the picture and the mask where they were;
// the new margin stays transparent, which the API treats as the area to draw.
document.querySelectorAll('[data-extend]').forEach((button) => {
  button.addEventListener('click', () => {
    const side = button.dataset.extend;
    const horizontal = side === 'left' || side === 'right';
    const w = els.image.width;
    const h = els.image.height;
    const grow = Math.max(8, Math.round(((horizontal ? w : h) * EXTEND_FRACTION) / 8) * 8);
    const old = [els.image, els.mask].map(copyOf);
    setCanvasSize(horizontal ? w + grow : w, horizontal ? h : h + grow);
    const dx = side === 'left' ? grow : 0;
    const dy = side === 'top' ? grow : 0;
    imageCtx.drawImage(old[0], dx, dy);
    maskCtx.drawImage(old[1], dx, dy);
  });
});

// The mask the API wants: same size as the image, alpha 0 where the picture may change
// (painted, or already transparent in the image), alpha 255 where it must stay.
export function buildMask() {
  const { width: w, height: h } = els.image;
  const picture = imageCtx.getImageData(0, 0, w, h).data;
  const painted = maskCtx.getImageData(0, 0, w, h).data;
  const out = new ImageData(w, h);
  let paintedAny = false;
  let transparentAny = false;
  for (let i = 3; i < out.data.length; i += 4) {
    const p = painted[i] > 0;
    const t = picture[i] === 0;
    paintedAny ||= p;
    transparentAny ||= t;
    out.data[i - 3] = out.data[i - 2] = out.data[i - 1] = 0;
    out.data[i] = p || t ? 0 : 255;
  }
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  c.getContext('2d').putImageData(out, 0, 0);
  return { canvas: c, paintedAny, transparentAny };
}
