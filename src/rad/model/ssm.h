// Discrete Mamba-2 (SSD) heads, batched over all SSM heads of a layer (docs/DESIGN.md section 4).
//
// Per head h (head dim P, state dim N), for t = 1..T:
//   H_t = alpha_t * H_{t-1} + x_t B_t^T          (P x N state)
//   y_t = H_t C_t                                  (the D skip and the gate live in the mixer)
// with alpha_t = exp(log_alpha_t), log_alpha_t <= 0.
//
// Three forms of the same map, all in float32:
//   ssd_naive   : the quadratic reference y = (L o C B^T) x, L[t,s] = prod_{k=s+1..t} alpha_k.
//   ssd_chunked : the chunked SSD form (training; differentiable by libtorch autograd). Inside a
//                 chunk the quadratic form, across chunks a carried state (as mamba's ssd_minimal).
//   ssd_step    : one step of the recurrence (decoding).
//   ssd_scan    : the recurrence over a whole sequence as one fused CPU kernel with a hand-written
//                 backward (an autograd Function): O(T P N) work and no T x T or chunk x chunk
//                 intermediates, where the chunked form's small batched matmuls are slow on a CPU.
//   ssd_sequence: the form used for sequences (training, prefill): ssd_scan for float32 CPU
//                 tensors, ssd_chunked elsewhere.
// Shapes: x [B, T, H, P], log_alpha [B, T, H], Bm / Cm [B, T, H, N], state [B, H, P, N].
#pragma once

#include <ATen/ATen.h>

#include <utility>

namespace rad {

// Quadratic reference. O(T^2); for tests and benchmarks only. Returns y [B, T, H, P].
at::Tensor ssd_naive(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm, const at::Tensor& Cm,
                     const at::Tensor& initial_state = {});

// Chunked SSD. T need not be a multiple of `chunk` (the tail is zero-padded: alpha = 1, x = 0,
// which leaves the final state unchanged). `initial_state` [B, H, P, N] may be undefined (zeros).
// Returns {y [B, T, H, P], final_state [B, H, P, N]}.
std::pair<at::Tensor, at::Tensor> ssd_chunked(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm,
                                              const at::Tensor& Cm, int64_t chunk,
                                              const at::Tensor& initial_state = {});

// Fused recurrent scan for float32 CPU tensors, differentiable in every input. The forward keeps
// the state at every `checkpoint_every`-th token; the backward recomputes the states in between.
// Returns {y [B, T, H, P], final_state [B, H, P, N]}.
std::pair<at::Tensor, at::Tensor> ssd_scan(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm,
                                           const at::Tensor& Cm, const at::Tensor& initial_state = {},
                                           int64_t checkpoint_every = 64);

// ssd_scan where it applies (CPU, float32), ssd_chunked with `chunk` otherwise.
std::pair<at::Tensor, at::Tensor> ssd_sequence(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm,
                                               const at::Tensor& Cm, int64_t chunk,
                                               const at::Tensor& initial_state = {});

// One recurrence step for a single token: x [B, H, P], log_alpha [B, H], Bm / Cm [B, H, N].
// Updates `state` [B, H, P, N] in place (when it is undefined, starts from zeros) and returns
// y [B, H, P].
at::Tensor ssd_step(at::Tensor& state, const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm,
                    const at::Tensor& Cm);

// Runs ssd_step over all T tokens (the decode path applied to a whole sequence). Returns
// {y [B, T, H, P], final_state}.
std::pair<at::Tensor, at::Tensor> ssd_recurrent(const at::Tensor& x, const at::Tensor& log_alpha, const at::Tensor& Bm,
                                                const at::Tensor& Cm, const at::Tensor& initial_state = {});

}  // namespace rad
