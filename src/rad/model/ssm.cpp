#include "rad/model/ssm.h"

#include <limits>

#include "rad/core/error.h"

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
