/**
 * A tiny protobuf encoder for the handful of ONNX messages the bench needs, so the peer models
 * are built in code, offline, with no `onnx` package and no model download.
 *
 * Field numbers are those of onnx/onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto,
 * ValueInfoProto, TypeProto, TensorShapeProto, AttributeProto, OperatorSetIdProto). Only the
 * fields used here are written; protobuf readers skip nothing and need nothing else.
 */

// ---- wire format --------------------------------------------------------------------------

class Writer {
  private chunks: Uint8Array[] = [];
  private len = 0;

  bytes(b: Uint8Array): this {
    this.chunks.push(b);
    this.len += b.length;
    return this;
  }

  varint(value: number | bigint): this {
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      out.push(byte);
    } while (v !== 0n);
    return this.bytes(Uint8Array.from(out));
  }

  tag(field: number, wireType: number): this {
    return this.varint((field << 3) | wireType);
  }

  /** wire type 0 */
  int(field: number, value: number | bigint): this {
    return this.tag(field, 0).varint(value);
  }

  /** wire type 2 */
  lenDelim(field: number, payload: Uint8Array): this {
    return this.tag(field, 2).varint(payload.length).bytes(payload);
  }

  string(field: number, s: string): this {
    return this.lenDelim(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Writer): this {
    return this.lenDelim(field, m.finish());
  }

  /** wire type 5 */
  float(field: number, f: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, f, true);
    return this.tag(field, 5).bytes(b);
  }

  packedInts(field: number, values: readonly number[]): this {
    const w = new Writer();
    for (const v of values) w.varint(v);
    return this.message(field, w);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.len);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

// ---- ONNX messages ---------------------------------------------------------------------------

/** TensorProto.DataType */
export const DataType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9 } as const;

export type AttrValue = number | string | number[] | { float: number } | { ints: number[] } | { floats: number[] };

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  domain?: string;
  name?: string;
  /** integers become INT attributes; use { float } for FLOAT, arrays of integers for INTS */
  attrs?: Record<string, AttrValue>;
}

export interface OnnxInitializer {
  name: string;
  dims: number[];
  /** float32 or int64 (given as numbers) */
  data: Float32Array | { int64: number[] };
}

export interface OnnxValueInfo {
  name: string;
  elemType: number;
  /** a number is a fixed dimension, a string a symbolic one */
  dims: Array<number | string>;
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  initializers?: OnnxInitializer[];
}

export interface OnnxModelOptions {
  /** ai.onnx opset; default 17 */
  opset?: number;
  /** com.microsoft opset; default 1 (written only when a node uses the domain) */
  msOpset?: number;
  irVersion?: number;
}

function attribute(name: string, value: AttrValue): Writer {
  // AttributeProto: name=1, f=2, i=3, s=4, floats=7, ints=8, type=20
  const a = new Writer().string(1, name);
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new RangeError(`attribute ${name}: use { float: ${value} } for floats`);
    a.int(3, value).int(20, 2);
  } else if (typeof value === 'string') {
    a.string(4, value).int(20, 3);
  } else if (Array.isArray(value)) {
    a.packedInts(8, value).int(20, 7);
  } else if ('float' in value) {
    a.float(2, value.float).int(20, 1);
  } else if ('ints' in value) {
    a.packedInts(8, value.ints).int(20, 7);
  } else {
    const w = new Writer();
    const b = new Uint8Array(4 * value.floats.length);
    const dv = new DataView(b.buffer);
    value.floats.forEach((f, i) => dv.setFloat32(4 * i, f, true));
    w.bytes(b);
    a.message(7, w).int(20, 6);
  }
  return a;
}

function node(n: OnnxNode, index: number): Writer {
  // NodeProto: input=1, output=2, name=3, op_type=4, attribute=5, domain=7
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name ?? `${n.op}_${index}`);
  w.string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.message(5, attribute(k, v));
  if (n.domain) w.string(7, n.domain);
  return w;
}

function tensor(t: OnnxInitializer): Writer {
  // TensorProto: dims=1, data_type=2, name=8, raw_data=9 (little-endian)
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  let raw: Uint8Array;
  if (t.data instanceof Float32Array) {
    w.int(2, DataType.FLOAT);
    const copy = new Float32Array(t.data); // own buffer, little-endian on every host we run
    raw = new Uint8Array(copy.buffer);
  } else {
    w.int(2, DataType.INT64);
    const b = new BigInt64Array(t.data.int64.map((x) => BigInt(x)));
    raw = new Uint8Array(b.buffer);
  }
  w.string(8, t.name);
  w.lenDelim(9, raw);
  return w;
}

function valueInfo(v: OnnxValueInfo): Writer {
  // ValueInfoProto: name=1, type=2; TypeProto: tensor_type=1; Tensor: elem_type=1, shape=2;
  // TensorShapeProto: dim=1; Dimension: dim_value=1, dim_param=2
  const shape = new Writer();
  for (const d of v.dims) {
    const dim = new Writer();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new Writer().int(1, v.elemType).message(2, shape);
  const type = new Writer().message(1, tensorType);
  return new Writer().string(1, v.name).message(2, type);
}

/** Serialises a ModelProto with one graph. */
export function encodeModel(g: OnnxGraph, opts: OnnxModelOptions = {}): Uint8Array {
  // GraphProto: node=1, name=2, initializer=5, input=11, output=12
  const graph = new Writer();
  g.nodes.forEach((n, i) => graph.message(1, node(n, i)));
  graph.string(2, g.name);
  for (const t of g.initializers ?? []) graph.message(5, tensor(t));
  for (const i of g.inputs) graph.message(11, valueInfo(i));
  for (const o of g.outputs) graph.message(12, valueInfo(o));

  // ModelProto: ir_version=1, producer_name=2, producer_version=3, graph=7, opset_import=8
  // OperatorSetIdProto: domain=1, version=2
  const model = new Writer()
    .int(1, opts.irVersion ?? 8)
    .string(2, 'simd-attention-bench')
    .string(3, '0')
    .message(7, graph)
    .message(8, new Writer().string(1, '').int(2, opts.opset ?? 17));
  if (g.nodes.some((n) => n.domain === 'com.microsoft')) {
    model.message(8, new Writer().string(1, 'com.microsoft').int(2, opts.msOpset ?? 1));
  }
  return model.finish();
}
