#pragma once
// The headline metrics of each result schema (the CSV columns of a sweep, the default metrics of compare) and
// which way each is better.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace trnsim::cli {

using ordered_json = nlohmann::ordered_json;

// The schema a command writes: "run" -> "trnsim.run/1".
std::string schema_of_command(const std::string& command);

// Dotted paths into a result of `schema` (trnsim.run/1, trnsim.kernel/1, trnsim.mem/1, trnsim.collective/1).
const std::vector<std::string>& headline_metrics(const std::string& schema);

// The rule (docs/sweeps.md): higher is better for throughputs, bandwidths, utilizations and hit rates (a last
// path component `mfu`, ending in `_per_s`, `gbps`, `tflops` or `hit_rate`, or under `utilization.`); lower is
// better for everything else (times, energies, cycles, bytes, latencies).
bool higher_is_better(const std::string& path);

// The value at a dotted path (`energy.per_token_j`), or nullptr.
const ordered_json* find_path(const ordered_json& j, const std::string& path);

}  // namespace trnsim::cli
