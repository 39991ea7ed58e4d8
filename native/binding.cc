// The only file that knows Node-API. Reads the (already validated) arguments of
// src/backend.ts, checks every size again against the typed arrays it was given (the last line
// of defence against out-of-bounds access), and calls the Node-free kernels.
//
// - Zero copy: Float32Array inputs and outputs are used in place.
// - Async: Napi::AsyncWorker; the worker thread touches no JS, holds references to every typed
//   array it reads or writes until it completes, and reports errors as data (sharp's pattern).
//   An engine's calls run one after another (CallQueue).
// - Errors: every failure becomes a JS Error/TypeError/RangeError with a `code` (ERR_ATTN_*).
// - Worker threads: when one is terminated during a call (sync, or async and completed during
//   the worker's teardown), no JS can run any more, so turning a failure into a JS exception
//   fails too; node-addon-api would then rethrow it as C++ and abort the whole process. The
//   build defines NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS, which drops such an exception
//   (nobody is left to catch it); test/native.test.ts terminates workers mid-call.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "include/attention_kernels.h"
#include "multihead.h"
#include "probe/probe.h"
#include "thread_pool.h"

#ifndef SIMD_ATTENTION_VERSION
#define SIMD_ATTENTION_VERSION "0.1.0"
#endif

namespace {

using sa::AttnParams;
using sa::KernelTable;
using sa::MatmulParams;
using sa::SoftmaxParams;

enum class Kind { Error, Type, Range };

Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& msg, Kind kind = Kind::Error) {
  Napi::Error e = kind == Kind::Type    ? Napi::TypeError::New(env, msg)
                  : kind == Kind::Range ? Napi::RangeError::New(env, msg)
                                        : Napi::Error::New(env, msg);
  // an own property, as `err.code = ...` would make, but without calling a `code` setter that
  // script may have put on Error.prototype (one that throws would leave a promise unsettled)
  e.Value().DefineProperty(Napi::PropertyDescriptor::Value("code", Napi::String::New(env, code), napi_property_attributes(napi_writable | napi_enumerable | napi_configurable)));
  return e;
}

[[noreturn]] void Throw(Napi::Env env, const std::string& code, const std::string& msg, Kind kind = Kind::Error) {
  throw MakeError(env, code, msg, kind);
}

// Runs body and turns every C++ failure into a JS exception with a code.
template <typename F>
Napi::Value Guard(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    Throw(env, "ERR_ATTN_ALLOC", "simd-attention native: out of memory");
  } catch (const std::exception& e) {
    Throw(env, "ERR_ATTN_NATIVE", std::string("simd-attention native: ") + e.what());
  } catch (...) {
    Throw(env, "ERR_ATTN_NATIVE", "simd-attention native: unknown failure");
  }
}

void CheckStatus(Napi::Env env, int st, const char* what) {
  if (st == sa::kOk) return;
  if (st == sa::kErrAlloc) Throw(env, "ERR_ATTN_ALLOC", std::string(what) + ": out of memory");
  Throw(env, "ERR_ATTN_SHAPE", std::string(what) + ": the kernel refused its arguments", Kind::Range);
}

// ---- argument readers ------------------------------------------------------------------------

// The address of a typed array's first element. Taken from napi_get_typedarray_info rather than
// through TypedArray::ArrayBuffer(), which refuses a view of a SharedArrayBuffer.
const void* ViewData(Napi::Env env, const Napi::TypedArray& ta) {
  void* data = nullptr;
  if (napi_get_typedarray_info(env, ta, nullptr, nullptr, &data, nullptr, nullptr) != napi_ok)
    throw Napi::Error::New(env);
  return data;
}

std::string TypeName(const Napi::Value& v);

class KernelWorker;

// An engine's async calls run one after another: only its running call sits in libuv's queue,
// the rest wait here. Node finishes every queued add-on job before it tears a worker thread (or
// the process, on process.exit()) down, and runs no add-on hook earlier, so calls left queued
// there would all run first; waiting here they are dropped instead (their promises never settle,
// as no JS runs any more), and a busy engine holds one libuv thread, not all of them (file system
// and DNS requests share that pool). Touched on the JS thread only.
struct CallQueue {
  std::vector<std::pair<const void*, KernelWorker*>> waiting;  // (engine, call), oldest first
  std::vector<const void*> running;                           // engines with a call in libuv's queue
  bool stopping = false;  // JS can no longer run: the environment is being torn down
  void Submit(const void* engine, KernelWorker* w);
  void Done(const void* engine);
  void Drop();
};

// Per Node environment (the main thread and each worker load the addon on their own).
struct AddonData {
  CallQueue calls;
  Napi::FunctionReference engine_ctor;
  Napi::FunctionReference multihead_ctor;
  // ArrayBuffer.prototype's own `resizable` getter, taken when the addon loads: an own property
  // of a buffer could otherwise answer false for one that can shrink (empty where the runtime has
  // no resizable buffers)
  Napi::FunctionReference resizable_getter;
};

// An async call holds its arrays' addresses while it runs, and a resizable ArrayBuffer could
// shrink (free memory) under the kernel: such arrays are refused. Whether a buffer is resizable
// is read through ArrayBuffer.prototype's `resizable` getter as it was when the addon loaded,
// which is JS (script may have replaced it before then, and a replacement could transfer or
// free any array). So every argument is checked first, before any address is taken: afterwards
// no JS runs until the call is queued. A SharedArrayBuffer never shrinks (and the getter refuses
// one); a getter that throws for an ArrayBuffer refuses the call (it cannot be told fixed).
void RefuseResizable(Napi::Env env, const Napi::CallbackInfo& info, const char* const* names, size_t count) {
  AddonData* data = env.GetInstanceData<AddonData>();
  if (!data || data->resizable_getter.IsEmpty()) return;  // a runtime without resizable buffers
  for (size_t i = 0; i < count && i < info.Length(); ++i) {
    if (!info[i].IsTypedArray()) continue;  // View() reports it
    napi_value buffer = nullptr;
    bool plain = false;
    if (napi_get_typedarray_info(env, info[i], nullptr, nullptr, nullptr, &buffer, nullptr) != napi_ok ||
        napi_is_arraybuffer(env, buffer, &plain) != napi_ok)
      throw Napi::Error::New(env);
    if (!plain) continue;
    bool resizable = true;
    std::string why = "is on a resizable ArrayBuffer, which could shrink while the async call runs";
    try {
      Napi::Value r = data->resizable_getter.Call(Napi::Value(env, buffer), {});
      resizable = !(r.IsBoolean() && !r.As<Napi::Boolean>().Value());
    } catch (const Napi::Error& e) {
      why = "could not be told fixed-length: ArrayBuffer.prototype.resizable threw (" + e.Message() + ")";
    }
    if (resizable) Throw(env, "ERR_ATTN_TYPE", std::string(names[i]) + ": " + why, Kind::Type);
  }
}

// The typed arrays an async call reads and writes, by the names its messages give them.
struct HeldArray {
  Napi::Object array;
  std::string name;
};
using HeldArrays = std::vector<HeldArray>;

// A typed array argument of element type E (`type`): its address and element count, held alive
// through `keep` (async calls). Optional: undefined or null gives nullptr and 0.
template <typename E>
E* View(Napi::Env env, const Napi::Value& v, const std::string& name, napi_typedarray_type type, const char* tname, size_t* len, bool optional,
        HeldArrays* keep) {
  if (optional && (v.IsUndefined() || v.IsNull())) {
    *len = 0;
    return nullptr;
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    Throw(env, "ERR_ATTN_TYPE", name + ": expected a " + tname + ", got " + TypeName(v), Kind::Type);
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  *len = ta.ElementLength();
  if (keep) keep->push_back({ta, name});
  if (*len == 0) return reinterpret_cast<E*>(alignof(E));  // never dereferenced
  return static_cast<E*>(const_cast<void*>(ViewData(env, ta)));
}

// d as an integer in [lo, hi], or ERR_ATTN_VALUE naming `name` (object fields and header slots alike)
int64_t CheckedInt(Napi::Env env, const std::string& name, double d, int64_t lo, int64_t hi) {
  if (!std::isfinite(d) || d != std::floor(d) || d < (double)lo || d > (double)hi)
    Throw(env, "ERR_ATTN_VALUE", name + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(d), Kind::Range);
  return (int64_t)d;
}

// a Float32Array argument (the common case of View)
float* F32View(Napi::Env env, const Napi::Value& v, const char* name, size_t* len, HeldArrays* keep, bool optional = false) {
  return View<float>(env, v, name, napi_float32_array, "Float32Array", len, optional, keep);
}

// Fields of an arguments object, for the calls that still take one (softmax, createMultiHead:
// neither runs per token); `ctx` prefixes the field names in messages.
// All fields are read (Snapshot) before any array's address is taken: a getter on a later field
// could otherwise shrink (resize) or detach an array already taken.
struct Reader {
  Napi::Env env;
  Napi::Object obj;
  const char* ctx;
  std::vector<std::pair<std::string, Napi::Value>> fields{};

  std::string Name(const char* n) const { return std::string(ctx) + "." + n; }

  void Snapshot(std::initializer_list<const char*> names) {
    for (const char* n : names) fields.emplace_back(n, obj.Get(n));
  }
  Napi::Value Get(const char* n) const {
    for (const auto& f : fields)
      if (f.first == n) return f.second;
    Throw(env, "ERR_ATTN_NATIVE", Name(n) + ": read outside the snapshot (a binding bug)");
  }

  int64_t Int(const char* n, int64_t lo, int64_t hi) const {
    Napi::Value v = Get(n);
    if (!v.IsNumber()) Throw(env, "ERR_ATTN_TYPE", Name(n) + ": expected an integer, got " + TypeName(v), Kind::Type);
    return CheckedInt(env, Name(n), v.As<Napi::Number>().DoubleValue(), lo, hi);
  }
  int64_t IntOr(const char* n, int64_t dflt, int64_t lo, int64_t hi) const {
    Napi::Value v = Get(n);
    if (v.IsUndefined() || v.IsNull()) return dflt;
    return Int(n, lo, hi);
  }
  double Num(const char* n) const {
    Napi::Value v = Get(n);
    if (!v.IsNumber()) Throw(env, "ERR_ATTN_TYPE", Name(n) + ": expected a number, got " + TypeName(v), Kind::Type);
    return v.As<Napi::Number>().DoubleValue();
  }
  float* F32(const char* n, size_t* len, bool optional = false) const { return F32View(env, Get(n), Name(n).c_str(), len, nullptr, optional); }
};

std::string TypeName(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return "number";
  if (v.IsBoolean()) return "boolean";
  if (v.IsString()) return "string";
  if (v.IsTypedArray()) {
    switch (v.As<Napi::TypedArray>().TypedArrayType()) {
      case napi_float32_array: return "Float32Array";
      case napi_uint8_array: return "Uint8Array";
      case napi_int32_array: return "Int32Array";
      case napi_float64_array: return "Float64Array";
      default: return "another TypedArray";
    }
  }
  if (v.IsArray()) return "Array";
  if (v.IsFunction()) return "function";
  return "object";
}

constexpr int64_t kMaxDim = (int64_t)1 << 40;
constexpr int64_t kMaxStride = (int64_t)1 << 50;

// Elements needed by a tensor with these counts and strides: 1 + sum (n_i - 1) * s_i (0 if any
// count is 0). __int128 so that no product can overflow.
__int128 Needed(std::initializer_list<std::pair<int64_t, int64_t>> dims) {
  __int128 need = 1;
  for (auto& d : dims) {
    if (d.first == 0) return 0;
    need += (__int128)(d.first - 1) * d.second;
  }
  return need;
}

void CheckLen(Napi::Env env, const std::string& name, size_t len, __int128 need) {
  if ((__int128)len < need)
    Throw(env, "ERR_ATTN_SIZE",
          name + ": expected at least " + std::to_string((long long)need) + " elements for the given shape and strides, got " + std::to_string(len),
          Kind::Range);
}

// ---- packed calls: attention, the multi-head forward and matmul ---------------------------------
// The calls that run per token (and matmul, which a small model calls as often) take their
// numbers in one Float64Array (the header) and their arrays as positional arguments, not as an
// arguments object: every named property read makes and internalizes a name string, and the ~35
// of an attention call took ~7 us, most of a small call's time. The slots are laid out in src/backends/native-pack.ts (kept in step with the
// enums below), which has already checked that each is a number of the right kind; the values
// are checked here, as everything else is.

namespace attn_slot {
enum : int { kBatch, kHeads, kKvHeads, kSeqQ, kSeqK, kHeadDim, kHeadDimV, kQStrides, kKStrides = kQStrides + 3, kVStrides = kKStrides + 3,
             kOStrides = kVStrides + 3, kScale = kOStrides + 3, kCausal, kMaskKind, kMaskStrides, kThreads = kMaskStrides + 4, kCount };
const char* const kNames[kCount] = {"args.batch", "args.numHeads", "args.numKvHeads", "args.seqQ", "args.seqK", "args.headDim", "args.headDimV",
                                    "qStrides.b", "qStrides.h", "qStrides.s", "kStrides.b", "kStrides.h", "kStrides.s",
                                    "vStrides.b", "vStrides.h", "vStrides.s", "oStrides.b", "oStrides.h", "oStrides.s",
                                    "args.scale", "args.causal", "mask.kind", "mask.strideB", "mask.strideH", "mask.strideQ", "mask.strideK",
                                    "args.threads"};
// positional arguments after the header
enum : int { kQ = 1, kK, kV, kOut, kWeights, kMaskData, kKeyLengths, kArgs };
const char* const kArgNames[kArgs] = {"header", "args.q", "args.k", "args.v", "args.out", "args.weights", "mask.data", "args.keyLengths"};
}  // namespace attn_slot

namespace forward_slot {
enum : int { kBatch, kSeqQ, kSeqKv, kSelfAttention, kCausal, kHasCache, kCacheMax, kCacheLength, kMaskKind, kMaskStrides, kCount = kMaskStrides + 4 };
const char* const kNames[kCount] = {"args.batch", "args.seqQ", "args.seqKv", "args.selfAttention", "args.causal", "args.cache",
                                    "cache.maxLength", "cache.length", "mask.kind", "mask.strideB", "mask.strideH", "mask.strideQ", "mask.strideK"};
enum : int { kX = 1, kKv, kOut, kCacheK, kCacheV, kMaskData, kKeyLengths, kArgs };
const char* const kArgNames[kArgs] = {"header", "args.x", "args.kv", "args.out", "cache.k", "cache.v", "mask.data", "args.keyLengths"};
}  // namespace forward_slot

namespace matmul_slot {
enum : int { kBatch, kM, kN, kK, kStrideA, kStrideB, kTransposeB, kThreads, kCount };
const char* const kNames[kCount] = {"args.batch", "args.m", "args.n", "args.k", "args.strideA", "args.strideB", "args.transposeB", "args.threads"};
enum : int { kA = 1, kB, kOut, kBias, kArgs };
const char* const kArgNames[kArgs] = {"header", "args.a", "args.b", "args.out", "args.bias"};
}  // namespace matmul_slot

// "header slot names;argument names" of one packed call: the loader refuses a binary whose
// convention differs from the package's (native-pack.ts), e.g. a build/Release left by another
// version, rather than read its slots in the wrong places
std::string Convention(const char* const* names, int count, const char* const* args, int nargs) {
  std::string s;
  for (int i = 0; i < count; ++i) s += std::string(i ? "," : "") + names[i];
  s += ";";
  for (int i = 1; i < nargs; ++i) s += std::string(i > 1 ? "," : "") + args[i];
  return s;
}
#define SA_CONVENTION(S) Convention(S::kNames, S::kCount, S::kArgNames, S::kArgs)

struct Header {
  Napi::Env env;
  const double* h;
  const char* const* names;
  double Num(int i) const { return h[i]; }
  bool Bool(int i) const { return CheckedInt(env, names[i], h[i], 0, 1) != 0; }  // 0 or 1 (NaN is no flag)
  int64_t Int(int i, int64_t lo, int64_t hi) const { return CheckedInt(env, names[i], h[i], lo, hi); }
};

Header ReadHeader(const Napi::CallbackInfo& info, const char* fn, int count, int args, const char* const* names) {
  Napi::Env env = info.Env();
  const Napi::Value v = info.Length() > 0 ? info[0] : env.Undefined();
  if (info.Length() != (size_t)args || !v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      v.As<Napi::TypedArray>().ElementLength() != (size_t)count)
    Throw(env, "ERR_ATTN_TYPE", std::string(fn) + ": expected a packed header (a Float64Array of " + std::to_string(count) + ") and " + std::to_string(args - 1) + " arrays", Kind::Type);
  return Header{env, static_cast<const double*>(ViewData(env, v.As<Napi::TypedArray>())), names};
}

// kind slot: 0 none, 1 additive (Float32Array data), 2 boolean (Uint8Array); the 4 stride slots follow it
void ReadMask(const Header& hd, int kind_slot, const Napi::Value& data_arg, HeldArrays* keep, int64_t B, int64_t H, int64_t Sq,
              int64_t Sk, int* kind, const void** data, int64_t* s) {
  *kind = sa::kMaskNone;
  *data = nullptr;
  s[0] = s[1] = s[2] = s[3] = 0;
  const int64_t k = hd.Int(kind_slot, 0, 2);
  if (k == 0) return;
  size_t len = 0;
  if (k == 1) {
    *data = F32View(hd.env, data_arg, "mask.data", &len, keep);
    *kind = sa::kMaskAdditive;
  } else {
    *data = View<uint8_t>(hd.env, data_arg, "mask.data", napi_uint8_array, "Uint8Array", &len, false, keep);
    *kind = sa::kMaskBoolean;
  }
  for (int i = 0; i < 4; ++i) s[i] = hd.Int(kind_slot + 1 + i, 0, kMaxStride);
  CheckLen(hd.env, "mask.data", len, Needed({{B, s[0]}, {H, s[1]}, {Sq, s[2]}, {Sk, s[3]}}));
}

const int32_t* ReadKeyLengths(Napi::Env env, const Napi::Value& arg, HeldArrays* keep, int64_t B, int64_t Sk) {
  size_t len = 0;
  const int32_t* kl = View<int32_t>(env, arg, "args.keyLengths", napi_int32_array, "Int32Array", &len, true, keep);
  if (!kl) return nullptr;
  if ((int64_t)len < B)
    Throw(env, "ERR_ATTN_SIZE", "keyLengths: expected " + std::to_string(B) + " entries, got " + std::to_string(len), Kind::Range);
  for (int64_t b = 0; b < B; ++b)
    if (kl[b] < 0 || kl[b] > Sk)
      Throw(env, "ERR_ATTN_VALUE", "keyLengths[" + std::to_string(b) + "]: expected a value in [0, " + std::to_string(Sk) + "], got " + std::to_string(kl[b]), Kind::Range);
  return kl;
}

AttnParams ReadAttention(const Napi::CallbackInfo& info, const char* fn, HeldArrays* keep, int* threads) {
  namespace S = attn_slot;
  Napi::Env env = info.Env();
  const Header hd = ReadHeader(info, fn, S::kCount, S::kArgs, S::kNames);
  AttnParams p{};
  size_t lq, lk, lv, lo, lw;
  p.batch = hd.Int(S::kBatch, 0, kMaxDim);
  p.heads = hd.Int(S::kHeads, 1, kMaxDim);
  p.kv_heads = hd.Int(S::kKvHeads, 1, kMaxDim);
  p.seq_q = hd.Int(S::kSeqQ, 0, kMaxDim);
  p.seq_k = hd.Int(S::kSeqK, 0, kMaxDim);
  p.head_dim = hd.Int(S::kHeadDim, 0, kMaxDim);
  p.head_dim_v = hd.Int(S::kHeadDimV, 0, kMaxDim);
  if (p.heads % p.kv_heads != 0)
    Throw(env, "ERR_ATTN_SHAPE", "args.numHeads: expected a multiple of numKvHeads (" + std::to_string(p.kv_heads) + "), got " + std::to_string(p.heads), Kind::Range);
  p.q = F32View(env, info[S::kQ], S::kArgNames[S::kQ], &lq, keep);
  p.k = F32View(env, info[S::kK], S::kArgNames[S::kK], &lk, keep);
  p.v = F32View(env, info[S::kV], S::kArgNames[S::kV], &lv, keep);
  p.out = F32View(env, info[S::kOut], S::kArgNames[S::kOut], &lo, keep);
  p.weights = F32View(env, info[S::kWeights], S::kArgNames[S::kWeights], &lw, keep, true);
  int64_t* strides[4][3] = {{&p.q_sb, &p.q_sh, &p.q_ss}, {&p.k_sb, &p.k_sh, &p.k_ss}, {&p.v_sb, &p.v_sh, &p.v_ss}, {&p.o_sb, &p.o_sh, &p.o_ss}};
  for (int t = 0; t < 4; ++t)
    for (int i = 0; i < 3; ++i) *strides[t][i] = hd.Int(S::kQStrides + 3 * t + i, 0, kMaxStride);
  CheckLen(env, "args.q", lq, Needed({{p.batch, p.q_sb}, {p.heads, p.q_sh}, {p.seq_q, p.q_ss}, {p.head_dim, 1}}));
  CheckLen(env, "args.k", lk, Needed({{p.batch, p.k_sb}, {p.kv_heads, p.k_sh}, {p.seq_k, p.k_ss}, {p.head_dim, 1}}));
  CheckLen(env, "args.v", lv, Needed({{p.batch, p.v_sb}, {p.kv_heads, p.v_sh}, {p.seq_k, p.v_ss}, {p.head_dim_v, 1}}));
  CheckLen(env, "args.out", lo, Needed({{p.batch, p.o_sb}, {p.heads, p.o_sh}, {p.seq_q, p.o_ss}, {p.head_dim_v, 1}}));
  if (p.weights) CheckLen(env, "args.weights", lw, (__int128)p.batch * p.heads * p.seq_q * p.seq_k);
  p.scale = (float)hd.Num(S::kScale);
  p.causal = hd.Bool(S::kCausal);
  int64_t ms[4];
  ReadMask(hd, S::kMaskKind, info[S::kMaskData], keep, p.batch, p.heads, p.seq_q, p.seq_k, &p.mask_kind, &p.mask, ms);
  p.m_sb = ms[0]; p.m_sh = ms[1]; p.m_sq = ms[2]; p.m_sk = ms[3];
  p.key_lengths = ReadKeyLengths(env, info[S::kKeyLengths], keep, p.batch, p.seq_k);
  *threads = (int)hd.Int(S::kThreads, 0, 1 << 20);
  return p;
}

MatmulParams ReadMatmul(const Napi::CallbackInfo& info, int* threads) {
  namespace S = matmul_slot;
  Napi::Env env = info.Env();
  const Header hd = ReadHeader(info, "matmul", S::kCount, S::kArgs, S::kNames);
  MatmulParams p{};
  size_t la, lb, lc, lbias;
  p.batch = hd.Int(S::kBatch, 0, kMaxDim);
  p.m = hd.Int(S::kM, 0, kMaxDim);
  p.n = hd.Int(S::kN, 0, kMaxDim);
  p.k = hd.Int(S::kK, 0, kMaxDim);
  p.stride_a = hd.Int(S::kStrideA, 0, kMaxStride);
  p.stride_b = hd.Int(S::kStrideB, 0, kMaxStride);
  p.transpose_b = hd.Bool(S::kTransposeB);
  p.a = F32View(env, info[S::kA], S::kArgNames[S::kA], &la, nullptr);
  p.b = F32View(env, info[S::kB], S::kArgNames[S::kB], &lb, nullptr);
  p.c = F32View(env, info[S::kOut], S::kArgNames[S::kOut], &lc, nullptr);
  p.bias = F32View(env, info[S::kBias], S::kArgNames[S::kBias], &lbias, nullptr, true);
  p.lda = p.k;
  p.ldc = p.n;
  auto need = [](int64_t batch, int64_t stride, __int128 elems) -> __int128 {
    return (batch == 0 || elems == 0) ? 0 : (__int128)(batch - 1) * stride + elems;
  };
  CheckLen(env, "args.a", la, need(p.batch, p.stride_a, (__int128)p.m * p.k));
  CheckLen(env, "args.b", lb, need(p.batch, p.stride_b, (__int128)p.k * p.n));
  CheckLen(env, "args.out", lc, (__int128)p.batch * p.m * p.n);
  if (p.bias) CheckLen(env, "args.bias", lbias, p.n);
  *threads = (int)hd.Int(S::kThreads, 0, 1 << 20);
  return p;
}

// ---- engine ------------------------------------------------------------------------------------

struct Core {
  const KernelTable* kt;
  sa::ThreadPool pool;
  Core(const KernelTable* t, int threads, int cores) : kt(t), pool(threads, cores) {}
};

// Runs fn on `base` limited to `threads` of its workers (0 = all).
template <typename F>
int WithLimit(sa::Parallel& base, int threads, F&& fn) {
  if (threads > 0 && threads < base.workers()) {
    sa::LimitedParallel lp(base, threads);
    return fn((sa::Parallel&)lp);
  }
  return fn(base);
}

// From a libuv thread: a region waits while another call's region runs.
template <typename F>
int WithPool(Core& core, int threads, F&& fn) {
  return WithLimit(core.pool, threads, fn);
}

// From the JS thread (synchronous calls): a region that finds the pool busy with an asynchronous
// call's region runs on the JS thread alone rather than stall the event loop until that call ends
// (a one-token forward behind a prefill's forwardAsync waited ~0.5 s).
template <typename F>
int WithPoolNow(Core& core, int threads, F&& fn) {
  sa::InlineWhenBusy now(core.pool);
  return WithLimit(now, threads, fn);
}

// Whether this environment can still run JS: Node-API refuses every call into JS (a property
// lookup included) once a worker is being terminated or the process is exiting.
bool CanRunJs(napi_env env) {
  napi_value obj = nullptr, key = nullptr;
  bool has = false;
  return napi_create_object(env, &obj) == napi_ok && napi_create_string_utf8(env, "x", 1, &key) == napi_ok &&
         napi_has_own_property(env, obj, key, &has) == napi_ok;
}

// Computes off the JS thread; resolves/rejects a promise. Holds the typed arrays alive.
class KernelWorker : public Napi::AsyncWorker {
 public:
  using Job = std::function<int()>;
  // engine: the Core whose calls run one after another (see CallQueue)
  KernelWorker(Napi::Env env, const void* engine, std::shared_ptr<void> keep_native, HeldArrays& arrays, Job job)
      : Napi::AsyncWorker(env, "simd-attention"), deferred_(Napi::Promise::Deferred::New(env)), engine_(engine), keep_native_(std::move(keep_native)), job_(std::move(job)) {
    for (auto& a : arrays) refs_.push_back({Napi::Persistent(a.array), a.name});
  }
  // Queues the call behind its engine's earlier ones and returns its promise.
  Napi::Promise Start() {
    Napi::Promise promise = deferred_.Promise();
    Data().calls.Submit(engine_, this);
    return promise;
  }
  // Before a waiting call starts (on the JS thread): one whose buffer was transferred away
  // meanwhile is rejected, naming it, and deleted without running, so its kernel never writes
  // into memory the buffer took along (and its new owner may have freed).
  bool RefusedAsDetached() {
    const std::string detached = Detached();
    if (detached.empty()) return false;
    RejectUnrun([&] { return DetachedError(detached, "while the async call waited for the engine's earlier calls; it did not run"); });
    return true;
  }
  // Rejects a call that libuv would not take, then deletes it.
  void Refuse() {
    RejectUnrun([&] { return MakeError(Env(), "ERR_ATTN_NATIVE", "simd-attention native: the async call could not be queued"); });
  }

 protected:
  void Execute() override {
    try {
      int st = job_();
      if (st == sa::kErrAlloc) Fail("ERR_ATTN_ALLOC", "out of memory");
      else if (st != sa::kOk) Fail("ERR_ATTN_SHAPE", "the kernel refused its arguments");
    } catch (const std::bad_alloc&) {
      Fail("ERR_ATTN_ALLOC", "out of memory");
    } catch (const std::exception& e) {
      Fail("ERR_ATTN_NATIVE", e.what());
    } catch (...) {
      Fail("ERR_ATTN_NATIVE", "unknown failure");
    }
  }
  // A buffer transferred away (postMessage / structuredClone with `transfer`) during the call
  // was read and written through its old address all the same: the promise rejects, naming it,
  // rather than resolving as if the caller's arrays held the result.
  void OnOK() override {
    const std::string detached = Detached();
    Release();
    if (detached.empty()) return Settle([&] { deferred_.Resolve(Env().Undefined()); });
    Settle([&] { deferred_.Reject(DetachedError(detached, "during the async call, which read and wrote it in place").Value()); });
  }
  void OnError(const Napi::Error&) override {
    Release();
    Settle([&] { deferred_.Reject(MakeError(Env(), code_, "simd-attention native: " + msg_).Value()); });
  }
  // Starts the engine's next call once this one has settled (and been deleted).
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    CallQueue& calls = Data().calls;
    const void* engine = engine_;
    Napi::AsyncWorker::OnWorkComplete(env, status);
    calls.Done(engine);
  }

 private:
  AddonData& Data() { return *Env().GetInstanceData<AddonData>(); }
  // A call that never ran: its arrays released, rejected with make()'s error (made inside
  // Settle, which may find JS stopped), and deleted.
  template <typename F>
  void RejectUnrun(F&& make) {
    Release();
    Settle([&] { deferred_.Reject(make().Value()); });
    delete this;
  }
  Napi::Error DetachedError(const std::string& name, const char* when) {
    return MakeError(Env(), "ERR_ATTN_SIZE", "simd-attention native: " + name + ": its buffer was detached (transferred) " + when +
                                                 "; keep the buffers of an async call attached until its promise settles",
                     Kind::Range);
  }
  // The name of a held array whose buffer is detached, or "".
  std::string Detached() {
    for (auto& r : refs_) {
      const Napi::Value v = r.first.Value();
      if (v.IsTypedArray() && v.As<Napi::TypedArray>().ArrayBuffer().IsDetached()) return r.second;
    }
    return "";
  }
  // Settling fails once the environment is stopping: the engine's calls still waiting are then
  // left unstarted. Any other failure (none is known) leaves the queue running.
  template <typename F>
  void Settle(F&& settle) {
    try {
      settle();
    } catch (...) {
      if (!CanRunJs(Env())) Data().calls.stopping = true;
    }
  }
  void Fail(const char* code, const std::string& msg) {
    code_ = code;
    msg_ = msg;
    SetError(msg);
  }
  void Release() {
    for (auto& r : refs_) r.first.Reset();
    refs_.clear();
    keep_native_.reset();
  }
  Napi::Promise::Deferred deferred_;
  const void* engine_;
  std::vector<std::pair<Napi::ObjectReference, std::string>> refs_;
  std::shared_ptr<void> keep_native_;
  Job job_;
  std::string code_ = "ERR_ATTN_NATIVE", msg_;
};

void CallQueue::Submit(const void* engine, KernelWorker* w) {
  if (std::find(running.begin(), running.end(), engine) != running.end()) return waiting.push_back({engine, w});
  try {
    w->Queue();
  } catch (...) {
    delete w;  // never queued; the caller's Guard reports the failure
    throw;
  }
  running.push_back(engine);
}

void CallQueue::Done(const void* engine) {
  while (!stopping) {
    auto it = std::find_if(waiting.begin(), waiting.end(), [engine](const auto& call) { return call.first == engine; });
    if (it == waiting.end()) break;
    KernelWorker* next = it->second;
    waiting.erase(it);
    if (next->RefusedAsDetached()) continue;
    try {
      next->Queue();
      return;  // the engine stays running
    } catch (...) {
      next->Refuse();
    }
  }
  auto it = std::find(running.begin(), running.end(), engine);
  if (it != running.end()) running.erase(it);
}

// At the environment's teardown (after Node has run the calls in libuv's queue): the calls
// still waiting never run; their arrays are released.
void CallQueue::Drop() {
  for (auto& w : waiting) delete w.second;
  waiting.clear();
}

class Engine;

// V8 calls a class's methods only on that class's objects; accessors and constructor arguments
// get no such check, and node-addon-api unwraps `this` before an accessor's body could look: a
// getter borrowed from one class and called on the other, or a MultiHead passed where the engine
// goes, would treat one C++ object as the other. So the classes have methods only (an engine's
// isa and threads are plain values set when it is made), and an engine is type-tagged when made
// and checked before the multi-head constructor unwraps it. The tag holds an address in this copy
// of the binary: an engine made by another copy (a different file, perhaps another version whose
// Engine is laid out otherwise) fails the check too.
const char kTagAnchor = 0;
const napi_type_tag kEngineTag = {0x8b6d1c2a5f3e4d71ULL, 0xa2c94e0b7d165f38ULL ^ (uint64_t)(uintptr_t)&kTagAnchor};

bool Tagged(const Napi::Value& v, const napi_type_tag* tag) { return v.IsObject() && v.As<Napi::Object>().CheckTypeTag(tag); }

class MultiHead : public Napi::ObjectWrap<MultiHead> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeMultiHead",
                       {InstanceMethod<&MultiHead::Forward>("forward"), InstanceMethod<&MultiHead::ForwardAsync>("forwardAsync"),
                        InstanceMethod<&MultiHead::Dispose>("dispose")});
  }
  MultiHead(const Napi::CallbackInfo& info);
  ~MultiHead() override { weights_.reset(); }
  void Finalize(Napi::Env env) override {
    if (adjusted_) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -adjusted_);
      adjusted_ = 0;
    }
  }

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info) { return Run(info, false); }
  Napi::Value ForwardAsync(const Napi::CallbackInfo& info) { return Run(info, true); }
  Napi::Value Run(const Napi::CallbackInfo& info, bool async);
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    weights_.reset();
    core_.reset();  // its engine's pool: a closed engine's threads end once nothing holds them
    if (adjusted_) {
      Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -adjusted_);
      adjusted_ = 0;
    }
    return info.Env().Undefined();
  }

  std::shared_ptr<Core> core_;
  std::shared_ptr<sa::MultiHeadWeights> weights_;
  int threads_ = 0;
  int64_t adjusted_ = 0;
};

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeEngine",
                       {InstanceMethod<&Engine::Attention>("attention"), InstanceMethod<&Engine::AttentionAsync>("attentionAsync"),
                        InstanceMethod<&Engine::Matmul>("matmul"), InstanceMethod<&Engine::Softmax>("softmax"),
                        InstanceMethod<&Engine::CreateMultiHead>("createMultiHead"), InstanceMethod<&Engine::Close>("close")});
  }
  Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
    Napi::Env env = info.Env();
    Guard(env, [&]() -> Napi::Value {
      info.This().As<Napi::Object>().TypeTag(&kEngineTag);
      if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber())
        Throw(env, "ERR_ATTN_TYPE", "createEngine(isa: string, threads: number, cores?: number)", Kind::Type);
      std::string isa = info[0].As<Napi::String>().Utf8Value();
      const int th = (int)CheckedInt(env, "threads", info[1].As<Napi::Number>().DoubleValue(), 1, 1024);
      // the cores the process can keep busy (src/backends/usable-cores.ts); absent: the pool's own count
      int cores = 0;
      if (info.Length() > 2 && !info[2].IsUndefined()) {
        if (!info[2].IsNumber()) Throw(env, "ERR_ATTN_TYPE", "cores: expected a number", Kind::Type);
        cores = (int)CheckedInt(env, "cores", info[2].As<Napi::Number>().DoubleValue(), 1, 65536);
      }
      const KernelTable* kt = sa::kernels_for(isa.c_str());
      if (!kt) {
        const char* isas[8];
        int n = sa::supported_isas(isas, 8);
        std::string list;
        for (int i = 0; i < n; ++i) list += (i ? ", " : "") + std::string(isas[i]);
        Throw(env, "ERR_ATTN_VALUE", "ISA '" + isa + "' is not supported by this CPU/OS or this build (supported: " + list + ")");
      }
      // shared_ptr(new ...) here and below, not make_shared: make_shared's deleter lookup calls
      // _Sp_make_shared_tag::_S_eq, which alone would raise the prebuilt binary's libstdc++ floor
      // to GLIBCXX_3.4.26 (GCC 9) where Node 20 itself needs only GCC 8's (native/runtime_floor.cc)
      try {
        core_ = std::shared_ptr<Core>(new Core(kt, th, cores));
      } catch (const std::system_error& e) {
        // the pool has stopped the threads it had started (thread_pool.cc)
        Throw(env, "ERR_ATTN_NATIVE",
              "simd-attention native: could not start " + std::to_string(th) + " threads (" + e.what() + "); ask for fewer threads");
      }
      info.This().As<Napi::Object>().DefineProperties({
          Napi::PropertyDescriptor::Value("isa", Napi::String::New(env, kt->name), napi_enumerable),
          Napi::PropertyDescriptor::Value("threads", Napi::Number::New(env, core_->pool.workers()), napi_enumerable),
      });
      return env.Undefined();
    });
  }
  std::shared_ptr<Core> core(Napi::Env env) const {
    if (!core_) Throw(env, "ERR_ATTN_DISPOSED", "the native backend was closed");
    return core_;
  }

 private:

  Napi::Value Close(const Napi::CallbackInfo& info) {
    core_.reset();
    return info.Env().Undefined();
  }
  static Napi::Object ArgObject(const Napi::CallbackInfo& info, const char* fn) {
    if (info.Length() < 1 || !info[0].IsObject())
      Throw(info.Env(), "ERR_ATTN_TYPE", std::string(fn) + ": expected an arguments object", Kind::Type);
    return info[0].As<Napi::Object>();
  }
  Napi::Value Attention(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      auto c = core(env);
      int threads = 0;
      AttnParams p = ReadAttention(info, "attention", nullptr, &threads);
      CheckStatus(env, WithPoolNow(*c, threads, [&](sa::Parallel& par) { return c->kt->attention(p, par); }), "attention");
      return env.Undefined();
    });
  }
  Napi::Value AttentionAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      auto c = core(env);
      int threads = 0;
      HeldArrays keep;
      RefuseResizable(env, info, attn_slot::kArgNames, attn_slot::kArgs);
      AttnParams p = ReadAttention(info, "attentionAsync", &keep, &threads);
      auto* w = new KernelWorker(env, c.get(), c, keep, [c, p, threads]() {
        return WithPool(*c, threads, [&](sa::Parallel& par) { return c->kt->attention(p, par); });
      });
      return w->Start();
    });
  }
  Napi::Value Matmul(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      auto c = core(env);
      int threads = 0;
      MatmulParams p = ReadMatmul(info, &threads);
      CheckStatus(env, WithPoolNow(*c, threads, [&](sa::Parallel& par) { return c->kt->matmul(p, par); }), "matmul");
      return env.Undefined();
    });
  }
  Napi::Value Softmax(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      auto c = core(env);
      Reader r{env, ArgObject(info, "softmax"), "args"};
      r.Snapshot({"rows", "cols", "scale", "x", "out", "threads"});
      SoftmaxParams p{};
      size_t lx, lo;
      p.rows = r.Int("rows", 0, kMaxDim);
      p.cols = r.Int("cols", 0, kMaxDim);
      p.scale = (float)r.Num("scale");
      p.x = r.F32("x", &lx);
      p.out = r.F32("out", &lo);
      CheckLen(env, "args.x", lx, (__int128)p.rows * p.cols);
      CheckLen(env, "args.out", lo, (__int128)p.rows * p.cols);
      int threads = (int)r.IntOr("threads", 0, 0, 1 << 20);
      CheckStatus(env, WithPoolNow(*c, threads, [&](sa::Parallel& par) { return c->kt->softmax(p, par); }), "softmax");
      return env.Undefined();
    });
  }
  Napi::Value CreateMultiHead(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, [&]() -> Napi::Value {
      core(env);
      Napi::Object params = ArgObject(info, "createMultiHead");
      AddonData* data = env.GetInstanceData<AddonData>();
      return data->multihead_ctor.New({params, this->Value()});
    });
  }

  std::shared_ptr<Core> core_;
};

MultiHead::MultiHead(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MultiHead>(info) {
  Napi::Env env = info.Env();
  Guard(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsObject() || !Tagged(info[1], &kEngineTag))
      Throw(env, "ERR_ATTN_TYPE", "NativeMultiHead is created by engine.createMultiHead(params)", Kind::Type);
    Engine* eng = Engine::Unwrap(info[1].As<Napi::Object>());
    core_ = eng->core(env);
    Reader r{env, info[0].As<Napi::Object>(), "params"};
    r.Snapshot({"embedDim", "numHeads", "numKvHeads", "headDim", "kvDim", "wq", "wk", "wv", "wo", "bq", "bk", "bv", "bo", "threads"});
    sa::MultiHeadConfig cfg{};
    cfg.embed_dim = r.Int("embedDim", 1, 1 << 20);
    cfg.num_heads = r.Int("numHeads", 1, 1 << 20);
    cfg.num_kv_heads = r.Int("numKvHeads", 1, 1 << 20);
    cfg.head_dim = r.Int("headDim", 1, 1 << 20);
    cfg.kv_dim = r.Int("kvDim", 1, 1 << 30);
    const int64_t E = cfg.embed_dim, KV = cfg.kv_dim;
    if (cfg.num_heads * cfg.head_dim != E || cfg.num_kv_heads * cfg.head_dim != KV || cfg.num_heads % cfg.num_kv_heads)
      Throw(env, "ERR_ATTN_SHAPE", "params: expected embedDim = numHeads*headDim, kvDim = numKvHeads*headDim and numHeads a multiple of numKvHeads", Kind::Range);
    size_t l;
    cfg.wq = r.F32("wq", &l); CheckLen(env, "params.wq", l, (__int128)E * E);
    cfg.wk = r.F32("wk", &l); CheckLen(env, "params.wk", l, (__int128)KV * E);
    cfg.wv = r.F32("wv", &l); CheckLen(env, "params.wv", l, (__int128)KV * E);
    cfg.wo = r.F32("wo", &l); CheckLen(env, "params.wo", l, (__int128)E * E);
    cfg.bq = r.F32("bq", &l, true); if (cfg.bq) CheckLen(env, "params.bq", l, E);
    cfg.bk = r.F32("bk", &l, true); if (cfg.bk) CheckLen(env, "params.bk", l, KV);
    cfg.bv = r.F32("bv", &l, true); if (cfg.bv) CheckLen(env, "params.bv", l, KV);
    cfg.bo = r.F32("bo", &l, true); if (cfg.bo) CheckLen(env, "params.bo", l, E);
    threads_ = (int)r.IntOr("threads", 0, 0, 1 << 20);
    weights_ = std::shared_ptr<sa::MultiHeadWeights>(new sa::MultiHeadWeights(core_->kt, cfg));
    adjusted_ = weights_->bytes();
    Napi::MemoryManagement::AdjustExternalMemory(env, adjusted_);
    return env.Undefined();
  });
}

Napi::Value MultiHead::Run(const Napi::CallbackInfo& info, bool async) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    namespace S = forward_slot;
    HeldArrays keep;
    HeldArrays* kp = async ? &keep : nullptr;
    // JS first (it may dispose this block, or close its engine), then what the call holds
    if (async) RefuseResizable(env, info, S::kArgNames, S::kArgs);
    auto c = core_;
    auto w = weights_;
    if (!w || !c) Throw(env, "ERR_ATTN_DISPOSED", "multiHeadAttention: this block was disposed");
    const Header hd = ReadHeader(info, async ? "forwardAsync" : "forward", S::kCount, S::kArgs, S::kNames);
    const sa::MultiHeadConfig& cfg = w->config();
    const int64_t E = cfg.embed_dim, KV = cfg.kv_dim;
    sa::MultiHeadForward f{};
    size_t lx, lkv, lo;
    f.batch = hd.Int(S::kBatch, 0, kMaxDim);
    f.seq_q = hd.Int(S::kSeqQ, 0, kMaxDim);
    f.seq_kv = hd.Int(S::kSeqKv, 0, kMaxDim);
    f.x = F32View(env, info[S::kX], S::kArgNames[S::kX], &lx, kp);
    f.kv = F32View(env, info[S::kKv], S::kArgNames[S::kKv], &lkv, kp);
    f.out = F32View(env, info[S::kOut], S::kArgNames[S::kOut], &lo, kp);
    f.self_attention = hd.Bool(S::kSelfAttention) && f.x == f.kv && f.seq_q == f.seq_kv;
    f.causal = hd.Bool(S::kCausal);
    CheckLen(env, "args.x", lx, (__int128)f.batch * f.seq_q * E);
    CheckLen(env, "args.kv", lkv, (__int128)f.batch * f.seq_kv * E);
    CheckLen(env, "args.out", lo, (__int128)f.batch * f.seq_q * E);
    int64_t seq_k = f.seq_kv;
    if (hd.Bool(S::kHasCache)) {
      size_t lk, lv;
      f.cache_k = F32View(env, info[S::kCacheK], S::kArgNames[S::kCacheK], &lk, kp);
      f.cache_v = F32View(env, info[S::kCacheV], S::kArgNames[S::kCacheV], &lv, kp);
      f.cache_max = hd.Int(S::kCacheMax, 0, kMaxDim);
      f.cache_len = hd.Int(S::kCacheLength, 0, f.cache_max);
      if (f.cache_len + f.seq_kv > f.cache_max)
        Throw(env, "ERR_ATTN_SIZE", "cache: " + std::to_string(f.cache_len) + " + " + std::to_string(f.seq_kv) + " positions exceed maxLength " + std::to_string(f.cache_max), Kind::Range);
      CheckLen(env, "cache.k", lk, (__int128)f.batch * f.cache_max * KV);
      CheckLen(env, "cache.v", lv, (__int128)f.batch * f.cache_max * KV);
      if (f.cache_k == f.cache_v && lk > 0) Throw(env, "ERR_ATTN_SHAPE", "cache: k and v must be different arrays", Kind::Range);
      seq_k = f.cache_len + f.seq_kv;
    }
    int64_t ms[4];
    ReadMask(hd, S::kMaskKind, info[S::kMaskData], kp, f.batch, cfg.num_heads, f.seq_q, seq_k, &f.mask_kind, &f.mask, ms);
    f.m_sb = ms[0]; f.m_sh = ms[1]; f.m_sq = ms[2]; f.m_sk = ms[3];
    f.key_lengths = ReadKeyLengths(env, info[S::kKeyLengths], kp, f.batch, seq_k);
    const int threads = threads_;
    if (!async) {
      CheckStatus(env, WithPoolNow(*c, threads, [&](sa::Parallel& par) { return w->forward(f, par); }), "forward");
      return env.Undefined();
    }
    using Both = std::pair<std::shared_ptr<Core>, std::shared_ptr<sa::MultiHeadWeights>>;
    std::shared_ptr<void> keep_native(new Both(c, w));
    auto* wk = new KernelWorker(env, c.get(), keep_native, keep, [c, w, f, threads]() {
      return WithPool(*c, threads, [&](sa::Parallel& par) { return w->forward(f, par); });
    });
    return wk->Start();
  });
}

Napi::Value Isas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* isas[8];
  int n = sa::supported_isas(isas, 8);
  Napi::Array a = Napi::Array::New(env, (size_t)n);
  for (int i = 0; i < n; ++i) a.Set((uint32_t)i, Napi::String::New(env, isas[i]));
  return a;
}

Napi::Value BestIsa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), sa::best_isa()); }

Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData* data = env.GetInstanceData<AddonData>();
  std::vector<napi_value> args;
  for (size_t i = 0; i < info.Length(); ++i) args.push_back(info[i]);
  return data->engine_ctor.New(args);
}

Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
      Throw(env, "ERR_ATTN_TYPE", "fmaPeakGflops(threads: number, millis: number)", Kind::Type);
    const int th = (int)CheckedInt(env, "fmaPeakGflops: threads", info[0].As<Napi::Number>().DoubleValue(), 1, 1024);
    double ms = info[1].As<Napi::Number>().DoubleValue();
    if (!(ms > 0 && ms <= 60000)) Throw(env, "ERR_ATTN_VALUE", "fmaPeakGflops: millis (0, 60000]", Kind::Range);
    const double r = sa::fma_peak_gflops(nullptr, th, ms);
    if (r < 0) Throw(env, "ERR_ATTN_NATIVE", "fmaPeakGflops: could not start " + std::to_string(th) + " threads");
    return Napi::Number::New(env, r);
  });
}

Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
      Throw(env, "ERR_ATTN_TYPE", "readBandwidthGBs(bytes: number, threads: number)", Kind::Type);
    double bytes = info[0].As<Napi::Number>().DoubleValue();
    const int th = (int)CheckedInt(env, "readBandwidthGBs: threads", info[1].As<Napi::Number>().DoubleValue(), 1, 1024);
    if (!(bytes >= 1 && bytes <= 64.0 * (1 << 30))) Throw(env, "ERR_ATTN_VALUE", "readBandwidthGBs: bytes 1..64 GiB", Kind::Range);
    double r = sa::read_bandwidth_gbs((int64_t)bytes, th);
    if (r == sa::kThreadsRefused) Throw(env, "ERR_ATTN_NATIVE", "readBandwidthGBs: could not start " + std::to_string(th) + " threads");
    if (r < 0) Throw(env, "ERR_ATTN_ALLOC", "readBandwidthGBs: could not allocate the buffer");
    return Napi::Number::New(env, r);
  });
}

// readRegionsSeconds(arrays, threads): one timed read of the arrays' bytes (zero-copy views)
Napi::Value ReadRegions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const char* usage = "readRegionsSeconds(arrays: ArrayBufferView[], threads: number)";
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber()) Throw(env, "ERR_ATTN_TYPE", usage, Kind::Type);
    Napi::Array list = info[0].As<Napi::Array>();
    const int th = (int)CheckedInt(env, "readRegionsSeconds: threads", info[1].As<Napi::Number>().DoubleValue(), 1, 1024);
    const uint32_t n = list.Length();
    if (n < 1 || n > 64) Throw(env, "ERR_ATTN_VALUE", "readRegionsSeconds: 1..64 arrays", Kind::Range);
    // every element first (a getter could resize an array whose address was already taken)
    std::vector<Napi::Value> items;
    for (uint32_t i = 0; i < n; ++i) items.push_back(list.Get(i));
    std::vector<const char*> ptrs;
    std::vector<int64_t> sizes;
    for (const Napi::Value& v : items) {
      if (!v.IsTypedArray()) Throw(env, "ERR_ATTN_TYPE", usage, Kind::Type);
      Napi::TypedArray a = v.As<Napi::TypedArray>();
      ptrs.push_back(static_cast<const char*>(ViewData(env, a)));
      sizes.push_back((int64_t)a.ByteLength());
    }
    double r = sa::read_regions_seconds(ptrs.data(), sizes.data(), (int)ptrs.size(), th);
    if (r < 0) Throw(env, "ERR_ATTN_NATIVE", "readRegionsSeconds: could not start the reading threads");
    return Napi::Number::New(env, r);
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  AddonData* data = new AddonData();
  data->engine_ctor = Napi::Persistent(Engine::Init(env));
  data->multihead_ctor = Napi::Persistent(MultiHead::Init(env));
  {
    Napi::Object global = env.Global();
    Napi::Value proto = global.Get("ArrayBuffer").As<Napi::Object>().Get("prototype");
    Napi::Value desc = global.Get("Object").As<Napi::Object>().Get("getOwnPropertyDescriptor").As<Napi::Function>().Call({proto, Napi::String::New(env, "resizable")});
    if (desc.IsObject()) {
      Napi::Value get = desc.As<Napi::Object>().Get("get");
      if (get.IsFunction()) data->resizable_getter = Napi::Persistent(get.As<Napi::Function>());
    }
  }
  env.SetInstanceData<AddonData>(data);
  // runs before Node-API's own teardown of this environment, while references can still be freed
  env.AddCleanupHook([data]() { data->calls.Drop(); });
  exports.Set("version", Napi::String::New(env, SIMD_ATTENTION_VERSION));
  Napi::Object convention = Napi::Object::New(env);
  convention.Set("attention", SA_CONVENTION(attn_slot));
  convention.Set("forward", SA_CONVENTION(forward_slot));
  convention.Set("matmul", SA_CONVENTION(matmul_slot));
  exports.Set("convention", convention);
  exports.Set("isas", Napi::Function::New<Isas>(env, "isas"));
  exports.Set("bestIsa", Napi::Function::New<BestIsa>(env, "bestIsa"));
  exports.Set("createEngine", Napi::Function::New<CreateEngine>(env, "createEngine"));
  exports.Set("fmaPeakGflops", Napi::Function::New<FmaPeak>(env, "fmaPeakGflops"));
  exports.Set("readBandwidthGBs", Napi::Function::New<ReadBandwidth>(env, "readBandwidthGBs"));
  exports.Set("readRegionsSeconds", Napi::Function::New<ReadRegions>(env, "readRegionsSeconds"));
  return exports;
}

}  // namespace

NODE_API_MODULE(simd_attention, Init)
