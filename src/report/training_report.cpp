#include "trnsim/report/training_report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <iterator>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "trnsim/report/kernel_report.h"

namespace trnsim::report {

namespace {

std::string gib(double bytes) {
    return fmt::format("{:.1f} GiB", bytes / (1024.0 * 1024.0 * 1024.0));
}

std::string time_text(double s) {
    if (s >= 1) return fmt::format("{:.3f} s", s);
    if (s >= 1e-3) return fmt::format("{:.3f} ms", s * 1e3);
    return fmt::format("{:.3f} us", s * 1e6);
}

// Joules with the SI prefix that leaves 1 to 999 before the unit, to 3 significant digits: "377 kJ", "4.43 MJ".
std::string joules_text(double j) {
    static constexpr std::array<std::pair<double, const char*>, 7> k_prefixes = {
        {{1e9, "G"}, {1e6, "M"}, {1e3, "k"}, {1, ""}, {1e-3, "m"}, {1e-6, "u"}, {1e-9, "n"}}};
    for (const auto& [scale, prefix] : k_prefixes) {
        if (std::abs(j) >= scale * 0.9995) return fmt::format("{:.3g} {}J", j / scale, prefix);
    }
    return fmt::format("{:.3g} pJ", j * 1e12);  // below a nanojoule, and zero
}

nlohmann::json shares_json(const std::vector<runtime::TimeShare>& v) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& t : v) j[t.name] = t.seconds;
    return j;
}

}  // namespace

nlohmann::json to_json(const runtime::TrainingResult& r) {
    nlohmann::json j;
    j["schema"] = k_run_schema;
    j["model"] = r.model;
    j["cluster"] = {{"name", r.cluster}, {"chip", r.chip},   {"nodes", r.nodes},
                    {"chips", r.chips},  {"ranks", r.ranks}, {"ranks_per_chip", r.ranks_per_chip},
                    {"lnc", r.lnc}};
    j["training"] = r.training;
    j["placement"] = r.placement;
    j["params"] = r.params;
    j["microbatches"] = r.microbatches;
    j["step_time_s"] = r.step_time_s;
    j["tokens_per_s"] = r.tokens_per_s;
    j["sequences_per_s"] = r.sequences_per_s;
    j["model_flops_per_step"] = r.model_flops;
    j["hardware_flops_per_step"] = r.hardware_flops;
    j["peak_flops"] = r.peak_flops;
    j["mfu"] = r.mfu;
    j["hfu"] = r.hfu;
    j["simulated_ranks"] = r.simulated_ranks;
    const auto& e = r.energy;
    j["energy"] = {{"step_j", e.total()},
                   {"per_token_j", r.energy_per_token_j},
                   {"per_param_j", r.energy_per_param_j},
                   {"per_param_token_pj", r.energy_per_param_token_pj},
                   {"by_component",
                    {{"tensor_engine", e.tensor_engine},
                     {"sbuf", e.sbuf},
                     {"hbm", e.hbm},
                     {"links", e.links},
                     {"static", e.static_energy}}}};
    j["traffic"] = {{"link_bytes", r.link_bytes},
                    {"efa_bytes", r.efa_bytes},
                    {"collective_memory_bytes", r.collective_memory_bytes}};
    nlohmann::json stages = nlohmann::json::array();
    for (const auto& b : r.stages) {
        stages.push_back({{"stage", b.stage},
                          {"busy_s", b.busy_s},
                          {"compute_s", shares_json(b.compute)},
                          {"exposed_comm_s", shares_json(b.exposed_comm)},
                          {"pipeline_wait_s", b.pipeline_wait_s},
                          {"optimizer_s", b.optimizer_s},
                          {"kernel_lag_s", b.kernel_lag_s}});
    }
    j["breakdown"] = stages;
    nlohmann::json mem = nlohmann::json::array();
    for (const auto& m : r.memory) {
        mem.push_back({{"stage", m.stage},
                       {"weights", m.weights},
                       {"gradients", m.gradients},
                       {"optimizer", m.optimizer},
                       {"activations", m.activations},
                       {"workspace", m.workspace},
                       {"total_per_rank", m.total}});
    }
    j["memory"] = {{"per_stage_bytes", mem},
                   {"per_chip_bytes", r.capacity.required},
                   {"capacity_bytes", r.capacity.capacity},
                   {"fits", r.capacity.fits}};
    j["sim"] = {{"wall_s", r.wall_s},
                {"simulated_microbatches", r.simulated},
                {"sampled_step_s", r.sampled_step_s},
                {"extrapolated", r.extrapolated},
                {"events", r.events},
                {"unique_kernels", r.distinct_kernels},
                {"kernel_cache_hits", r.kernel_cache_hits},
                {"kernel_cache_misses", r.kernel_cache_misses},
                {"kernel_wall_s", r.kernel_wall_s},
                {"collectives", r.collectives},
                {"transfers", r.transfers},
                {"busy_periods_replayed", r.busy_periods_replayed},
                {"busy_periods_simulated", r.busy_periods_simulated},
                {"busy_periods_mirrored", r.busy_periods_mirrored}};
    j["config"] = config_to_json(r.config);
    return j;
}

void write_chrome_trace(const runtime::TrainingResult& r, const std::string& path) {
    AtomicFile out(path);
    fmt::memory_buffer b;
    bool first = true;
    const auto flush = [&](bool force) {
        if (!force && b.size() < (1u << 20)) return;
        out.write(std::string_view(b.data(), b.size()));
        b.clear();
    };
    // Starts the next element of traceEvents.
    const auto next = [&] {
        flush(false);
        fmt::format_to(std::back_inserter(b), "{}", first ? "\n" : ",\n");
        first = false;
    };
    const auto event = [&](const nlohmann::json& e) {
        next();
        fmt::format_to(std::back_inserter(b), "{}", e.dump());
    };
    fmt::format_to(std::back_inserter(b), "{{\"traceEvents\":[");
    static const char* const tracks[] = {"core", "communication", "pipeline wait"};
    for (const auto& s : r.stages) {
        for (int t = 0; t < 3; ++t) {
            event({{"name", "thread_name"},
                   {"ph", "M"},
                   {"pid", 1},
                   {"tid", s.stage * 3 + t},
                   {"args", {{"name", fmt::format("stage {} {}", s.stage, tracks[t])}}}});
        }
    }
    for (const auto& e : r.trace) {
        event({{"name", e.name},
               {"ph", "X"},
               {"pid", 1},
               {"tid", e.stage * 3 + e.track},
               {"ts", static_cast<double>(e.start_fs) * 1e-9},
               {"dur", static_cast<double>(e.end_fs - e.start_fs) * 1e-9}});
    }
    // Utilization counters: the stages' engines with their timelines, the links and the chips' DMA rings
    // each in a process of their own.
    static const char* const groups[] = {"stages", "links (collectives and pipeline transfers)",
                                         "chip DMA rings (collectives and pipeline transfers)"};
    for (int g = 0; g < 3; ++g)
        event({{"name", "process_name"}, {"ph", "M"}, {"pid", g + 1}, {"args", {{"name", groups[g]}}}});
    std::vector<std::string> names;
    std::vector<int> pids;
    for (const std::string& t : r.trace_tracks) {
        names.push_back(nlohmann::json(t + " utilization").dump());  // quoted and escaped
        pids.push_back(t.rfind("stage", 0) == 0 ? 1 : t.rfind("link", 0) == 0 ? 2 : 3);
    }
    for (const auto& c : r.trace_counters) {
        next();  // ts in us, to the femtosecond
        fmt::format_to(std::back_inserter(b),
                       "{{\"name\":{},\"ph\":\"C\",\"pid\":{},\"ts\":{},\"args\":{{\"value\":{}}}}}", names[c.track],
                       pids[c.track], static_cast<double>(c.at_fs) * 1e-9, c.value);
    }
    fmt::format_to(std::back_inserter(b), "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{}}}\n",
                   nlohmann::json{{"model", r.model},
                                  {"cluster", r.cluster},
                                  {"training", r.training},
                                  {"microbatches_simulated", r.simulated.empty() ? 0 : r.simulated.back()}}
                       .dump());
    flush(true);
    out.commit();
}

std::string to_table(const runtime::TrainingResult& r) {
    std::string out;
    out += fmt::format("trnsim run: {} on {} ({} node(s) x {} chips, {} ranks = logical cores, LNC {})\n", r.model,
                       r.cluster, r.nodes, r.chips / std::max(1, r.nodes), r.ranks, r.lnc);
    out += fmt::format("  {:<22}{}, placement {}\n", "training", r.training, r.placement);
    out += fmt::format("  {:<22}{}\n", "step time", time_text(r.step_time_s));
    out +=
        fmt::format("  {:<22}{:.0f} tokens/s, {:.2f} sequences/s\n", "throughput", r.tokens_per_s, r.sequences_per_s);
    out += fmt::format("  {:<22}{:.1f}% ({:.3g} model FLOP per step, peak {:.3g} FLOP/s)\n", "MFU", 100.0 * r.mfu,
                       r.model_flops, r.peak_flops);
    out += fmt::format("  {:<22}{:.1f}% ({:.3g} matrix FLOP run per step, recompute included)\n", "HFU", 100.0 * r.hfu,
                       r.hardware_flops);
    const auto& e = r.energy;
    const double total = e.total();
    out += fmt::format("  {:<22}{} per step, {} per token, {} per parameter, {:.3g} pJ per parameter-token\n", "energy",
                       joules_text(total), joules_text(r.energy_per_token_j), joules_text(r.energy_per_param_j),
                       r.energy_per_param_token_pj);
    out += fmt::format("  {:<22}tensor engine {:.0f}%, SBUF {:.0f}%, HBM {:.0f}%, links {:.0f}%, static {:.0f}%\n", "",
                       100 * e.tensor_engine / total, 100 * e.sbuf / total, 100 * e.hbm / total, 100 * e.links / total,
                       100 * e.static_energy / total);
    out += fmt::format("  {:<22}{} per chip of {}{}\n", "memory", gib(r.capacity.required), gib(r.capacity.capacity),
                       r.capacity.fits ? "" : "  ** DOES NOT FIT (--allow-oom) **");
    for (const auto& b : r.stages) {
        out += fmt::format("  stage {} breakdown     busy {}", b.stage, time_text(b.busy_s));
        out += "\n    compute            ";
        std::vector<runtime::TimeShare> c = b.compute;
        std::stable_sort(c.begin(), c.end(), [](const auto& x, const auto& y) { return x.seconds > y.seconds; });
        for (const auto& t : c) out += fmt::format(" {} {}", t.name, time_text(t.seconds));
        out += "\n    exposed comm       ";
        if (b.exposed_comm.empty()) out += " none";
        for (const auto& t : b.exposed_comm) out += fmt::format(" {} {}", t.name, time_text(t.seconds));
        out += fmt::format("\n    pipeline wait       {}\n    optimizer           {}\n", time_text(b.pipeline_wait_s),
                           time_text(b.optimizer_s));
        out += fmt::format("    kernel lag          {} (of compute: the collectives' DMA and memory turns)\n",
                           time_text(b.kernel_lag_s));
    }
    std::string sims;
    for (auto m : r.simulated) sims += (sims.empty() ? "" : ", ") + std::to_string(m);
    out += fmt::format("  {:<22}{} micro-batches per replica; simulated {}{}; ranks simulated: one per stage\n",
                       "simulation", r.microbatches, sims,
                       r.extrapolated ? ", step time extrapolated (affine, checked)" : "");
    out += fmt::format(
        "  {:<22}{:.2f} s wall ({} unique kernels, {} cached, {:.2f} s simulating them; {} collectives; busy periods "
        "{} "
        "simulated, {} replayed)\n",
        "simulator", r.wall_s, r.distinct_kernels, r.kernel_cache_hits, r.kernel_wall_s, r.collectives,
        r.busy_periods_simulated, r.busy_periods_replayed);
    return out;
}

}  // namespace trnsim::report
