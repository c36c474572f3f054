// Easel playground: plain JS modules talking to this server's OpenAI Images API (/v1/...).
// No build step and nothing from the internet; the CSP in service/pages.py enforces the latter.
// This module wires the parts together and starts the page:
//   api.js (HTTP, SSE)  rules.js (model rules)  form.js (Generate form)  dom.js (shared helpers)
//   requests.js + card.js (requests in flight)  gallery.js + history.js (results, IndexedDB)
//   generate.js (Generate, Variations, reuse, copy seed)  editor.js + mask.js + edit.js (Edit)
//   upload.js (button, drop, paste)
import { clearError, els } from './dom.js';
import { editor, openEditor } from './editor.js';
import {
  loadModels, onModelChange, restoreFields, saveSettings, showActions, updateCount,
} from './form.js';
import { deleteItem, itemOf, restoreHistory } from './gallery.js';
import { copySeed, reuse, variations } from './generate.js';
import './edit.js';
import './mask.js';
import './upload.js';

const KEY_STORAGE = 'easel.apiKey';

// A result card's buttons (the card's Cancel belongs to its request, see card.js).
const ACTIONS = {
  edit: (item) => openEditor(item),
  variations,
  reuse,
  'copy-seed': copySeed,
  delete: (item) => deleteItem(item, editor.item === item),
};

els.gallery.addEventListener('click', (e) => {
  const button = e.target.closest('.item:not(.pending) .item-actions button');
  const item = itemOf(button);
  if (!item) return;
  const action = Object.keys(ACTIONS).find((name) => button.classList.contains(name));
  if (action) ACTIONS[action](item);
});

els.key.value = sessionStorage.getItem(KEY_STORAGE) || '';
els.key.addEventListener('input', () => {
  // sessionStorage only: the key lives as long as this tab and is never written to disk.
  if (els.key.value) sessionStorage.setItem(KEY_STORAGE, els.key.value);
  else sessionStorage.removeItem(KEY_STORAGE);
});
els.key.addEventListener('change', () => { clearError(); loadModels(); });
els.model.addEventListener('change', onModelChange);
els.prompt.addEventListener('input', updateCount);
els.form.addEventListener('change', saveSettings);
els.prompt.addEventListener('input', saveSettings);
restoreFields();
updateCount();
loadModels().then(restoreHistory).then(showActions);
