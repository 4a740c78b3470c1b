#include "metrics.h"

namespace trnsim::cli {

std::string schema_of_command(const std::string& command) {
    return "trnsim." + command + "/1";
}

const std::vector<std::string>& headline_metrics(const std::string& schema) {
    static const std::vector<std::string> run = {"step_time_s", "tokens_per_s", "mfu", "energy.per_token_j",
                                                 "memory.per_chip_bytes"};
    static const std::vector<std::string> kernel = {"time_s", "cycles", "achieved_tflops", "utilization.tensor",
                                                    "hbm.bandwidth_gbps"};
    static const std::vector<std::string> mem = {"bandwidth_gbps", "latency_ns.mean", "latency_ns.p99", "row_hit_rate",
                                                 "energy_pj_per_bit"};
    static const std::vector<std::string> collective = {"time_s", "algbw_gbps", "busbw_gbps"};
    static const std::vector<std::string> none;
    if (schema == "trnsim.run/1") return run;
    if (schema == "trnsim.kernel/1") return kernel;
    if (schema == "trnsim.mem/1") return mem;
    if (schema == "trnsim.collective/1") return collective;
    return none;
}

bool higher_is_better(const std::string& path) {
    const auto dot = path.rfind('.');
    const std::string last = dot == std::string::npos ? path : path.substr(dot + 1);
    auto ends_with = [&](const std::string& suffix) {
        return last.size() >= suffix.size() && last.compare(last.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    return last == "mfu" || last == "hfu" || ends_with("_per_s") || ends_with("gbps") || ends_with("tflops") ||
           ends_with("hit_rate") || path.rfind("utilization.", 0) == 0;
}

const ordered_json* find_path(const ordered_json& j, const std::string& path) {
    // Keys may hold dots themselves (the resolved config: "config.chip.memory.bandwidth.value"), so every
    // split of the path is tried, shortest first key first.
    if (!j.is_object()) return nullptr;
    for (std::size_t dot = path.find('.');; dot = path.find('.', dot + 1)) {
        const auto it = j.find(path.substr(0, dot));
        if (it != j.end()) {
            if (dot == std::string::npos) return &*it;
            if (const ordered_json* found = find_path(*it, path.substr(dot + 1))) return found;
        }
        if (dot == std::string::npos) return nullptr;
    }
}

}  // namespace trnsim::cli
