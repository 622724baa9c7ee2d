#include "rad/model/ssm.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "rad/core/error.h"
#include "rad/runtime/kernels.h"

#if defined(__x86_64__)
#define RAD_SCAN_AVX2 __attribute__((target("avx2,fma")))
#define RAD_SCAN_HAVE_X86 1
#else
#define RAD_SCAN_HAVE_X86 0
#endif
#define RAD_SCAN_INLINE inline __attribute__((always_inline))

namespace rad {
namespace {

void check_shapes(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm, const at::Tensor& Cm) {
  RAD_CHECK(x.dim() == 4 && log_alpha.dim() == 3 && Bm.dim() == 4 && Cm.dim() == 4,
            "ssd: expected x [B,T,H,P], log_alpha [B,T,H], B/C [B,T,H,N]");
  RAD_CHECK(log_alpha.sizes() == x.sizes().slice(0, 3) && Bm.sizes().slice(0, 3) == x.sizes().slice(0, 3) &&
                Cm.sizes() == Bm.sizes(),
            "ssd: shape mismatch: x {} log_alpha {} B {} C {}", c10::str(x.sizes()), c10::str(log_alpha.sizes()),
            c10::str(Bm.sizes()), c10::str(Cm.sizes()));
}

// Segment sums of a [..., L] log-decay: out[..., t, s] = sum_{k=s+1..t} a[k] for s <= t, -inf above
// the diagonal (so exp(out) is the causal decay matrix).
at::Tensor segsum(const at::Tensor& a) {
  const int64_t L = a.size(-1);
  at::Tensor cs = a.cumsum(-1);
  at::Tensor diff = cs.unsqueeze(-1) - cs.unsqueeze(-2);  // [..., t, s] = cs[t] - cs[s]
  at::Tensor causal = at::ones({L, L}, a.options().dtype(at::kBool)).tril();
  return diff.masked_fill(causal.logical_not(), -std::numeric_limits<float>::infinity());
}

}  // namespace

at::Tensor ssd_naive(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm, const at::Tensor& Cm,
                     const at::Tensor& initial_state) {
  check_shapes(x, log_alpha, Bm, Cm);
  at::Tensor a = log_alpha.transpose(1, 2);                     // [B, H, T]
  at::Tensor L = segsum(a).exp();                               // [B, H, T, S]
  at::Tensor scores = at::einsum("bthn,bshn->bhts", {Cm, Bm});  // [B, H, T, S]
  at::Tensor y = at::einsum("bhts,bshp->bthp", {scores * L, x});
  if (initial_state.defined()) {
    at::Tensor decay = a.cumsum(-1).exp();  // [B, H, T]: prod_{k<=t} alpha_k
    y = y + at::einsum("bhpn,bthn,bht->bthp", {initial_state, Cm, decay});
  }
  return y;
}

std::pair<at::Tensor, at::Tensor> ssd_chunked(const at::Tensor& x_in, const at::Tensor& a_in, const at::Tensor& B_in,
                                              const at::Tensor& C_in, int64_t chunk, const at::Tensor& initial_state) {
  check_shapes(x_in, a_in, B_in, C_in);
  RAD_CHECK(chunk > 0, "ssd: chunk size must be positive, got {}", chunk);
  const int64_t Bsz = x_in.size(0), T = x_in.size(1), H = x_in.size(2), P = x_in.size(3), N = B_in.size(3);
  const int64_t Lc = std::min(chunk, std::max<int64_t>(T, 1));
  const int64_t nc = (T + Lc - 1) / Lc, pad = nc * Lc - T;
  at::Tensor x = x_in, a = a_in, Bm = B_in, Cm = C_in;
  if (pad > 0) {  // zero padding at the end: alpha = 1 and x = 0 leave the carried state unchanged
    x = at::constant_pad_nd(x, {0, 0, 0, 0, 0, pad});
    a = at::constant_pad_nd(a, {0, 0, 0, pad});
    Bm = at::constant_pad_nd(Bm, {0, 0, 0, 0, 0, pad});
    Cm = at::constant_pad_nd(Cm, {0, 0, 0, 0, 0, pad});
  }
  x = x.reshape({Bsz, nc, Lc, H, P});
  Bm = Bm.reshape({Bsz, nc, Lc, H, N});
  Cm = Cm.reshape({Bsz, nc, Lc, H, N});
  at::Tensor A = a.reshape({Bsz, nc, Lc, H}).permute({0, 3, 1, 2});  // [B, H, c, l]
  at::Tensor A_cs = A.cumsum(-1);                                     // [B, H, c, l]

  // 1. Within chunks: y = (L o C B^T) x.
  at::Tensor L = segsum(A).exp();                                         // [B, H, c, l, s]
  at::Tensor CB = at::einsum("bclhn,bcshn->bhcls", {Cm, Bm});             // [B, H, c, l, s]
  at::Tensor y_diag = at::einsum("bhcls,bcshp->bclhp", {CB * L, x});      // [B, c, l, H, P]

  // 2. The state each chunk contributes at its end.
  at::Tensor decay_states = (A_cs.narrow(-1, Lc - 1, 1) - A_cs).exp();                         // [B, H, c, l]
  at::Tensor states = at::einsum("bclhn,bhcl,bclhp->bchpn", {Bm, decay_states, x});           // [B, c, H, P, N]

  // 3. Carry states across chunk boundaries: S_c = exp(sum A over chunk c) * S_{c-1} + states_c.
  at::Tensor init = initial_state.defined() ? initial_state.to(x.scalar_type()).unsqueeze(1)
                                            : at::zeros({Bsz, 1, H, P, N}, x.options());
  states = at::cat({init, states}, 1);                                                        // [B, c+1, H, P, N]
  at::Tensor chunk_decay = at::constant_pad_nd(A_cs.select(-1, Lc - 1), {1, 0});             // [B, H, c+1]
  at::Tensor decay_chunk = segsum(chunk_decay).exp();                                         // [B, H, c+1, c+1]
  at::Tensor new_states = at::einsum("bhzc,bchpn->bzhpn", {decay_chunk, states});            // [B, c+1, H, P, N]
  at::Tensor entering = new_states.narrow(1, 0, nc);                                          // state before chunk c
  at::Tensor final_state = new_states.select(1, nc);                                          // [B, H, P, N]

  // 4. Contribution of the entering state to each position of its chunk.
  at::Tensor y_off = at::einsum("bclhn,bchpn,bhcl->bclhp", {Cm, entering, A_cs.exp()});     // [B, c, l, H, P]

  at::Tensor y = (y_diag + y_off).reshape({Bsz, nc * Lc, H, P});
  if (pad > 0) y = y.narrow(1, 0, T);
  return {y, final_state};
}

// ---- fused recurrent scan (ssd_scan) ----
//
// Hand-written because libtorch has no fused scan: as ops, the recurrence is T tiny steps and the
// chunked form spends most of its time in chunk x chunk decay and score tensors and in
// one-matmul-per-slice batched products. Each (batch, head) pair is independent, so the kernel
// runs them in parallel, each in the same order on any thread count (deterministic). The state is
// held as [N][P] so that every update runs along P in contiguous memory.
namespace {

struct ScanArgs {
  int64_t Bsz, T, H, P, N, K, nseg;
  const float *x, *la, *B, *C;  // [B,T,H,P], [B,T,H], [B,T,H,N] x2
  const float* init;            // [B,H,P,N]
  float *y, *final_state;       // [B,T,H,P], [B,H,P,N]
  float* ckpt;                  // [B*H, nseg, N, P]: the state before token seg*K
  // backward
  const float *gy, *gfinal;     // may be null (no gradient reaching y / the final state)
  float *gx, *gla, *gB, *gC, *ginit;
};

// Dot product with 8 independent partial sums, vectorised by the compiler in either ISA. Not
// runtime::dot: that is an out-of-line call with its own ISA dispatch, inside the scan's inner loop.
RAD_SCAN_INLINE float dot8(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// dst [cols][rows] = src [rows][cols] transposed: the state between the API's [P][N] and the
// scan's [N][P].
RAD_SCAN_INLINE void transpose(const float* src, float* dst, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// S <- a S + x B^T (S as [N][P]); optionally y = S C.
RAD_SCAN_INLINE void scan_step(float* S, float a, const float* x, const float* Bv, const float* Cv, float* y,
                               int64_t P, int64_t N) {
  if (y != nullptr)
    for (int64_t p = 0; p < P; ++p) y[p] = 0;
  for (int64_t n = 0; n < N; ++n) {
    float* s = S + n * P;
    const float bn = Bv[n];
    for (int64_t p = 0; p < P; ++p) s[p] = a * s[p] + x[p] * bn;
    if (y != nullptr) {
      const float cn = Cv[n];
      for (int64_t p = 0; p < P; ++p) y[p] += s[p] * cn;
    }
  }
}

RAD_SCAN_INLINE void scan_forward_body(const ScanArgs& g, int64_t bh) {
  const int64_t b = bh / g.H, h = bh % g.H, P = g.P, N = g.N, NP = N * P;
  std::vector<float> S(NP);
  transpose(g.init + bh * NP, S.data(), P, N);
  for (int64_t t = 0; t < g.T; ++t) {
    if (t % g.K == 0) std::memcpy(g.ckpt + (bh * g.nseg + t / g.K) * NP, S.data(), NP * sizeof(float));
    const int64_t row = (b * g.T + t) * g.H + h;
    scan_step(S.data(), std::exp(g.la[row]), g.x + row * P, g.B + row * N, g.C + row * N, g.y + row * P, P, N);
  }
  transpose(S.data(), g.final_state + bh * NP, N, P);
}

// Backward of the recurrence, walking time in reverse with G = dL/dS_t:
//   G += dy_t C_t^T;  dC_t = S_t^T dy_t;  dx_t = G B_t;  dB_t = G^T x_t;
//   dlog_alpha_t = alpha_t <G, S_{t-1}>;  G <- alpha_t G  (now dL/dS_{t-1}).
// The states of a segment are recomputed from its checkpoint.
RAD_SCAN_INLINE void scan_backward_body(const ScanArgs& g, int64_t bh) {
  const int64_t b = bh / g.H, h = bh % g.H, P = g.P, N = g.N, NP = N * P, K = g.K;
  std::vector<float> G(NP, 0.0f), states(K * NP), dx(P);
  if (g.gfinal != nullptr) transpose(g.gfinal + bh * NP, G.data(), P, N);
  for (int64_t seg = g.nseg - 1; seg >= 0; --seg) {
    const int64_t t0 = seg * K, t1 = std::min(g.T, t0 + K);
    const float* start = g.ckpt + (bh * g.nseg + seg) * NP;
    for (int64_t t = t0; t < t1; ++t) {
      float* S = states.data() + (t - t0) * NP;
      std::memcpy(S, t == t0 ? start : S - NP, NP * sizeof(float));
      const int64_t row = (b * g.T + t) * g.H + h;
      scan_step(S, std::exp(g.la[row]), g.x + row * P, g.B + row * N, nullptr, nullptr, P, N);
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t row = (b * g.T + t) * g.H + h;
      const float* S = states.data() + (t - t0) * NP;
      const float* S_prev = t == t0 ? start : S - NP;
      const float *x = g.x + row * P, *Bv = g.B + row * N, *Cv = g.C + row * N;
      float *gC = g.gC + row * N, *gB = g.gB + row * N;
      if (g.gy != nullptr) {
        const float* dy = g.gy + row * P;
        for (int64_t n = 0; n < N; ++n) {
          float* Gn = G.data() + n * P;
          const float cn = Cv[n];
          for (int64_t p = 0; p < P; ++p) Gn[p] += dy[p] * cn;
          gC[n] = dot8(S + n * P, dy, P);
        }
      } else {
        for (int64_t n = 0; n < N; ++n) gC[n] = 0;
      }
      for (int64_t p = 0; p < P; ++p) dx[p] = 0;
      for (int64_t n = 0; n < N; ++n) {
        const float* Gn = G.data() + n * P;
        const float bn = Bv[n];
        for (int64_t p = 0; p < P; ++p) dx[p] += Gn[p] * bn;
        gB[n] = dot8(Gn, x, P);
      }
      std::memcpy(g.gx + row * P, dx.data(), P * sizeof(float));
      const float a = std::exp(g.la[row]);
      g.gla[row] = a * dot8(G.data(), S_prev, NP);
      for (int64_t i = 0; i < NP; ++i) G[i] *= a;
    }
  }
  transpose(G.data(), g.ginit + bh * NP, N, P);
}

void scan_forward_portable(const ScanArgs& g, int64_t bh) { scan_forward_body(g, bh); }
void scan_backward_portable(const ScanArgs& g, int64_t bh) { scan_backward_body(g, bh); }
#if RAD_SCAN_HAVE_X86
RAD_SCAN_AVX2 void scan_forward_avx2(const ScanArgs& g, int64_t bh) { scan_forward_body(g, bh); }
RAD_SCAN_AVX2 void scan_backward_avx2(const ScanArgs& g, int64_t bh) { scan_backward_body(g, bh); }
#else
void scan_forward_avx2(const ScanArgs& g, int64_t bh) { scan_forward_body(g, bh); }  // never chosen (use_avx2)
void scan_backward_avx2(const ScanArgs& g, int64_t bh) { scan_backward_body(g, bh); }
#endif

bool use_avx2() {
#if RAD_SCAN_HAVE_X86
  return runtime::active_isa() == runtime::Isa::kAvx2;
#else
  return false;
#endif
}

void for_each_head(const ScanArgs& g, void (*portable)(const ScanArgs&, int64_t), void (*avx2)(const ScanArgs&, int64_t)) {
  auto fn = use_avx2() ? avx2 : portable;
  at::parallel_for(0, g.Bsz * g.H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) fn(g, bh);
  });
}

struct SsdScanFunction : public torch::autograd::Function<SsdScanFunction> {
  // Sizes and input pointers of contiguous x [B, T, H, P], log alpha [B, T, H], B / C [B, T, H, N].
  static ScanArgs inputs(const at::Tensor& x, const at::Tensor& la, const at::Tensor& Bm, const at::Tensor& Cm,
                         int64_t K) {
    ScanArgs g{};
    g.Bsz = x.size(0), g.T = x.size(1), g.H = x.size(2), g.P = x.size(3), g.N = Bm.size(3), g.K = K;
    g.nseg = std::max<int64_t>(1, (g.T + K - 1) / K);
    g.x = x.data_ptr<float>(), g.la = la.data_ptr<float>(), g.B = Bm.data_ptr<float>(), g.C = Cm.data_ptr<float>();
    return g;
  }

  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in,
                                                const at::Tensor& la_in, const at::Tensor& B_in,
                                                const at::Tensor& C_in, const at::Tensor& init_in, int64_t K) {
    at::Tensor x = x_in.contiguous(), la = la_in.contiguous(), Bm = B_in.contiguous(), Cm = C_in.contiguous();
    at::Tensor init = init_in.contiguous();
    ScanArgs g = inputs(x, la, Bm, Cm, K);
    at::Tensor y = at::empty_like(x), final_state = at::empty_like(init);
    at::Tensor ckpt = at::empty({g.Bsz * g.H, g.nseg, g.N, g.P}, x.options());
    g.init = init.data_ptr<float>(), g.y = y.data_ptr<float>(), g.final_state = final_state.data_ptr<float>();
    g.ckpt = ckpt.data_ptr<float>();
    for_each_head(g, scan_forward_portable, scan_forward_avx2);
    ctx->save_for_backward({x, la, Bm, Cm, ckpt});
    ctx->saved_data["K"] = K;
    return {y, final_state};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0], la = saved[1], Bm = saved[2], Cm = saved[3], ckpt = saved[4];
    at::Tensor gy = grad_out[0].defined() ? grad_out[0].contiguous() : at::Tensor();
    at::Tensor gfinal = grad_out[1].defined() ? grad_out[1].contiguous() : at::Tensor();
    ScanArgs g = inputs(x, la, Bm, Cm, ctx->saved_data["K"].toInt());
    at::Tensor gx = at::empty_like(x), gla = at::empty_like(la), gB = at::empty_like(Bm), gC = at::empty_like(Cm);
    at::Tensor ginit = at::empty({g.Bsz, g.H, g.P, g.N}, x.options());
    g.ckpt = ckpt.data_ptr<float>();
    g.gy = gy.defined() ? gy.data_ptr<float>() : nullptr;
    g.gfinal = gfinal.defined() ? gfinal.data_ptr<float>() : nullptr;
    g.gx = gx.data_ptr<float>(), g.gla = gla.data_ptr<float>(), g.gB = gB.data_ptr<float>(), g.gC = gC.data_ptr<float>();
    g.ginit = ginit.data_ptr<float>();
    for_each_head(g, scan_backward_portable, scan_backward_avx2);
    return {gx, gla, gB, gC, ginit, at::Tensor()};
  }
};

}  // namespace

std::pair<at::Tensor, at::Tensor> ssd_scan(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm,
                                           const at::Tensor& Cm, const at::Tensor& initial_state,
                                           int64_t checkpoint_every) {
  check_shapes(x, log_alpha, Bm, Cm);
  RAD_CHECK(checkpoint_every > 0, "ssd_scan: checkpoint interval must be positive, got {}", checkpoint_every);
  for (const at::Tensor* t : {&x, &log_alpha, &Bm, &Cm})
    RAD_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat, "ssd_scan: needs float32 CPU tensors, got {} on {}",
              c10::toString(t->scalar_type()), t->device().str());
  const int64_t Bsz = x.size(0), H = x.size(2), P = x.size(3), N = Bm.size(3);
  at::Tensor init = initial_state.defined() ? initial_state.to(at::kFloat) : at::zeros({Bsz, H, P, N}, x.options());
  RAD_CHECK(init.sizes() == at::IntArrayRef({Bsz, H, P, N}), "ssd_scan: initial state {} does not match [B,H,P,N] = [{},{},{},{}]",
            c10::str(init.sizes()), Bsz, H, P, N);
  auto out = SsdScanFunction::apply(x, log_alpha, Bm, Cm, init, checkpoint_every);
  return {out[0], out[1]};
}

std::pair<at::Tensor, at::Tensor> ssd_sequence(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm,
                                               const at::Tensor& Cm, int64_t chunk, const at::Tensor& initial_state) {
  const bool cpu_f32 = x.device().is_cpu() && x.scalar_type() == at::kFloat && log_alpha.scalar_type() == at::kFloat &&
                       Bm.scalar_type() == at::kFloat && Cm.scalar_type() == at::kFloat;
  if (cpu_f32) return ssd_scan(x, log_alpha, Bm, Cm, initial_state, std::max<int64_t>(chunk, 1));
  return ssd_chunked(x, log_alpha, Bm, Cm, chunk, initial_state);
}

at::Tensor ssd_step(at::Tensor& state, const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm,
                    const at::Tensor& Cm) {
  // x [B, H, P], log_alpha [B, H], Bm / Cm [B, H, N]
  at::Tensor outer = x.unsqueeze(-1) * Bm.unsqueeze(-2);  // [B, H, P, N]
  at::Tensor alpha = log_alpha.exp().unsqueeze(-1).unsqueeze(-1);
  state = state.defined() ? alpha * state + outer : outer;
  return at::matmul(state, Cm.unsqueeze(-1)).squeeze(-1);  // [B, H, P]
}

std::pair<at::Tensor, at::Tensor> ssd_recurrent(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm,
                                                const at::Tensor& Cm, const at::Tensor& initial_state) {
  check_shapes(x, log_alpha, Bm, Cm);
  at::Tensor state = initial_state.defined() ? initial_state : at::zeros({x.size(0), x.size(2), x.size(3), Bm.size(3)}, x.options());
  std::vector<at::Tensor> ys;
  for (int64_t t = 0; t < x.size(1); ++t)
    ys.push_back(ssd_step(state, x.select(1, t), log_alpha.select(1, t), Bm.select(1, t), Cm.select(1, t)));
  return {at::stack(ys, 1), state};
}

}  // namespace rad
