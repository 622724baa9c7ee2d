#include "rad/distill/head_bank.h"

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/distill/init_from_attention.h"
#include "rad/model/hybrid_mixer.h"

namespace rad {

TeacherHeadOutputs capture_teacher_heads(CausalLM& teacher, const at::Tensor& input_ids) {
  at::NoGradGuard no_grad;
  const ModelConfig& c = teacher->config();
  TeacherHeadOutputs out;
  out.heads.resize(c.n_layer);
  ForwardHooks hooks;
  hooks.residual_in = &out.residual_in;
  hooks.head_output = [&out](int64_t layer, const at::Tensor& z) {
    out.heads[layer] = z.to(at::kFloat);
    return z;
  };
  teacher->run_layers(teacher->embed(input_ids), 0, c.n_layer, nullptr, &hooks);
  return out;
}

at::Tensor head_alignment_loss(CausalLM& student, const TeacherHeadOutputs& teacher, int64_t global_tokens,
                               HeadErrorSums* sums) {
  const ModelConfig& c = student->config();
  at::Tensor total;
  if (sums != nullptr) {
    auto opts = at::TensorOptions().dtype(at::kFloat);
    sums->error = at::zeros({c.n_layer, c.n_head}, opts);
    sums->target = at::zeros({c.n_layer, c.n_head}, opts);
    sums->tokens = 0;
  }
  for (int64_t l = 0; l < c.n_layer; ++l) {
    DecoderLayer& layer = student->model->layer_list[l];
    auto* mixer = dynamic_cast<HybridMixer*>(layer->self_attn.get());
    RAD_CHECK(mixer != nullptr, "head alignment: layer {} of the student is not a hybrid layer", l);
    if (mixer->ssm_heads.empty()) continue;
    const at::Tensor& h = teacher.residual_in.at(l);
    const int64_t B = h.size(0), T = h.size(1);
    at::Tensor idx = at::tensor(mixer->ssm_heads, at::kLong).to(h.device());
    at::Tensor u = layer->input_layernorm->forward(h);
    at::Tensor y = mixer->ssm->forward(u, nullptr).to(at::kFloat);  // [B, T, Hs, P]
    at::Tensor z = teacher.heads.at(l).index_select(2, idx);       // [B, T, Hs, P]
    // o_proj's columns of each SSM head: [d_model, Hs, P] (frozen during alignment).
    at::Tensor w = mixer->o_proj->weight.to(at::kFloat).view({c.d_model, c.n_head, c.d_head}).index_select(1, idx);
    at::Tensor err = at::einsum("bthp,dhp->bthd", {y - z, w}).norm(2, -1);  // [B, T, Hs]
    at::Tensor per_head = err.sum(at::IntArrayRef{0, 1});                   // [Hs]
    at::Tensor term = per_head.sum() / static_cast<double>(global_tokens > 0 ? global_tokens : B * T);
    total = total.defined() ? total + term : term;
    if (sums != nullptr) {
      at::NoGradGuard no_grad;
      at::Tensor target = at::einsum("bthp,dhp->bthd", {z, w}).norm(2, -1).sum(at::IntArrayRef{0, 1});
      sums->error[l].index_copy_(0, idx.cpu(), per_head.detach().cpu());
      sums->target[l].index_copy_(0, idx.cpu(), target.cpu());
      sums->tokens = B * T;
    }
  }
  RAD_CHECK(total.defined(), "head alignment: the student has no SSM head to align");
  return total;
}

at::Tensor head_residuals(CausalLM& teacher, CausalLM& student, const std::vector<at::Tensor>& windows,
                          int64_t batch) {
  RAD_CHECK(!windows.empty() && batch >= 1, "head residuals: need held-out windows and a batch size >= 1");
  at::NoGradGuard no_grad;
  const ModelConfig& c = student->config();
  at::Tensor error = at::zeros({c.n_layer, c.n_head}, at::kDouble), target = at::zeros({c.n_layer, c.n_head}, at::kDouble);
  const at::Device device = student->parameters().front().device();
  for (size_t i = 0; i < windows.size(); i += batch) {
    std::vector<at::Tensor> rows(windows.begin() + i, windows.begin() + std::min(windows.size(), i + batch));
    at::Tensor ids = at::stack(rows).to(device);
    HeadErrorSums sums;
    head_alignment_loss(student, capture_teacher_heads(teacher, ids), 0, &sums);
    error += sums.error.to(at::kDouble);
    target += sums.target.to(at::kDouble);
  }
  return error / target.clamp_min(1e-30);
}

void check_bank_matches(const HybridConfig& bank, const ModelConfig& teacher, const std::string& where) {
  const ModelConfig& b = bank.base;
  RAD_CHECK(b.n_layer == teacher.n_layer && b.n_head == teacher.n_head && b.n_head_kv == teacher.n_head_kv &&
                b.d_head == teacher.d_head && b.d_model == teacher.d_model && b.n_vocab == teacher.n_vocab,
            "{}: the bank's model ({} layers x {} heads, d_model {}) is not this teacher's ({} layers x {} heads, "
            "d_model {})",
            where, b.n_layer, b.n_head, b.d_model, teacher.n_layer, teacher.n_head, teacher.d_model);
  RAD_CHECK(bank.plan.size() == 0, "{}: not a head bank (it keeps {} attention heads; a bank keeps none)", where,
            bank.plan.size());
}

void check_bank_teacher(const std::string& bank_dir, const std::string& teacher_hash) {
  const std::string path = (std::filesystem::path(bank_dir) / "bank.json").string();
  if (!std::filesystem::exists(path)) return;
  nlohmann::json j = nlohmann::json::parse(read_text_file(path), nullptr, false);
  RAD_CHECK(!j.is_discarded() && j.is_object(), "{}: not valid JSON", path);
  const std::string theirs = j.value("teacher_model_hash", std::string());
  RAD_CHECK(theirs.empty() || theirs == teacher_hash,
            "{}: the bank was built from a teacher with weights hash {}, not this teacher ({})", path, theirs,
            teacher_hash);
}

namespace {

// dst rows [di * n, di * n + n) <- src rows [si * n, si * n + n) (a weight [out, in] or a bias [out]).
void copy_block(const at::Tensor& dst, int64_t di, const at::Tensor& src, int64_t si, int64_t n) {
  dst.narrow(0, di * n, n).copy_(src.narrow(0, si * n, n));
}

}  // namespace

void assemble_from_bank(CausalLM& hybrid, CausalLM& bank) {
  const ModelConfig& c = hybrid->config();
  RAD_CHECK(bank->config().n_layer == c.n_layer && bank->config().n_head == c.n_head,
            "assemble from bank: the bank and the hybrid have different shapes");
  at::NoGradGuard no_grad;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    auto* target = dynamic_cast<HybridMixer*>(hybrid->model->layer_list[l]->self_attn.get());
    auto* source = dynamic_cast<HybridMixer*>(bank->model->layer_list[l]->self_attn.get());
    RAD_CHECK(target != nullptr && source != nullptr, "assemble from bank: layer {} is not a hybrid layer", l);
    if (target->ssm_heads.empty()) continue;
    auto& t = *target->ssm;
    auto& s = *source->ssm;
    const SsmOptions &to = t.options, &so = s.options;
    RAD_CHECK(to.d_state == so.d_state && to.conv == so.conv && (!to.conv || to.conv_width == so.conv_width) &&
                  to.gate == so.gate && to.bias == so.bias && to.input_step == so.input_step,
              "assemble from bank: the hybrid's SSM options (d_state {}, conv {}, gate {}, bias {}, input_step {}) are "
              "not the bank's (d_state {}, conv {}, gate {}, bias {}, input_step {})",
              to.d_state, to.conv, to.gate, to.bias, to.input_step, so.d_state, so.conv, so.gate, so.bias,
              so.input_step);
    std::map<int64_t, int64_t> bank_index;  // head -> index among the bank layer's SSM heads
    for (size_t j = 0; j < source->ssm_heads.size(); ++j) bank_index[source->ssm_heads[j]] = static_cast<int64_t>(j);
    const int64_t P = t.d_head, N = t.d_state, Ht = t.n_heads, Hb = s.n_heads;
    for (int64_t i = 0; i < Ht; ++i) {
      const int64_t head = target->ssm_heads[i];
      auto found = bank_index.find(head);
      RAD_CHECK(found != bank_index.end(), "assemble from bank: the bank has no replacement for layer {} head {}", l,
                head);
      const int64_t j = found->second;
      copy_block(t.x_proj->weight, i, s.x_proj->weight, j, P);
      copy_block(t.B_proj->weight, i, s.B_proj->weight, j, N);
      copy_block(t.C_proj->weight, i, s.C_proj->weight, j, N);
      if (to.bias) {
        copy_block(t.x_proj->bias, i, s.x_proj->bias, j, P);
        copy_block(t.B_proj->bias, i, s.B_proj->bias, j, N);
        copy_block(t.C_proj->bias, i, s.C_proj->bias, j, N);
      }
      copy_block(t.a_proj->weight, i, s.a_proj->weight, j, 1);
      copy_block(t.a_proj->bias, i, s.a_proj->bias, j, 1);
      copy_block(t.D, i, s.D, j, 1);
      if (to.conv) {
        // Channels [x (H*P) | B (H*N) | C (H*N)]: each head's block at its own offset in each part.
        copy_block(t.conv_weight, i, s.conv_weight, j, P);
        copy_block(t.conv_weight.narrow(0, Ht * P, Ht * N), i, s.conv_weight.narrow(0, Hb * P, Hb * N), j, N);
        copy_block(t.conv_weight.narrow(0, Ht * (P + N), Ht * N), i, s.conv_weight.narrow(0, Hb * (P + N), Hb * N), j,
                   N);
      }
      if (to.gate) {
        copy_block(t.z_proj->weight, i, s.z_proj->weight, j, P);
        copy_block(t.z_proj->bias, i, s.z_proj->bias, j, P);
      }
    }
  }
}

CausalLM assemble_plan(CausalLM& teacher, CausalLM& bank, const HybridConfig& bank_config, const HeadPlan& plan) {
  HybridConfig hc;
  hc.base = teacher->config();
  hc.plan = plan;
  hc.ssm = bank_config.ssm;
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kAttention);
  assemble_from_bank(hybrid, bank);
  return hybrid;
}

}  // namespace rad
