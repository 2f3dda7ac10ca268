// Validation of router responses against the official OpenAI OpenAPI document
// (../shared/specs/openai-openapi.yaml, OpenAPI 3.1 = JSON Schema 2020-12 with OpenAPI keywords).
'use strict';
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;

const SPEC = process.env.OPENAI_OPENAPI ||
  path.resolve(__dirname, '../../specs/openai-openapi.yaml');

let ajv = null;

// OpenAPI 3.0's `nullable` survives in a few schemas of the 3.1 document; JSON Schema says the
// same thing with a "null" type, which is what ajv understands.
function denullable(node) {
  if (Array.isArray(node)) return node.map(denullable);
  if (!node || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) out[k] = denullable(v);
  if ('nullable' in out) {
    const nullable = out.nullable === true;
    delete out.nullable;
    if (nullable) {
      if (typeof out.type === 'string') {
        out.type = [out.type, 'null'];
        if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = out.enum.concat([null]);
      } else if (!Array.isArray(out.type)) {
        return { anyOf: [out, { type: 'null' }] };
      }
    }
  }
  return out;
}
const cache = new Map();

function load() {
  if (ajv) return ajv;
  const doc = YAML.parse(fs.readFileSync(SPEC, 'utf8'), { maxAliasCount: -1 });
  ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true, discriminator: false });
  addFormats(ajv);
  ajv.addFormat('unixtime', true);
  ajv.addKeyword({ keyword: 'x-oaiMeta' });
  ajv.addSchema({ $id: 'openai', components: denullable(doc.components) }, 'openai');
  return ajv;
}

// Returns a list of error strings (empty when obj is valid against components.schemas[name]).
function check(name, obj) {
  const a = load();
  let v = cache.get(name);
  if (!v) {
    v = a.compile({ $ref: `openai#/components/schemas/${name}` });
    cache.set(name, v);
  }
  if (v(obj)) return [];
  return v.errors.map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
}

// Throws with a readable message when obj does not validate.
function assertSchema(name, obj) {
  const errs = check(name, obj);
  if (errs.length) {
    throw new Error(`${name} schema violation:\n  ${errs.slice(0, 10).join('\n  ')}\nobject: ${JSON.stringify(obj).slice(0, 2000)}`);
  }
}

module.exports = { check, assertSchema };
