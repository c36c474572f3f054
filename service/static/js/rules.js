// Every model's rules come from the server: each /v1/models entry carries `easel.rules` (sizes,
// qualities, styles, n, streaming, the endpoints it offers), the same data the server validates
// with (core/rules.py). The page knows no family and guesses nothing from a model's id; until the
// list loads (a key may be needed) it sends no size, quality or style and the server's defaults
// apply. `streaming`: the model answers `stream: true` (one image) with partial previews.

export const DEFAULT_MODEL = 'easel-shapes';
export const PARTIALS = 3;  // previews asked for while a streamed image renders (the API: 0-3)
const NO_RULES = { sizes: [], default_size: '', qualities: [], default_quality: '', styles: [],
  max_n: 10, streaming: false, operations: ['generate', 'edit', 'variation'], max_prompt: 0 };
const DEFAULT_MAX_STEPS = 100;

let rulesById = new Map();  // model id -> easel.rules from /v1/models
let maxStepsById = new Map();  // model id -> easel.max_steps (its pipeline's limit)

// The /v1/models list as the server sent it: only entries with rules count.
export function setModels(models) {
  rulesById = new Map(models.filter((m) => m.easel?.rules).map((m) => [m.id, m.easel.rules]));
  maxStepsById = new Map(models.filter((m) => m.easel?.max_steps)
    .map((m) => [m.id, m.easel.max_steps]));
}

export const known = () => rulesById.size > 0;
export const rulesOf = (model) => rulesById.get(model) || NO_RULES;
export const offers = (model, operation) => rulesOf(model).operations.includes(operation);
export const maxSteps = (model) => maxStepsById.get(model) || DEFAULT_MAX_STEPS;
export const editModels = () => [...rulesById.keys()].filter((m) => offers(m, 'edit'));
// Streaming returns exactly one image, so it is used for n == 1 only; otherwise the page waits.
export const canStream = (model, n) => rulesOf(model).streaming && n === 1;

export const dims = (size) => size.split('x').map(Number);

// The seed of a streamed image is not in the stream's events, so the page picks it itself
// (as the server would) to show it on the result and keep the image reproducible.
export const randomSeed = () => Math.floor(Math.random() * 2 ** 31);
