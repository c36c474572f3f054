// The card of one request in flight, first in the gallery until its results take its place:
// its previews as the picture sharpens, what it is waiting for (a preview, a queue place, a
// worker), the seconds so far and its own Cancel. Its state line is a live region, so screen
// readers hear each step of each request; the ticking seconds are hidden from them.
import { api } from './api.js';
import { $, els, short } from './dom.js';
import { b64ToBlob } from './gallery.js';
import { dims, PARTIALS } from './rules.js';

// Seconds without news (no preview, no answer) before the card says why it may be slow, and
// how often it then asks the server whether any worker serves the model.
const HINT_AFTER_S = Number(window.EASEL_HINT_AFTER_S) || 20;
const WORKER_CHECK_S = Number(window.EASEL_WORKER_CHECK_S) || 5;
let counted = 0;  // requests made in this page: each card is "request N"
let editorOwner = null;  // the card whose previews show over the editor's picture

export class RequestCard {
  // `label`: what it does ("Generating"); `waiting`: what it waits for before any news.
  constructor({ params, size, label, model, waiting, inEditor, stream }) {
    this.number = ++counted;
    this.title = `${label} #${this.number}`;
    this.model = model;
    this.params = params;
    this.streamed = Boolean(stream);  // its results record how many previews it showed
    this.shown = 0;
    this.lastIndex = -1;
    this.url = null;
    this.controller = new AbortController();
    this.started = performance.now();
    this.lastNews = this.started;
    this.nextCheck = 0;
    this.place = null;  // a background job's place in the queue, in words
    this.ahead = undefined;  // a stream's last reported queue place (requests.js)
    this.node = $('pending-template').content.firstElementChild.cloneNode(true);
    const find = (cls) => this.node.querySelector(cls);
    [this.img, this.badge, this.progress] = [find('img'), find('.badge-text'), find('.progress')];
    [this.hint, this.elapsed, this.cancelButton] = [find('.card-hint'), find('.elapsed'),
      find('.cancel')];
    const [w, h] = size === 'auto' || !size ? [1, 1] : dims(size);
    find('.frame').style.aspectRatio = `${w} / ${h}`;
    find('.prompt').textContent = params.prompt || params.name || '';
    this.cancelButton.setAttribute('aria-label', `Cancel ${this.title}`);
    this.cancelButton.addEventListener('click', () => this.cancel());
    this.node.dataset.partials = '0';
    this.node.dataset.request = String(this.number);
    this.node.tabIndex = -1;
    this.node.setAttribute('aria-label', `${this.title}: ${short(params.prompt || '')}`);
    els.gallery.prepend(this.node);
    els.empty.hidden = true;
    // An edit's previews show over the editor's picture; others where the gallery begins.
    this.inEditor = Boolean(inEditor);
    if (this.inEditor) editorOwner = this;
    // A live region added with its words already in is often not read: they follow a moment
    // after, unless news came first.
    this.badge.textContent = waiting;
    setTimeout(() => { if (!this.progress.textContent) this.say(waiting); }, 50);
    this.tick();
    this.timer = setInterval(() => this.tick(), 500);
  }

  get signal() { return this.controller.signal; }
  seconds() { return Math.floor((performance.now() - this.started) / 1000); }
  hasFocus() { return this.node.contains(document.activeElement); }

  say(state, badge = state) {
    this.progress.textContent = `${this.title}: ${state}`;
    this.badge.textContent = badge;
  }

  // The server said something: any "no news" hint is out of date.
  news() {
    this.lastNews = performance.now();
    this.nextCheck = 0;
    this.workerless = false;
    this.hint.hidden = true;
  }

  show(partial) {
    const k = (Number(partial.partial_image_index) || 0) + 1;
    // A preview index that starts again: the job began anew (its worker was lost, it is retried).
    if (k - 1 <= this.lastIndex) this.retried = true;
    this.lastIndex = k - 1;
    const url = URL.createObjectURL(b64ToBlob(partial.b64_json, partial.output_format));
    this.img.src = url;
    this.img.alt = `Preview ${k} of ${PARTIALS}: ${short(this.params.prompt || '')}`;
    if (editorOwner === this) {
      els.editPreview.src = url;
      els.editPreview.hidden = false;
    }
    this.img.hidden = false;
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = url;
    this.shown += 1;
    this.node.dataset.partials = String(this.shown);
    this.node.classList.add('has-preview');
    const step = k < PARTIALS ? 'sharpening' : 'finishing';
    this.say(`${this.retried ? 'retried on a worker, ' : ''}preview ${k}/${PARTIALS}, ${step}…`,
      `preview ${k}/${PARTIALS}`);
  }

  // A background job's place in the queue (GET /v1/images/jobs/{id}): `ahead` jobs before it
  // (null: not known), `eta` seconds (a guess; NaN: none), `again` after its worker was lost.
  queued(ahead, eta, again = false) {
    const wait = Number.isFinite(eta) && eta > 0 ? `, about ${Math.ceil(eta)} s` : '';
    const place = ahead === null ? '' : `, ${ahead ? `${ahead} ahead` : 'next'}`;
    const retried = again ? 'its worker was lost; queued again' : 'queued';
    this.place = `${retried}${place}${wait}`;
    this.say(this.place, ahead === null ? 'queued' : `queued${place}`);
  }

  // Rendering (a background job a worker took): no queue place any more.
  rendering() {
    this.place = null;
    this.say('rendering…', 'rendering');
  }

  tick() {
    const now = performance.now();
    this.elapsed.textContent = `${this.seconds()} s`;
    const quiet = (now - this.lastNews) / 1000;
    if (quiet < HINT_AFTER_S || now < this.nextCheck) return;
    this.nextCheck = now + WORKER_CHECK_S * 1000;
    if (this.hint.hidden) this.quietHint(null);
    this.checkWorkers();
  }

  // No news for a while: say what that may mean, and whether any worker serves the model.
  quietHint(workers) {
    if (workers > 0 && this.workerless) this.say(this.place || 'a worker is back, waiting for it');
    this.workerless = workers === 0;
    if (workers === 0) {  // a queued job keeps its place in the words
      this.say(this.place ? `${this.place}, waiting for a worker` : 'waiting for a worker',
        'waiting for a worker');
      this.hint.textContent = `No worker serves ${this.model} right now (it is restarting or `
        + 'stopped). The request stays queued and starts when one is back; the server retries '
        + 'a job whose worker died. Wait, or Cancel.';
    } else {
      this.hint.textContent = 'The server is still working on it. If nothing changes, its '
        + 'worker may be busy or restarting (the server retries a job whose worker died): '
        + 'wait, or Cancel and try again.';
    }
    this.hint.hidden = false;
  }

  async checkWorkers() {
    if (!this.model) return;
    try {
      const entry = await api(`/v1/models/${encodeURIComponent(this.model)}`, null,
        { signal: this.signal });
      const quiet = performance.now() - this.lastNews >= HINT_AFTER_S * 1000;
      if (quiet && typeof entry?.workers === 'number') this.quietHint(entry.workers);
    } catch { /* no answer about workers: the general hint stays */ }
  }

  cancel() {
    this.cancelButton.disabled = true;
    this.say('cancelling…', 'cancelling');
    this.controller.abort();
  }

  remove() {
    clearInterval(this.timer);
    if (editorOwner === this) {
      els.editPreview.hidden = true;
      els.editPreview.removeAttribute('src');
      editorOwner = null;
    }
    this.node.remove();
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    if (!els.gallery.children.length) els.empty.hidden = false;
  }
}
