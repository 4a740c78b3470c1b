#include "trnsim/report/collective_report.h"

#include <fmt/format.h>

#include "trnsim/report/kernel_report.h"

namespace trnsim::report {

namespace {

nlohmann::json links_json(const runtime::LinkSummary& s) {
    nlohmann::json busiest = nlohmann::json::array();
    for (const auto& u : s.busiest)
        busiest.push_back({{"name", u.name}, {"bytes", u.bytes}, {"utilization", u.utilization}});
    return {{"count", s.links},
            {"used", s.used},
            {"bytes", s.bytes},
            {"utilization_max", s.utilization_max},
            {"utilization_mean_used", s.utilization_mean_used},
            {"busiest", busiest}};
}

nlohmann::json chips_json(const runtime::ChipSummary& s) {
    nlohmann::json per_chip = nlohmann::json::array();
    for (const auto& u : s.per_chip) {
        per_chip.push_back({{"chip", u.chip},
                            {"memory_bytes", u.memory_bytes},
                            {"memory_busy_s", u.memory_busy_s},
                            {"memory_utilization", u.memory_utilization},
                            {"fabric_bytes", u.fabric_bytes},
                            {"fabric_busy_s", u.fabric_busy_s},
                            {"fabric_utilization", u.fabric_utilization}});
    }
    return {{"used", s.used},
            {"memory",
             {{"bytes", s.memory_bytes},
              {"utilization_max", s.memory_utilization_max},
              {"utilization_mean_used", s.memory_utilization_mean_used}}},
            {"fabric",
             {{"bytes", s.fabric_bytes},
              {"utilization_max", s.fabric_utilization_max},
              {"utilization_mean_used", s.fabric_utilization_mean_used}}},
            {"per_chip", per_chip}};
}

}  // namespace

nlohmann::json to_json(const runtime::CollectiveRun& run) {
    nlohmann::json j;
    j["schema"] = k_collective_schema;
    const auto& c = run.cluster;
    j["cluster"] = {{"name", c.name},
                    {"chip", c.chip},
                    {"topology", c.topology},
                    {"nodes", c.nodes},
                    {"chips", c.chips},
                    {"ranks_per_chip", c.ranks_per_chip},
                    {"memory_model", c.memory_model},
                    {"memory", c.memory},
                    {"packet_bytes", c.packet_bytes},
                    {"links", c.link_names.size()}};
    nlohmann::json points = nlohmann::json::array();
    for (const auto& b : run.batches) {
        for (const auto& r : b.jobs) {
            points.push_back({{"op", runtime::op_name(r.job.op)},
                              {"bytes", r.job.bytes},
                              {"count", r.job.bytes / dtype_bytes(r.job.dtype)},
                              {"dtype", dtype_name(r.job.dtype)},
                              {"ranks", r.ranks},
                              {"algorithm_requested", r.job.algorithm},
                              {"algorithm", r.algorithm},
                              {"steps", r.steps},
                              {"transfers", r.transfers},
                              {"time_s", r.time_s},
                              {"algbw_gbps", r.algbw_gbps},
                              {"busbw_gbps", r.busbw_gbps},
                              {"bytes_delivered", b.bytes_delivered},
                              {"bytes_reduced", b.bytes_reduced},
                              {"links", links_json(b.links)},
                              {"chips", chips_json(b.chips)}});
        }
    }
    if (points.size() == 1) {
        for (const char* k :
             {"op", "bytes", "dtype", "ranks", "algorithm", "time_s", "algbw_gbps", "busbw_gbps", "links", "chips"})
            j[k] = points[0][k];
    } else if (!points.empty()) {
        for (const char* k : {"op", "dtype", "ranks", "algorithm_requested"}) j[k] = points[0][k];
    }
    j["points"] = points;
    j["sim"] = {{"wall_s", run.wall_s}, {"points", points.size()}};
    j["config"] = config_to_json(run.config);
    return j;
}

std::string to_table(const runtime::CollectiveRun& run) {
    std::string out;
    const auto& c = run.cluster;
    const runtime::JobResult* first = nullptr;
    for (const auto& b : run.batches)
        if (!b.jobs.empty() && first == nullptr) first = &b.jobs.front();
    if (first != nullptr) {
        out +=
            fmt::format("trnsim collective: {} over {} ranks of {} ({} node{} x {} {} chips, {}), {}, algorithm {}\n",
                        runtime::op_name(first->job.op), first->ranks, c.name, c.nodes, c.nodes == 1 ? "" : "s",
                        c.chips / c.nodes, c.chip, c.topology, dtype_name(first->job.dtype), first->job.algorithm);
    }
    out +=
        fmt::format("{:>14} {:>14} {:>6} {:>12} {:>12} {:>12}  {:<13} {:>9} {:>9} {:>9}\n", "size(B)", "count(elems)",
                    "type", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "algorithm", "link-util", "mem-util", "fab-util");
    for (const auto& b : run.batches) {
        for (const auto& r : b.jobs) {
            out +=
                fmt::format("{:>14} {:>14} {:>6} {:>12.2f} {:>12.2f} {:>12.2f}  {:<13} {:>8.1f}% {:>8.1f}% {:>8.1f}%\n",
                            r.job.bytes, r.job.bytes / dtype_bytes(r.job.dtype), dtype_name(r.job.dtype),
                            r.time_s * 1e6, r.algbw_gbps, r.busbw_gbps, r.algorithm, 100 * b.links.utilization_max,
                            100 * b.chips.memory_utilization_max, 100 * b.chips.fabric_utilization_max);
        }
    }
    out += fmt::format(
        "link-util, mem-util, fab-util: the busiest link's, chip memory's and on-chip fabric's busy time / the "
        "collective's time (memory: {}). simulator: {:.3f} s wall\n",
        c.memory_model, run.wall_s);
    return out;
}

}  // namespace trnsim::report
