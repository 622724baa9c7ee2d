// radistill: retrieval-aware distillation of Llama-family Transformers into Transformer-SSM hybrids.
#include <c10/util/Exception.h>

#include <cstdio>

#include "commands.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/torch_setup.h"

rad::cli::GlobalOptions& rad::cli::global_options() {
  static GlobalOptions options;
  return options;
}

void rad::cli::require_cpu_device(const std::string& what) {
  RAD_CHECK(rad::compute_device().is_cpu(), "--device {}: {} runs on the CPU inference engine only",
            global_options().device, what);
}

int main(int argc, char** argv) {
  CLI::App app{"radistill: retrieval-aware distillation of Llama-family Transformers into Transformer-SSM hybrids"};
  app.require_subcommand(1);
  auto& g = rad::cli::global_options();
  int& threads = g.threads;
  bool &quiet = g.quiet, &verbose = g.verbose;
  app.add_option("--threads", threads, "CPU threads for libtorch and OpenBLAS (default: all available cores)");
  app.add_option("--device", g.device,
                 "Device for pretrain, distill, heads, eval, eval-tasks, forward and generate --engine torch: cpu, "
                 "cuda or cuda:N (a CUDA build; bare cuda under a launcher is cuda:LOCAL_RANK)")
      ->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "Only print warnings and errors on stderr");
  app.add_flag("-v,--verbose", verbose, "Print debug diagnostics on stderr");
  app.parse_complete_callback([&] {
    rad::set_log_level(quiet ? rad::LogLevel::kQuiet : verbose ? rad::LogLevel::kDebug : rad::LogLevel::kInfo);
    rad::configure_torch(threads);
    rad::set_compute_device(rad::parse_device(g.device));
  });
  rad::cli::register_env(app);
  rad::cli::register_inspect(app);
  rad::cli::register_forward(app);
  rad::cli::register_generate(app);
  rad::cli::register_tokenize(app);
  rad::cli::register_train_tokenizer(app);
  rad::cli::register_eval_tasks(app);
  rad::cli::register_pretrain(app);
  rad::cli::register_heads(app);
  rad::cli::register_distill(app);
  rad::cli::register_shrink(app);
  rad::cli::register_eval(app);
  rad::cli::register_convert(app);
  rad::cli::register_bank(app);
  rad::cli::register_select(app);
  rad::cli::register_bank_curve(app);
  rad::cli::register_export_data(app);
  rad::cli::register_run(app);
  rad::cli::register_bench(app);
  rad::cli::register_chat(app);
  rad::cli::register_import_gguf(app);
  rad::cli::register_export_gguf(app);
  rad::cli::register_quantize(app);
  rad::cli::register_serve(app);
  rad::cli::register_launch(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const rad::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error (libtorch): %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
