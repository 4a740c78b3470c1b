// The HBM model through `trnsim mem`'s runner, against closed forms of each part.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/isolated.h"
#include "trnsim/hw/chip.h"
#include "trnsim/report/mem_report.h"
#include "trnsim/runtime/mem_runner.h"

using namespace trnsim;
using nlohmann::json;

namespace {

json mem(const std::string& part, runtime::MemOptions o, std::vector<std::string> extra = {}) {
    const std::string out = testing::run_isolated([&] {
        std::vector<std::string> overrides = {"chip.memory.model=hbm", "chip.memory.hbm.part=" + part,
                                              "chip.memory.stacks=1"};
        overrides.insert(overrides.end(), extra.begin(), extra.end());
        const Config c = hw::resolve_chip_config("trn2", {}, overrides);
        return report::to_json(runtime::run_mem(o, c)).dump();
    });
    INFO(out.substr(0, 300));
    REQUIRE(out.rfind("error:", 0) != 0);
    return json::parse(out);
}

runtime::MemOptions traffic(const std::string& pattern, std::uint64_t requests, std::uint64_t outstanding,
                            std::uint64_t bytes = 32) {
    runtime::MemOptions o;
    o.pattern = pattern;
    o.requests = requests;
    o.outstanding = outstanding;
    o.request_bytes = bytes;
    return o;
}

}  // namespace

TEST_CASE("each HBM part's peak is one burst per BL per pseudo-channel", "[mem]") {
    // GB/s per stack: channels x pseudo-channels x burst bytes x CK / BL(CK).
    const std::pair<const char*, double> parts[] = {{"hbm2-2000-legacy", 256.0},
                                                    {"hbm2-2400", 307.2},
                                                    {"hbm2e-3200", 409.6},
                                                    {"hbm3-6400", 819.2},
                                                    {"hbm3e-9600", 1228.8}};
    for (const auto& [part, peak] : parts) {
        INFO(part);
        const std::uint64_t bytes = std::string(part) == "hbm2-2000-legacy" ? 64 : 32;
        CHECK(mem(part, traffic("stream", 100, 8, bytes))["peak_gbps"].get<double>() == Approx(peak).epsilon(1e-9));
    }
}

TEST_CASE("unloaded latency is tRCD + tCL + burst for a row miss and tCL + burst for a row hit", "[mem]") {
    // hbm3-6400: tRCDRD 19.375 ns, tCL 12.5 ns, burst 2 CK = 1.25 ns.
    const json miss = mem("hbm3-6400", traffic("random", 2000, 1));
    CHECK(miss["latency_ns"]["p50"].get<double>() == Approx(19.375 + 12.5 + 1.25).margin(1e-6));
    // Sequential traffic one at a time: after each pseudo-channel's first access its row is open.
    const json hit = mem("hbm3-6400", traffic("stream", 20000, 1));
    CHECK(hit["latency_ns"]["p50"].get<double>() == Approx(12.5 + 1.25).margin(1e-6));
    // A miss per row of 32 bursts, and one after each refresh (it precharges every bank).
    CHECK(hit["row_hit_rate"].get<double>() > 0.75);
}

TEST_CASE("a row conflict adds the precharge: tRP + tRCD + tCL + burst", "[mem]") {
    // Strided by a whole row group so that consecutive requests hit the same bank in another row.
    runtime::MemOptions o = traffic("strided", 200, 1);
    // hbm3-6400, plain map: column, SID, bank group, bank and row above channel, pseudo-channel: a stride of
    // one row of every bank of the stack moves only the row field.
    o.stride = 32ull * 16 * 2 * 32 * 2 * 4 * 4;  // burst x channels x PCs x columns x SIDs x BGs x banks
    const json conflict = mem("hbm3-6400", o, {"chip.memory.hbm.controller.refresh=off"});
    // The previous ACT was tRCD + tCL + BL = 33.125 ns earlier, beyond tRAS (28.125 ns), so the conflict
    // costs exactly tRP more than a miss.
    CHECK(conflict["latency_ns"]["p50"].get<double>() == Approx(16.25 + 19.375 + 12.5 + 1.25).margin(1e-6));
    CHECK(conflict["row_hit_rate"].get<double>() == 0.0);
}

TEST_CASE("streaming reads reach the refresh-limited bandwidth", "[mem]") {
    const json s = mem("hbm3-6400", traffic("stream", 400000, 8192));
    const double peak = s["peak_gbps"].get<double>();
    const double bw = s["bandwidth_gbps"].get<double>();
    // All-bank refresh blocks a pseudo-channel tRFC of every tREFI: 350 ns / 3.9 us = 9.0 %.
    CHECK(bw <= peak * (1 - 0.350 / 3.9) * 1.005);
    CHECK(bw >= peak * 0.85);
    const json no_refresh =
        mem("hbm3-6400", traffic("stream", 400000, 8192), {"chip.memory.hbm.controller.refresh=off"});
    CHECK(no_refresh["bandwidth_gbps"].get<double>() >= peak * 0.95);
}

TEST_CASE("random reads are bounded by the four-activate window", "[mem]") {
    const json r = mem("hbm3-6400", traffic("random", 200000, 8192));
    // Every access is a row miss: at most 4 ACTs per tFAW (15 ns) per pseudo-channel, 32 B each.
    const double faw_bound = 4 * 32 / 15e-9 * 32 * 1e-9;  // GB/s over 32 pseudo-channels
    CHECK(r["bandwidth_gbps"].get<double>() <= faw_bound);
    CHECK(r["bandwidth_gbps"].get<double>() >= 0.7 * faw_bound);
    CHECK(r["row_hit_rate"].get<double>() < 0.05);
}

TEST_CASE("the timing checker finds no violation on random mixed traffic for every part", "[mem]") {
    for (const char* part : {"hbm2-2000-legacy", "hbm2-2400", "hbm2e-3200", "hbm3-6400", "hbm3e-9600"}) {
        for (const char* refresh : {"all_bank", "per_bank"}) {
            for (const char* page : {"open", "closed"}) {
                INFO(part << " " << refresh << " " << page);
                runtime::MemOptions o =
                    traffic("random", 20000, 256, std::string(part) == "hbm2-2000-legacy" ? 64 : 64);
                o.read_ratio = 0.6;
                // run_mem throws when the checker reports a violation.
                const json j = mem(
                    part, o,
                    {"chip.memory.hbm.check_timing=true", std::string("chip.memory.hbm.controller.refresh=") + refresh,
                     std::string("chip.memory.hbm.controller.page_policy=") + page});
                CHECK(j["bandwidth_gbps"].get<double>() > 0);
            }
        }
    }
}

TEST_CASE("the same traffic simulated twice gives the same result", "[mem]") {
    runtime::MemOptions o = traffic("random", 20000, 512);
    o.read_ratio = 0.7;
    json a = mem("hbm3-6400", o);
    json b = mem("hbm3-6400", o);
    for (json* j : {&a, &b}) (*j).erase("sim");
    CHECK(a.dump() == b.dump());
}
