// gRPC-web for the mmsearch pages: a protobuf codec driven by /assets/schema.json (made by the
// server from its own descriptor set, so field numbers always match) and the gRPC-web framing
// over fetch. Unary calls, client streams sent whole, and server streams read as they arrive.

let schema = null;
let loading = null;

// Fetched once per page, however many calls start before it arrives.
export function loadSchema() {
  if (!loading) {
    loading = fetch('/assets/schema.json').then(async (r) => {
      if (!r.ok) throw new GrpcError(14, `schema: HTTP ${r.status}`);
      const s = await r.json();
      s.mapSet = new Set(s.maps);
      schema = s;
      return s;
    });
    loading.catch(() => { loading = null; });
  }
  return loading;
}

export class GrpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
    this.codeName = CODES[code] || `code ${code}`;
  }
}

export const CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED',
  'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION',
  'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS',
  'UNAUTHENTICATED'];

// FieldDescriptorProto.Type numbers.
const T = { DOUBLE: 1, FLOAT: 2, INT64: 3, UINT64: 4, INT32: 5, FIXED64: 6, FIXED32: 7, BOOL: 8,
  STRING: 9, MESSAGE: 11, BYTES: 12, UINT32: 13, ENUM: 14, SFIXED32: 15, SFIXED64: 16,
  SINT32: 17, SINT64: 18 };
const VARINT = new Set([T.INT64, T.UINT64, T.INT32, T.BOOL, T.UINT32, T.ENUM, T.SINT32, T.SINT64]);
const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

function fields(type) {
  const f = schema.messages[type];
  if (!f) throw new Error(`unknown message ${type}`);
  return f;
}

// ------------------------------------------------------------------ encode

class Writer {
  constructor() { this.parts = []; this.len = 0; }
  bytes(b) { this.parts.push(b); this.len += b.length; }
  varint(n) {
    const out = [];
    if (n < 0) n = 2 ** 64 + n; // two's complement, as protobuf sends negative int32/int64
    while (n >= 128) { out.push((n % 128) | 128); n = Math.floor(n / 128); }
    out.push(n);
    this.bytes(Uint8Array.from(out));
  }
  tag(num, wire) { this.varint(num * 8 + wire); }
  finish() {
    const out = new Uint8Array(this.len);
    let at = 0;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out;
  }
}

function enumNumber(typeName, v) {
  if (typeof v === 'number') return v;
  const e = schema.enums[typeName];
  if (!e || !(v in e)) throw new Error(`unknown ${typeName} value ${v}`);
  return e[v];
}

function writeValue(w, num, type, typeName, v) {
  switch (type) {
    case T.STRING: { const b = utf8.encode(v); w.tag(num, 2); w.varint(b.length); w.bytes(b); return; }
    case T.BYTES: { const b = v instanceof Uint8Array ? v : new Uint8Array(v); w.tag(num, 2); w.varint(b.length); w.bytes(b); return; }
    case T.MESSAGE: { const b = encode(typeName, v); w.tag(num, 2); w.varint(b.length); w.bytes(b); return; }
    case T.DOUBLE: case T.FIXED64: case T.SFIXED64: {
      const b = new Uint8Array(8); const d = new DataView(b.buffer);
      if (type === T.DOUBLE) d.setFloat64(0, v, true); else d.setBigInt64(0, BigInt(v), true);
      w.tag(num, 1); w.bytes(b); return;
    }
    case T.FLOAT: case T.FIXED32: case T.SFIXED32: {
      const b = new Uint8Array(4); const d = new DataView(b.buffer);
      if (type === T.FLOAT) d.setFloat32(0, v, true); else d.setInt32(0, v, true);
      w.tag(num, 5); w.bytes(b); return;
    }
    case T.BOOL: w.tag(num, 0); w.varint(v ? 1 : 0); return;
    case T.ENUM: w.tag(num, 0); w.varint(enumNumber(typeName, v)); return;
    case T.SINT32: case T.SINT64: w.tag(num, 0); w.varint(v >= 0 ? 2 * v : -2 * v - 1); return;
    default: w.tag(num, 0); w.varint(v); return;
  }
}

// Encodes a plain object; fields left undefined or null are not sent (so proto3 `optional`
// fields keep their absence), maps are plain objects, enums are names or numbers.
export function encode(type, obj) {
  const w = new Writer();
  for (const [name, num, ftype, repeated, typeName] of fields(type)) {
    const v = obj[name];
    if (v === undefined || v === null) continue;
    if (schema.mapSet.has(typeName)) {
      for (const [key, value] of Object.entries(v)) writeValue(w, num, T.MESSAGE, typeName, { key, value });
    } else if (repeated) {
      for (const x of v) writeValue(w, num, ftype, typeName, x);
    } else {
      writeValue(w, num, ftype, typeName, v);
    }
  }
  return w.finish();
}

// ------------------------------------------------------------------ decode

class Reader {
  constructor(buf) { this.b = buf; this.at = 0; this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength); }
  varint() {
    let n = 0, scale = 1, byte;
    do {
      if (this.at >= this.b.length) throw new Error('truncated varint');
      byte = this.b[this.at++];
      n += (byte & 127) * scale;
      scale *= 128;
    } while (byte & 128);
    return n; // exact below 2^53: counts, ids and times here are
  }
  take(n) {
    if (this.at + n > this.b.length) throw new Error('truncated field');
    const s = this.b.subarray(this.at, this.at + n); this.at += n; return s;
  }
  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.take(8);
    else if (wire === 2) this.take(this.varint());
    else if (wire === 5) this.take(4);
    else throw new Error(`wire type ${wire}`);
  }
}

function defaultOf(ftype, repeated, typeName) {
  if (schema.mapSet.has(typeName)) return {};
  if (repeated) return [];
  switch (ftype) {
    case T.STRING: return '';
    case T.BYTES: return new Uint8Array(0);
    case T.MESSAGE: return null;
    case T.BOOL: return false;
    default: return 0;
  }
}

function readScalar(r, ftype) {
  switch (ftype) {
    case T.DOUBLE: { const v = r.view.getFloat64(r.at, true); r.take(8); return v; }
    case T.FLOAT: { const v = r.view.getFloat32(r.at, true); r.take(4); return v; }
    case T.FIXED64: case T.SFIXED64: { const v = Number(r.view.getBigInt64(r.at, true)); r.take(8); return v; }
    case T.FIXED32: { const v = r.view.getUint32(r.at, true); r.take(4); return v; }
    case T.SFIXED32: { const v = r.view.getInt32(r.at, true); r.take(4); return v; }
    case T.BOOL: return r.varint() !== 0;
    case T.SINT32: case T.SINT64: { const n = r.varint(); return n % 2 ? -(n + 1) / 2 : n / 2; }
    case T.INT32: case T.INT64: case T.ENUM: { const n = r.varint(); return n >= 2 ** 63 ? n - 2 ** 64 : n; }
    default: return r.varint();
  }
}

export function decode(type, buf) {
  const byNum = new Map();
  const out = {};
  for (const f of fields(type)) { byNum.set(f[1], f); out[f[0]] = defaultOf(f[2], f[3], f[4]); }
  const r = new Reader(buf);
  while (r.at < r.b.length) {
    const key = r.varint();
    const num = Math.floor(key / 8), wire = key % 8;
    const f = byNum.get(num);
    if (!f) { r.skip(wire); continue; }
    const [name, , ftype, repeated, typeName] = f;
    let v;
    if (ftype === T.MESSAGE) {
      v = decode(typeName, r.take(r.varint()));
      if (schema.mapSet.has(typeName)) { out[name][v.key] = v.value; continue; }
    } else if (ftype === T.STRING) {
      v = utf8d.decode(r.take(r.varint()));
    } else if (ftype === T.BYTES) {
      v = r.take(r.varint()).slice();
    } else if (wire === 2 && repeated) { // packed scalars
      const sub = new Reader(r.take(r.varint()));
      while (sub.at < sub.b.length) out[name].push(readScalar(sub, ftype));
      continue;
    } else {
      v = readScalar(r, ftype);
    }
    if (repeated) out[name].push(v); else out[name] = v;
  }
  return out;
}

// ------------------------------------------------------------------ transport

function frame(bytes) {
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

function headersFor(key) {
  const h = { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', accept: 'application/grpc-web+proto' };
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

function statusFrom(get) {
  const code = get('grpc-status');
  if (code === null || code === undefined) return null;
  let msg = get('grpc-message') || '';
  try { msg = decodeURIComponent(msg); } catch { /* keep as sent */ }
  return { code: Number(code), message: msg };
}

function parseTrailers(bytes) {
  const map = {};
  for (const line of utf8d.decode(bytes).split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) map[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return statusFrom((k) => (k in map ? map[k] : null));
}

async function open(service, method, reqType, messages, key, signal) {
  await loadSchema();
  const parts = messages.map((m) => frame(encode(reqType, m)));
  const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { body.set(p, at); at += p.length; }
  let resp;
  try {
    resp = await fetch(`/mmsearch.v1.${service}/${method}`, { method: 'POST', headers: headersFor(key), body, signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new GrpcError(14, `cannot reach the server: ${e.message}`);
  }
  const early = statusFrom((k) => resp.headers.get(k));
  if (early && early.code !== 0) throw new GrpcError(early.code, early.message);
  if (!resp.ok) throw new GrpcError(14, `HTTP ${resp.status}`);
  return resp;
}

// Yields each response message; ends at the trailers (throwing their error status).
async function* frames(resp, respType, onBytes) {
  const reader = resp.body.getReader();
  let buf = new Uint8Array(0);
  let status = statusFrom((k) => resp.headers.get(k));
  for (;;) {
    while (buf.length >= 5) {
      const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
      if (buf.length < 5 + len) break;
      const flag = buf[0];
      const payload = buf.slice(5, 5 + len);
      buf = buf.slice(5 + len);
      if (flag & 0x80) status = parseTrailers(payload);
      else { if (onBytes) onBytes(); yield decode(respType, payload); }
    }
    const { done, value } = await reader.read();
    if (done) break;
    const joined = new Uint8Array(buf.length + value.length);
    joined.set(buf); joined.set(value, buf.length);
    buf = joined;
  }
  if (!status) throw new GrpcError(13, 'response ended without a status');
  if (status.code !== 0) throw new GrpcError(status.code, status.message);
}

// A unary call (or a client stream sent whole: pass an array as `messages`). `onResponse`
// is called when the response message has fully arrived, before it is decoded.
export async function call(service, method, reqType, respType, req, { key, signal, onResponse } = {}) {
  const resp = await open(service, method, reqType, Array.isArray(req) ? req : [req], key, signal);
  let out = null;
  for await (const m of frames(resp, respType, onResponse)) out = m;
  if (out === null) throw new GrpcError(13, 'no response message');
  return out;
}

// A server-streaming call: an async iterator of response messages.
export async function* stream(service, method, reqType, respType, req, { key, signal } = {}) {
  const resp = await open(service, method, reqType, [req], key, signal);
  yield* frames(resp, respType);
}
