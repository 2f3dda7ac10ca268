// Request-log rows in the router's JSONL fallback format (reqlog_to_json, src/reqlog_row.c), for
// tests and benchmarks that give the router a fallback file to replay.
'use strict';
const fs = require('fs');

// Row i: a successful non-streamed call of gpt-4o-mini in tier T1 with one attempt, costing
// 7,200 nUSD, that started at ts (ms).
function jsonlRow(i, ts, prefix = 'maint') {
  return JSON.stringify({
    request_id: `chatcmpl-${prefix}${String(i).padStart(8, '0')}`, ts_start_ms: ts, ts_end_ms: ts + 40,
    agent: null, tier: 'T1', task: null, requested_model: 'gpt-4o-mini', model: 'gpt-4o-mini',
    provider: 'openai', upstream_model: 'gpt-4o-mini-2024-07-18', stream: 0, status: 200,
    error_type: null, error_code: null, error_message: null, finish_reason: 'stop',
    input_tokens: 12, output_tokens: 9, cached_tokens: 0, cache_write_tokens: null,
    reasoning_tokens: null, cost_nusd: 7200, cost_source: 'pricing', latency_ms: 41.5,
    ttft_ms: null, upstream_ms: 38.2, overhead_ms: 3.3, dropped_params: null,
    upstream_request_id: `req_${i}`, attempts: 1, client_gone: 0, fallback_from: null, partial: 0,
    attempt_log: [{ attempt: 1, ts_start_ms: ts + 1, model: 'gpt-4o-mini', provider: 'openai',
      upstream_model: 'gpt-4o-mini-2024-07-18', outcome: 'ok', upstream_status: 200, status: 200,
      error_type: null, error_code: null, error_message: null, latency_ms: 38.2, retry_after_s: null }],
    tool_state: null,
  });
}

// Writes `rows` rows to file (replacing it), started one ms apart from an hour ago.
function writeJsonl(file, rows, prefix = 'maint') {
  const fd = fs.openSync(file, 'w');
  const t0 = Date.now() - 3600000;
  let chunk = [];
  for (let i = 0; i < rows; i++) {
    chunk.push(jsonlRow(i, t0 + i, prefix));
    if (chunk.length === 10000) { fs.writeSync(fd, chunk.join('\n') + '\n'); chunk = []; }
  }
  if (chunk.length) fs.writeSync(fd, chunk.join('\n') + '\n');
  fs.closeSync(fd);
}

module.exports = { jsonlRow, writeJsonl };
