#include <cstdio>

#include <fmt/format.h>

#include "commands.h"
#include "trnsim/core/error.h"
#include "trnsim/hw/chip.h"
#include "trnsim/report/kernel_report.h"
#include "trnsim/runtime/kernel_runner.h"

namespace trnsim::cli {

void ChipOptions::add_to(CLI::App& app) {
    app.add_option("--chip", chip, "chip preset (trnsim presets) or a YAML file")->capture_default_str();
    app.add_option("--config", files, "YAML file overlaid on the preset (repeatable)")->allow_extra_args(false);
    app.add_option("--set", overrides, "override one key: dotted.key=value (repeatable)")->allow_extra_args(false);
}

namespace {

struct KernelArgs {
    ChipOptions chip;
    std::string op;
    std::int64_t m = 0, k = 0, n = 0, rows = 0, cols = 0;
    int given_mkn = 0;   // how many of --m --k --n were given
    int given_rows = 0;  // how many of --rows --cols were given
    std::string dtype = "bf16";
    bool functional = false;
    bool causal = false;
    std::int64_t q_offset = 0;
    bool dropout = false;
    bool given_flash = false;  // --causal, --q-offset or --dropout
    std::string json;
    std::string trace;
};

int run_kernel_args(const KernelArgs& a) {
    lowering::KernelRequest req;
    req.op = a.op;
    if (!parse_dtype(a.dtype, req.dtype)) {
        throw UserError(fmt::format("--dtype {}: allowed fp32, bf16, fp16, fp8 (= fp8_e4m3), fp8_e5m2", a.dtype));
    }
    const bool flash = lowering::is_flash(a.op);
    if (a.given_flash && !flash)
        throw UserError(fmt::format("{} takes no --causal/--q-offset/--dropout (flash kernels do)", a.op));
    if (a.dropout && a.functional) {
        throw UserError(
            "--functional with --dropout: the FP64 reference has no dropout mask to compare with; allowed: either one");
    }
    if (a.op == "gemm" || flash) {
        if (a.given_rows > 0) throw UserError(fmt::format("{} takes --m --k --n, not --rows/--cols", a.op));
        if (a.given_mkn < 3) {
            throw UserError(flash ? fmt::format("{} needs --m (queries), --k (head dimension) and --n (keys)", a.op)
                                  : std::string("gemm needs --m, --k and --n (positive integers)"));
        }
        req.m = a.m;
        req.k = a.k;
        req.n = a.n;
        req.causal = a.causal;
        req.q_offset = a.q_offset;
        req.dropout = a.dropout;
    } else {
        if (a.given_mkn > 0) throw UserError(fmt::format("{} takes --rows and --cols, not --m/--k/--n", a.op));
        if (a.given_rows < 2) throw UserError(fmt::format("{} needs --rows and --cols (positive integers)", a.op));
        req.rows = a.rows;
        req.cols = a.cols;
    }
    const Config config = hw::resolve_chip_config(a.chip.chip, a.chip.files, a.chip.overrides);
    // Output paths are checked before simulating, so that a bad path costs nothing and writes nothing.
    if (!a.json.empty()) report::check_writable(a.json, "--json");
    if (!a.trace.empty()) report::check_writable(a.trace, "--trace");
    report::check_distinct({{"--json", a.json}, {"--trace", a.trace}});
    runtime::KernelOptions opts;
    opts.request = req;
    opts.functional = a.functional;
    opts.trace = !a.trace.empty();
    const runtime::KernelResult result = runtime::run_kernel(opts, config);
    std::fputs(report::to_table(result).c_str(), stdout);
    if (!a.json.empty()) report::write_file_atomic(a.json, report::to_json(result).dump(2) + "\n");
    if (!a.trace.empty()) report::write_file_atomic(a.trace, report::to_chrome_trace(result).dump() + "\n");
    return 0;
}

}  // namespace

std::function<int()> add_kernel_command(CLI::App& app) {
    auto args = std::make_shared<KernelArgs>();
    auto* sub = app.add_subcommand("kernel", "simulate one operator on one NeuronCore");
    std::string ops;
    for (const auto& op : lowering::kernel_ops()) ops += (ops.empty() ? "" : "|") + op;
    sub->add_option("op", args->op, ops)->required()->check(CLI::IsMember(lowering::kernel_ops()));
    args->chip.add_to(*sub);
    auto* m = sub->add_option("--m", args->m, "GEMM rows of A and C; flash: queries");
    auto* k = sub->add_option("--k", args->k, "GEMM contraction size; flash: head dimension");
    auto* n = sub->add_option("--n", args->n, "GEMM columns of B and C; flash: keys");
    auto* causal = sub->add_flag("--causal", args->causal, "flash: causal mask (query i sees keys up to q-offset + i)");
    auto* q_offset = sub->add_option("--q-offset", args->q_offset, "flash: position of the first query among the keys");
    auto* dropout =
        sub->add_flag("--dropout", args->dropout, "flash: attention dropout (nki.isa.dropout on P, and dP)");
    auto* rows = sub->add_option("--rows", args->rows, "rows (norms, softmax, activations, transpose)");
    auto* cols = sub->add_option("--cols", args->cols, "columns");
    sub->add_option("--dtype", args->dtype, "fp32|bf16|fp16|fp8 (= fp8_e4m3)|fp8_e5m2")->capture_default_str();
    sub->add_flag("--functional", args->functional, "also compute the values and report the error against FP64");
    sub->add_option("--json", args->json, "write the result as JSON (schema trnsim.kernel/1)");
    sub->add_option("--trace", args->trace, "write the instruction timeline as a Perfetto/Chrome trace (JSON)");
    return [args, sub, m, k, n, rows, cols, causal, q_offset, dropout] {
        if (!sub->parsed()) return 2;
        args->given_flash = causal->count() > 0 || q_offset->count() > 0 || dropout->count() > 0;
        args->given_mkn = static_cast<int>((m->count() > 0) + (k->count() > 0) + (n->count() > 0));
        args->given_rows = static_cast<int>((rows->count() > 0) + (cols->count() > 0));
        return run_kernel_args(*args);
    };
}

}  // namespace trnsim::cli
