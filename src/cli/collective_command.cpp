#include <cstdio>

#include <fmt/format.h>

#include "commands.h"
#include "trnsim/core/error.h"
#include "trnsim/core/units.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/report/collective_report.h"
#include "trnsim/report/kernel_report.h"
#include "trnsim/runtime/collective_runner.h"

namespace trnsim::cli {

namespace {

struct CollectiveArgs {
    std::string cluster = "trn2.48xlarge";
    std::vector<std::string> files;
    std::vector<std::string> overrides;
    int nodes = 0;
    std::string op = "all-reduce";
    std::string bytes;
    int ranks = 0;
    int root = 0;
    std::string algorithm = "auto";
    std::string dtype = "fp32";
    std::string json;
};

std::uint64_t parse_size(const std::string& text, const std::string& whole) {
    try {
        return parse_bytes(text).count;
    } catch (const UnitError& e) {
        throw UserError(
            fmt::format("--bytes {}: {}; allowed SIZE or LO:HI (powers of two from LO to HI), e.g. 512MiB "
                        "or 1KiB:1GiB",
                        whole, e.what()));
    }
}

}  // namespace

std::function<int()> add_collective_command(CLI::App& app) {
    auto a = std::make_shared<CollectiveArgs>();
    auto* sub = app.add_subcommand("collective", "simulate a collective (or a size sweep) on a cluster's links");
    sub->add_option("--cluster", a->cluster, "cluster preset (trnsim presets) or a YAML file")->capture_default_str();
    sub->add_option("--config", a->files, "YAML file overlaid on the preset (repeatable)")->allow_extra_args(false);
    sub->add_option("--set", a->overrides, "override one key: dotted.key=value (repeatable)")->allow_extra_args(false);
    auto* nodes = sub->add_option("--nodes", a->nodes, "nodes joined by EFA (sets cluster.nodes)");
    sub->add_option("--op", a->op, "all-reduce|all-gather|reduce-scatter|all-to-all|broadcast|send-recv")
        ->capture_default_str();
    sub->add_option("--bytes", a->bytes, "buffer size per rank, e.g. 512MiB, or LO:HI for a sweep (powers of two)")
        ->required();
    auto* ranks = sub->add_option("--ranks", a->ranks, "participating ranks (default: all; the first R in ring order)");
    auto* root = sub->add_option("--root", a->root, "broadcast root rank")->capture_default_str();
    sub->add_option("--algorithm", a->algorithm, "ring|ring-bidir|mesh|rdh|torus2d|hierarchical|auto")
        ->capture_default_str();
    sub->add_option("--dtype", a->dtype, "element type (reduction cost, element count)")->capture_default_str();
    sub->add_option("--json", a->json, "write the result as JSON (schema trnsim.collective/1)");
    return [a, sub, nodes, ranks, root] {
        if (!sub->parsed()) return 2;
        runtime::CollectiveJob job;
        if (!runtime::parse_op(a->op, job.op)) {
            std::string allowed;
            for (const auto& n : runtime::op_names()) allowed += (allowed.empty() ? "" : ", ") + n;
            throw UserError(fmt::format("--op {}: unknown operation; allowed: {}", a->op, allowed));
        }
        if (!parse_dtype(a->dtype, job.dtype)) {
            throw UserError(fmt::format("--dtype {}: allowed fp32, bf16, fp16, fp8 (= fp8_e4m3), fp8_e5m2", a->dtype));
        }
        (void)runtime::collective_algorithm(a->algorithm);  // unknown names fail here, before any work
        job.algorithm = a->algorithm;
        if (ranks->count() > 0 && a->ranks < 2)
            throw UserError(fmt::format("--ranks {}: allowed at least 2", a->ranks));
        if (root->count() > 0 && job.op != runtime::CollectiveOp::broadcast) {
            throw UserError(
                fmt::format("--root {}: only a broadcast has a root; allowed with --op broadcast", a->root));
        }
        job.ranks = a->ranks;
        job.root = a->root;
        std::vector<std::uint64_t> sizes;
        const auto colon = a->bytes.find(':');
        if (colon == std::string::npos) {
            sizes.push_back(parse_size(a->bytes, a->bytes));
            if (sizes[0] == 0) throw UserError("--bytes 0: allowed a positive size with its unit, e.g. 1KiB, 512MiB");
        } else {
            const std::uint64_t lo = parse_size(a->bytes.substr(0, colon), a->bytes);
            const std::uint64_t hi = parse_size(a->bytes.substr(colon + 1), a->bytes);
            if (lo == 0 || hi < lo) {
                throw UserError(fmt::format("--bytes {}: allowed LO:HI with 0 < LO <= HI, e.g. 1KiB:1GiB", a->bytes));
            }
            sizes = runtime::sweep_sizes(lo, hi);
        }
        const std::uint64_t element = dtype_bytes(job.dtype);
        for (const std::uint64_t s : sizes) {
            if (s % element != 0) {
                throw UserError(
                    fmt::format("--bytes {}: {} B is not a whole number of {} elements; allowed a multiple "
                                "of {} B",
                                a->bytes, s, a->dtype, element));
            }
        }
        std::vector<std::string> overrides;
        if (nodes->count() > 0) {
            if (a->nodes < 1 || a->nodes > 4096) throw UserError(fmt::format("--nodes {}: allowed 1..4096", a->nodes));
            overrides.push_back(fmt::format("cluster.nodes={}", a->nodes));
        }
        overrides.insert(overrides.end(), a->overrides.begin(), a->overrides.end());
        const Config config = hw::resolve_cluster_config(a->cluster, a->files, overrides);
        if (!a->json.empty()) report::check_writable(a->json, "--json");
        std::vector<std::vector<runtime::CollectiveJob>> batches;
        for (auto s : sizes) {
            job.bytes = s;
            batches.push_back({job});
        }
        const runtime::CollectiveRun run = runtime::run_collective_batches(batches, config);
        std::fputs(report::to_table(run).c_str(), stdout);
        if (!a->json.empty()) report::write_file_atomic(a->json, report::to_json(run).dump(2) + "\n");
        return 0;
    };
}

}  // namespace trnsim::cli
