// Sizes beyond a model's listed ones: gpt-image-2 takes any WxH inside its published
// `custom_sizes` rule (multiples, side bounds, aspect ratio, pixels). "Custom…" in the Size list
// shows width and height fields whose min, max and step come from that rule; the ratio and pixel
// bounds are the server's to check (its 400 names `size` and says why).
import { ApiError } from './api.js';
import { els } from './dom.js';
import { dims, rulesOf } from './rules.js';

export const CUSTOM = 'custom';

// Called after the Size list is filled for `model`: adds "Custom…" where the rules allow it.
export function offerCustom(model) {
  const rules = rulesOf(model);
  const rule = rules.custom_sizes;
  if (rule) {
    els.size.append(new Option('Custom…', CUSTOM));
    for (const input of [els.sizeW, els.sizeH]) {
      input.min = String(rule.min_side);
      input.max = String(rule.max_side);
      input.step = String(rule.multiple);
    }
    if (!els.sizeW.value || !els.sizeH.value) {
      const [w, h] = dims(rules.auto_size || '1024x1024');
      els.sizeW.value = String(w);
      els.sizeH.value = String(h);
    }
  }
  showCustom();
}

export function showCustom() {
  els.customSize.hidden = els.size.value !== CUSTOM;
}

// The size to send for `model`: the chosen option, or the custom fields as WxH. Throws (before
// anything is sent) when a field breaks the rule's bounds or multiple.
export function chosenSize(model) {
  if (els.size.value !== CUSTOM) return els.size.value;
  const rule = rulesOf(model).custom_sizes;
  for (const input of [els.sizeW, els.sizeH]) {
    if (!input.value || !input.checkValidity()) {
      input.focus();
      throw new ApiError(`Width and height must be multiples of ${rule.multiple} from `
        + `${rule.min_side} to ${rule.max_side} pixels for ${model}.`, 0, 'size');
    }
  }
  return `${els.sizeW.value}x${els.sizeH.value}`;
}

// Shows `size` in the form: its option when listed, else the custom fields where allowed.
export function setSize(size, model) {
  if ([...els.size.options].some((o) => o.value === size)) {
    els.size.value = size;
  } else if (rulesOf(model).custom_sizes) {
    [els.sizeW.value, els.sizeH.value] = dims(size).map(String);
    els.size.value = CUSTOM;
  }
  showCustom();
}

els.size.addEventListener('change', showCustom);
