#include <cstdio>

#include <fmt/format.h>

#include "commands.h"
#include "trnsim/core/error.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/report/kernel_report.h"
#include "trnsim/report/training_report.h"
#include "trnsim/runtime/training_runner.h"

namespace trnsim::cli {

namespace {

// The default: Llama 3 8B on trn2.48xlarge as AWS's published Neuron config trains it (trainium.md section 3:
// hf_llama3_8B_trn2_config.yaml, TP 16, SP, ZeRO-1, GBS 1024, MBS 1, seq 8192, flash attention).
struct RunArgs {
    RunArgs() {
        auto& t = options.training;
        t.seq = 8192;
        t.mbs = 1;
        t.gbs = 1024;
        t.tp = 16;
        t.pp = 1;
        t.dp = 4;
        t.sp = true;
        t.zero = 1;
    }
    std::string cluster = "trn2.48xlarge";
    std::vector<std::string> files;
    std::vector<std::string> overrides;
    int nodes = 0;
    bool nodes_given = false;
    runtime::TrainingOptions options;
    std::string dtype = "bf16";
    std::string recompute = "none";
    // The published configuration fuses attention (model.fusions.flash_attention: True); TrainingSpec's own
    // default stays unfused.
    std::string attention = "flash";
    std::string schedule = "1f1b";
    std::string json;
    std::string trace;
};

int execute(RunArgs& a) {
    auto& tr = a.options.training;
    if (a.dtype == "bf16")
        tr.dtype = DType::bf16;
    else if (a.dtype == "fp8")
        tr.dtype = DType::fp8_e4m3;
    else
        throw UserError(fmt::format("--dtype {}: allowed bf16, fp8", a.dtype));
    if (!workload::parse_recompute(a.recompute, tr.recompute))
        throw UserError(fmt::format("--recompute {}: allowed none, selective, full", a.recompute));
    if (!workload::parse_attention(a.attention, tr.attention))
        throw UserError(fmt::format("--attention {}: allowed flash, unfused", a.attention));
    if (!workload::parse_schedule(a.schedule, tr.schedule))
        throw UserError(fmt::format("--schedule {}: allowed 1f1b, gpipe, interleaved", a.schedule));
    std::vector<std::string> overrides = a.overrides;
    if (a.nodes_given) {
        if (a.nodes < 1) throw UserError(fmt::format("--nodes {}: allowed at least 1", a.nodes));
        overrides.push_back(fmt::format("cluster.nodes={}", a.nodes));
    }
    const Config config = hw::resolve_cluster_config(a.cluster, a.files, overrides);
    if (!a.json.empty()) report::check_writable(a.json, "--json");
    if (!a.trace.empty()) report::check_writable(a.trace, "--trace");
    report::check_distinct({{"--json", a.json}, {"--trace", a.trace}});
    a.options.trace = !a.trace.empty();
    const runtime::TrainingResult result = runtime::run_training(a.options, config);
    std::fputs(report::to_table(result).c_str(), stdout);
    if (!a.json.empty()) report::write_file_atomic(a.json, report::to_json(result).dump(2) + "\n");
    if (!a.trace.empty()) report::write_chrome_trace(result, a.trace);
    return 0;
}

}  // namespace

int run_default() {
    RunArgs a;
    return execute(a);
}

std::function<int()> add_run_command(CLI::App& app) {
    auto a = std::make_shared<RunArgs>();
    auto& t = a->options.training;
    auto* sub = app.add_subcommand("run", "simulate one training step of a model on a cluster");
    sub->add_option("--cluster", a->cluster, "cluster preset (trnsim presets) or a YAML file")->capture_default_str();
    sub->add_option("--config", a->files, "YAML file overlaid on the preset (repeatable)")->allow_extra_args(false);
    sub->add_option("--set", a->overrides, "override one key: dotted.key=value (repeatable)")->allow_extra_args(false);
    auto* nodes = sub->add_option("--nodes", a->nodes, "nodes joined by EFA (sets cluster.nodes)");
    sub->add_option("--model", a->options.model, "model preset (trnsim presets) or a YAML file")->capture_default_str();
    sub->add_option("--tp", t.tp, "tensor-parallel degree")->capture_default_str();
    sub->add_option("--pp", t.pp, "pipeline-parallel degree")->capture_default_str();
    sub->add_option("--dp", t.dp, "data-parallel degree")->capture_default_str();
    sub->add_option("--sp", t.sp, "sequence parallelism (true|false)")->capture_default_str();
    sub->add_option("--zero", t.zero, "ZeRO stage: 0 or 1")->capture_default_str();
    sub->add_option("--mbs", t.mbs, "micro-batch size (sequences)")->capture_default_str();
    sub->add_option("--gbs", t.gbs, "global batch size (sequences)")->capture_default_str();
    sub->add_option("--seq", t.seq, "sequence length (tokens)")->capture_default_str();
    sub->add_option("--dtype", a->dtype, "bf16|fp8")->capture_default_str();
    sub->add_option("--recompute", a->recompute, "none|selective|full")->capture_default_str();
    sub->add_option("--attention", a->attention, "flash|unfused: fused flash-attention kernels or separate ones")
        ->capture_default_str();
    sub->add_option("--schedule", a->schedule, "1f1b|gpipe|interleaved")->capture_default_str();
    sub->add_option("--virtual-stages", t.virtual_stages, "model chunks per pipeline stage (interleaved)")
        ->capture_default_str();
    sub->add_option("--placement", a->options.placement, "rank order, innermost first, e.g. tp,pp,dp")
        ->capture_default_str();
    sub->add_option("--cache", a->options.cache_dir,
                    "directory for kernel timings, and each setup's collective memo records, shared across runs");
    sub->add_flag("--allow-oom", a->options.allow_oom, "simulate even when the memory does not fit, and flag it");
    sub->add_option("--json", a->json, "write the result as JSON (schema trnsim.run/1)");
    sub->add_option("--trace", a->trace,
                    "write the simulated timeline (the most micro-batches simulated) as a Perfetto/Chrome trace");
    return [a, sub, nodes] {
        if (!sub->parsed()) return 2;
        a->nodes_given = nodes->count() > 0;
        return execute(*a);
    };
}

}  // namespace trnsim::cli
