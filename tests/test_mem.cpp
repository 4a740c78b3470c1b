// The HBM model through `trnsim mem`'s runner, against closed forms of each part.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include "support/isolated.h"

#include "trnsim/hw/chip.h"
#include "trnsim/hw/hbm_spec.h"
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
    const std::pair<const char*, double> parts[] = {{"hbm2-2000-legacy", 256.0}, {"hbm2-2400", 307.2},
                                                    {"hbm2e-3200", 409.6},       {"hbm3-5664", 724.992},
                                                    {"hbm3-6400", 819.2},        {"hbm3e-9600", 1228.8}};
    for (const auto& [part, peak] : parts) {
        INFO(part);
        const std::uint64_t bytes = std::string(part) == "hbm2-2000-legacy" ? 64 : 32;
        CHECK(mem(part, traffic("stream", 100, 8, bytes))["peak_gbps"].get<double>() == Approx(peak).epsilon(1e-9));
    }
}

namespace {

// Each part's timing in controller ticks and its organization, as the model sees them.
hw::HbmSpec part_spec(const std::string& part) {
    const Config c = hw::resolve_chip_config(
        "trn2", {}, {"chip.memory.model=hbm", "chip.memory.hbm.part=" + part, "chip.memory.stacks=1"});
    return hw::HbmSpec::from_config(c, 1);
}

const char* const kParts[] = {"hbm2-2000-legacy", "hbm2-2400", "hbm2e-3200", "hbm3-5664", "hbm3-6400", "hbm3e-9600"};

}  // namespace

TEST_CASE("unloaded latency of each part: tCL + burst for a hit, + tRCD for a miss, + tRP for a conflict", "[mem]") {
    for (const char* part : kParts) {
        INFO(part);
        const hw::HbmSpec spec = part_spec(part);
        const auto& t = spec.timing;
        const auto ns = [&](int ticks) { return ticks / spec.tick_hz() * 1e9; };
        const auto bytes = static_cast<std::uint64_t>(spec.org.burst_bytes);
        // Closed page: every access opens its row (random over every bank: the same bank twice in a row is
        // rare enough not to move the median).
        const json miss =
            mem(part, traffic("random", 2000, 1, bytes), {"chip.memory.hbm.controller.page_policy=closed"});
        CHECK(miss["latency_ns"]["p50"].get<double>() == Approx(ns(t.RCDRD + t.CL + t.BL)).margin(1e-6));
        CHECK(miss["row_hit_rate"].get<double>() == 0.0);
        // Sequential, one at a time: after each pseudo-channel's first access its row is open.
        const json hit = mem(part, traffic("stream", 20000, 1, bytes));
        CHECK(hit["latency_ns"]["p50"].get<double>() == Approx(ns(t.CL + t.BL)).margin(1e-6));
        CHECK(hit["row_hit_rate"].get<double>() > 0.75);  // a miss per row of 32 bursts and after refreshes
        // Strided by one row of every bank: consecutive requests go to the same bank, another row. The PRE
        // waits for tRAS after the previous ACT and tRTP after its RD, which were tRCD + tCL + BL and
        // tCL + BL before this request arrived.
        runtime::MemOptions o = traffic("strided", 200, 1, bytes);
        const auto& g = spec.org;
        o.stride = bytes * static_cast<std::uint64_t>(g.channels * g.pseudo_channels * g.columns * g.sids *
                                                      g.bank_groups * g.banks_per_group);
        const json conflict = mem(part, o, {"chip.memory.hbm.controller.refresh=off"});
        const int pre_wait = std::max({0, t.RAS - (t.RCDRD + t.CL + t.BL), t.RTP - (t.CL + t.BL)});
        CHECK(conflict["latency_ns"]["p50"].get<double>() ==
              Approx(ns(pre_wait + t.RP + t.RCDRD + t.CL + t.BL)).margin(1e-6));
        CHECK(conflict["row_hit_rate"].get<double>() == 0.0);
    }
}

TEST_CASE("streaming reads of each part reach the refresh-limited bandwidth", "[mem]") {
    for (const char* part : kParts) {
        INFO(part);
        const hw::HbmSpec spec = part_spec(part);
        const auto& t = spec.timing;
        const auto bytes = static_cast<std::uint64_t>(spec.org.burst_bytes);
        // Long enough for ~20 refresh intervals per pseudo-channel.
        const auto requests = static_cast<std::uint64_t>(20.0 * t.REFI / t.BL * spec.pseudo_channels_total());
        const auto stream = [&](const char* refresh) {
            return mem(part, traffic("stream", requests, 8192, bytes),
                       {std::string("chip.memory.hbm.controller.refresh=") + refresh});
        };
        const json ab = stream("all_bank");
        const double peak = ab["peak_gbps"].get<double>();
        // All-bank refresh blocks the pseudo-channel for tRFC every tREFI; around it the banks are closed
        // (PREA, tRP before) and the stream's next rows reopened (tRCD + tCL before data flows again).
        const double upper = 1.0 - static_cast<double>(t.RFC) / t.REFI;
        const double lower = 1.0 - static_cast<double>(t.RFC + t.RP + t.RCDRD + t.CL + t.BL) / t.REFI;
        CHECK(ab["bandwidth_gbps"].get<double>() <= peak * upper * 1.002);
        CHECK(ab["bandwidth_gbps"].get<double>() >= peak * lower * 0.99);
        // Per-bank refresh (the default) blocks one bank at a time and picks banks the stream does not use.
        const json pb = stream("per_bank");
        CHECK(pb["bandwidth_gbps"].get<double>() >= peak * 0.97);
        const json off = stream("off");
        CHECK(off["bandwidth_gbps"].get<double>() >= peak * 0.97);
        CHECK(off["bandwidth_gbps"].get<double>() <= peak);
    }
}

TEST_CASE("one hbm3-6400 stack streams 32 B reads at over 90% of 819.2 GB/s with refresh on", "[mem]") {
    const json s = mem("hbm3-6400", traffic("stream", 400000, 8192));
    CHECK(s["peak_gbps"].get<double>() == Approx(819.2));
    CHECK(s["bandwidth_gbps"].get<double>() > 0.9 * 819.2);
    CHECK(s["refresh_share"].get<double>() > 0.04);  // per-bank refresh: tRFCpb / (tREFI / banks) of each bank
}

TEST_CASE("random reads of each part are bounded by the four-activate window and tRRD_S", "[mem]") {
    for (const char* part : kParts) {
        INFO(part);
        const hw::HbmSpec spec = part_spec(part);
        const auto& t = spec.timing;
        const auto bytes = static_cast<std::uint64_t>(spec.org.burst_bytes);
        const json r = mem(part, traffic("random", 100000, 8192, bytes));
        // Every access is a row miss: per pseudo-channel at most 4 ACTs per tFAW and one per tRRD_S.
        const double acts_per_tick = std::min(4.0 / t.FAW, 1.0 / t.RRDS);
        const double bound = acts_per_tick * spec.tick_hz() * bytes * spec.pseudo_channels_total() * 1e-9;
        CHECK(r["bandwidth_gbps"].get<double>() <= bound);
        CHECK(r["bandwidth_gbps"].get<double>() >= 0.7 * bound);
        CHECK(r["row_hit_rate"].get<double>() < 0.05);
    }
}

TEST_CASE("the timing checker finds no violation on random mixed traffic for every part", "[mem]") {
    for (const char* part : kParts) {
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

TEST_CASE("a single sender's waits for queue space simulated at once give the event-by-event results", "[mem]") {
    // HbmMemory::set_single_sender: the wrapper simulates a wait for queue space in one go instead of wake-up by
    // wake-up; every arrival, completion and statistic must stay the same. Queue-limited traffic (8192 in flight,
    // 64-entry queues) waits all the time; 64 in flight now and then; multi-burst requests wait mid-request.
    struct Case {
        std::string pattern;
        double read_ratio;
        std::uint64_t outstanding, request_bytes;
        std::vector<std::string> extra;
    };
    const std::vector<Case> cases = {
        {"random", 1.0, 8192, 32, {}},
        {"random", 0.7, 8192, 32, {"chip.memory.hbm.controller.page_policy=closed"}},
        {"random", 0.7, 8192, 32, {"chip.memory.hbm.controller.refresh=per_bank"}},
        {"stream", 0.9, 8192, 32, {}},
        {"random", 0.7, 64, 32, {}},
        {"random", 0.7, 8192, 256, {"chip.memory.stacks=2"}},
    };
    for (const Case& k : cases) {
        runtime::MemOptions o = traffic(k.pattern, 20000, k.outstanding, k.request_bytes);
        o.read_ratio = k.read_ratio;
        o.single_sender = false;
        json a = mem("hbm3-6400", o, k.extra);
        o.single_sender = true;
        json b = mem("hbm3-6400", o, k.extra);
        for (json* j : {&a, &b}) (*j).erase("sim");
        INFO(k.pattern << " " << k.read_ratio << " " << k.outstanding << " " << k.request_bytes);
        CHECK(a.dump() == b.dump());
    }
}
