#include <cstdint>
#include <cstdio>

#include <fmt/format.h>

#include "commands.h"
#include "trnsim/core/error.h"
#include "trnsim/hw/chip.h"
#include "trnsim/report/kernel_report.h"
#include "trnsim/report/mem_report.h"
#include "trnsim/runtime/mem_runner.h"

namespace trnsim::cli {

namespace {
struct MemArgs {
    ChipOptions chip;
    std::string memory;
    int stacks = 0;
    runtime::MemOptions options;
    std::string json;
};
}  // namespace

std::function<int()> add_mem_command(CLI::App& app) {
    auto a = std::make_shared<MemArgs>();
    auto* sub = app.add_subcommand("mem", "synthetic traffic against a chip's memory or an HBM part");
    a->chip.add_to(*sub);
    auto* memory = sub->add_option("--memory", a->memory, "HBM part preset (configs/memory/), e.g. hbm3-6400");
    auto* stacks = sub->add_option("--stacks", a->stacks, "HBM stacks (default: the chip's, or 1 with --memory)");
    sub->add_option("--pattern", a->options.pattern, "stream|random|strided")->capture_default_str();
    // Ranges checked on the text, before an unsigned option would take "-1" as 2^64 - 1.
    sub->add_option("--stride", a->options.stride, "bytes between requests (strided)")
        ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
    sub->add_option("--request-bytes", a->options.request_bytes, "bytes per request")
        ->capture_default_str()
        ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 30));
    sub->add_option("--requests", a->options.requests, "number of requests")
        ->capture_default_str()
        ->check(CLI::Range(std::int64_t{1}, std::int64_t{100'000'000}));
    sub->add_option("--read-ratio", a->options.read_ratio, "fraction of reads, 0..1")->capture_default_str();
    sub->add_option("--outstanding", a->options.outstanding, "requests in flight at most (1: unloaded latency)")
        ->capture_default_str()
        ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20));
    sub->add_option("--seed", a->options.seed, "seed of the random traffic")
        ->capture_default_str()
        ->check(CLI::Range(std::int64_t{0}, std::int64_t{4294967295}));
    sub->add_option("--json", a->json, "write the result as JSON (schema trnsim.mem/1)");
    return [a, sub, memory, stacks] {
        if (!sub->parsed()) return 2;
        std::vector<std::string> overrides;
        if (memory->count() > 0) {
            overrides.push_back("chip.memory.model=hbm");
            overrides.push_back("chip.memory.hbm.part=" + a->memory);
            if (stacks->count() == 0) overrides.push_back("chip.memory.stacks=1");
        }
        if (stacks->count() > 0) {
            if (a->stacks < 1 || a->stacks > 64) throw UserError(fmt::format("--stacks {}: allowed 1..64", a->stacks));
            overrides.push_back(fmt::format("chip.memory.stacks={}", a->stacks));
        }
        overrides.insert(overrides.end(), a->chip.overrides.begin(), a->chip.overrides.end());
        const Config config = hw::resolve_chip_config(a->chip.chip, a->chip.files, overrides);
        if (!a->json.empty()) report::check_writable(a->json, "--json");
        const runtime::MemResult result = runtime::run_mem(a->options, config);
        std::fputs(report::to_table(result).c_str(), stdout);
        if (!a->json.empty()) report::write_file_atomic(a->json, report::to_json(result).dump(2) + "\n");
        return 0;
    };
}

}  // namespace trnsim::cli
