#include "trnsim/report/mem_report.h"

#include <fmt/format.h>

#include "trnsim/report/kernel_report.h"

namespace trnsim::report {

namespace {

nlohmann::json latency_json(const runtime::LatencyStats& l) {
    return {{"mean", l.mean}, {"p50", l.p50}, {"p99", l.p99}, {"max", l.max}};
}

std::string latency_line(const char* label, const runtime::LatencyStats& l) {
    return fmt::format("  {:<20}mean {:.1f} ns, p50 {:.1f} ns, p99 {:.1f} ns, max {:.1f} ns\n", label, l.mean, l.p50,
                       l.p99, l.max);
}

}  // namespace

nlohmann::json to_json(const runtime::MemResult& r) {
    nlohmann::json j;
    j["schema"] = k_mem_schema;
    j["memory"] = {{"model", r.memory_model}, {"part", r.part}, {"stacks", r.stacks}};
    j["traffic"] = {{"pattern", r.pattern},
                    {"requests", r.requests},
                    {"request_bytes", r.request_bytes},
                    {"read_ratio", r.read_ratio},
                    {"outstanding", r.outstanding}};
    j["time_s"] = r.time_s;
    j["bandwidth_gbps"] = r.bandwidth_gbps;
    j["peak_gbps"] = r.peak_gbps;
    j["latency_ns"] = latency_json(r.latency);
    j["read_latency_ns"] = latency_json(r.read_latency);
    j["read_latency_ns"]["reads"] = r.read_latency.count;
    auto get = [&](const char* k) { return r.summary.count(k) ? r.summary.at(k) : 0.0; };
    j["row_hit_rate"] = get("row_hit_rate");
    j["refresh_share"] = get("refresh_share");
    j["energy_pj_per_bit"] = get("energy_pj_per_bit");
    j["energy_j"] = get("energy_j");
    j["sim"] = {{"wall_s", r.wall_s},
                {"requests_per_s", r.wall_s > 0 ? static_cast<double>(r.requests) / r.wall_s : 0.0}};
    j["config"] = config_to_json(r.config);
    return j;
}

std::string to_table(const runtime::MemResult& r) {
    std::string out;
    out += fmt::format("trnsim mem: {} x {} ({} model), {} {} B requests, {:.0f}% reads, {} outstanding\n", r.stacks,
                       r.part, r.memory_model, r.requests, r.request_bytes, 100 * r.read_ratio, r.outstanding);
    out += fmt::format("  {:<20}{} traffic\n", "pattern", r.pattern);
    out += fmt::format("  {:<20}{:.1f} GB/s of {:.1f} GB/s peak ({:.1f}%)\n", "bandwidth", r.bandwidth_gbps,
                       r.peak_gbps, 100 * r.bandwidth_gbps / r.peak_gbps);
    out += latency_line("latency", r.latency);
    if (r.read_latency.count > 0 && r.read_latency.count < r.requests)
        out += latency_line("read latency", r.read_latency);
    if (r.summary.count("row_hit_rate")) {
        out += fmt::format("  {:<20}{:.1f}% row hits, {:.1f}% of the time refreshing\n", "DRAM",
                           100 * r.summary.at("row_hit_rate"), 100 * r.summary.at("refresh_share"));
        out += fmt::format("  {:<20}{:.2f} pJ/bit ({:.3g} J)\n", "energy", r.summary.at("energy_pj_per_bit"),
                           r.summary.at("energy_j"));
    }
    out += fmt::format("  {:<20}{:.3f} s wall, {:.2f} M requests/s\n", "simulator", r.wall_s,
                       r.wall_s > 0 ? static_cast<double>(r.requests) / r.wall_s * 1e-6 : 0.0);
    return out;
}

}  // namespace trnsim::report
