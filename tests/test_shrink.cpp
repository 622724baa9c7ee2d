// d_state shrinking of a converted hybrid.
#include <ATen/ATen.h>

#include "rad/distill/init_from_attention.h"
#include "rad/distill/shrink.h"
#include "rad/io/checkpoint.h"
#include "test_util.h"

namespace rad::test {
namespace {

io::HybridModel converted(bool conv, bool bias) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));  // d_head 8
  io::HybridModel h;
  h.config.base = teacher->config();
  h.config.plan.kept_heads = {{1, 2}};
  h.config.ssm.d_state = 8;
  h.config.ssm.conv = conv;
  h.config.ssm.bias = bias;
  h.config.ssm.chunk_size = 4;
  h.model = convert_from_teacher(teacher, h.config, SsmInit::kAttention);
  if (bias) {  // give the biases something to carry
    at::NoGradGuard no_grad;
    for (auto& item : h.model->named_parameters())
      if (item.key().find("ssm.B_proj.bias") != std::string::npos || item.key().find("ssm.C_proj.bias") != std::string::npos)
        item.value().normal_(0, 0.3);
  }
  return h;
}

at::Tensor logits(CausalLM& m) {
  at::NoGradGuard no_grad;
  return m->forward((at::arange(14, at::kLong) * 5 + 2).remainder(64).unsqueeze(0));
}

TEST(Shrink, SvdToTheSameStateSizeReproducesTheModel) {
  for (bool bias : {false, true}) {
    io::HybridModel h = converted(false, bias);
    io::HybridModel same = shrink_state(h, 8, "svd");
    EXPECT_LT((logits(h.model) - logits(same.model)).abs().max().item<double>(), 1e-4) << bias;
  }
}

TEST(Shrink, SvdKeepsMoreOfTheFunctionThanTruncation) {
  io::HybridModel h = converted(false, false);
  at::Tensor ref = logits(h.model);
  io::HybridModel svd = shrink_state(h, 2, "svd");
  io::HybridModel cut = shrink_state(h, 2, "truncate");
  EXPECT_EQ(svd.config.ssm.d_state, 2);
  EXPECT_EQ(svd.config.ssm_state_bytes() * 4, h.config.ssm_state_bytes());
  double e_svd = (logits(svd.model) - ref).pow(2).mean().item<double>();
  double e_cut = (logits(cut.model) - ref).pow(2).mean().item<double>();
  EXPECT_GT(e_cut, 0.0);
  EXPECT_LT(e_svd, e_cut);
}

TEST(Shrink, ConvModelsAreTruncatedConsistently) {
  io::HybridModel h = converted(true, false);
  io::HybridModel small = shrink_state(h, 4, "svd");  // conv forces truncation
  io::HybridModel cut = shrink_state(h, 4, "truncate");
  EXPECT_TRUE(at::equal(logits(small.model), logits(cut.model)));
  EXPECT_RAD_ERROR(shrink_state(h, 16, "svd"), "--d-state must be in [1, 8]");
  EXPECT_RAD_ERROR(shrink_state(h, 4, "pca"), "--rule must be svd or truncate");
}

}  // namespace
}  // namespace rad::test
