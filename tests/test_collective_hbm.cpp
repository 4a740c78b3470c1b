// The chip behind a collective's endpoints (docs/adr/0008): the transaction-level HBM, whose rates are
// measured on the burst-level model, and the on-chip fabric, against `trnsim mem` and closed forms.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>

#include <fmt/format.h>

#include "support/isolated.h"
#include "trnsim/core/error.h"
#include "trnsim/hw/chip.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/hw/hbm_tl_memory.h"
#include "trnsim/report/mem_report.h"
#include "trnsim/runtime/collective_runner.h"
#include "trnsim/runtime/mem_runner.h"

using namespace trnsim;
using nlohmann::json;
using runtime::CollectiveJob;
using runtime::CollectiveOp;

namespace {

// `trnsim mem` streaming 32 B reads (or writes) over one stack of the chip's part, long enough for ~20
// refresh intervals per pseudo-channel: GB/s.
double mem_stream_gbps(const std::string& chip, double read_ratio) {
    const std::string out = testing::run_isolated([&] {
        const Config c = hw::resolve_chip_config(chip, {}, {"chip.memory.model=hbm", "chip.memory.stacks=1"});
        const hw::HbmSpec spec = hw::HbmSpec::from_config(c, 1);
        runtime::MemOptions o;
        o.pattern = "stream";
        o.read_ratio = read_ratio;
        o.request_bytes = static_cast<std::uint64_t>(spec.org.burst_bytes);
        o.outstanding = 8192;
        o.requests =
            static_cast<std::uint64_t>(20.0 * spec.timing.REFI / spec.timing.BL * spec.pseudo_channels_total());
        return report::to_json(runtime::run_mem(o, c)).dump();
    });
    INFO(out.substr(0, 300));
    REQUIRE(out.rfind("error:", 0) != 0);
    return json::parse(out)["bandwidth_gbps"].get<double>();
}

// Everything but the resource under test much faster than the links, the links fast too.
std::vector<std::string> fast(std::vector<std::string> extra) {
    std::vector<std::string> o = {"cluster.topology=ring:8",           "cluster.link.bandwidth=1000TB/s",
                                  "cluster.link.latency=0ns",          "chip.core.dma.engine_bandwidth=500TB/s",
                                  "chip.core.dma.descriptor_cost=0ns", "chip.core.dma.transfer_latency=0ns"};
    o.insert(o.end(), extra.begin(), extra.end());
    return o;
}

CollectiveJob job(CollectiveOp op, std::uint64_t bytes, const std::string& algorithm) {
    CollectiveJob j;
    j.op = op;
    j.bytes = bytes;
    j.algorithm = algorithm;
    return j;
}

// One job's simulated time, with the batch's chip summary.
json run(const CollectiveJob& j, const std::vector<std::string>& overrides) {
    const std::string out = testing::run_isolated([&] {
        const Config c = hw::resolve_cluster_config("trn2.48xlarge", {}, overrides);
        const auto r = runtime::run_collective_batches({{j}}, c);
        const auto& b = r.batches.at(0);
        return json{{"time_s", b.jobs.at(0).time_s},
                    {"memory_model", r.cluster.memory_model},
                    {"memory_bytes", b.chips.memory_bytes},
                    {"memory_util", b.chips.memory_utilization_max},
                    {"fabric_bytes", b.chips.fabric_bytes},
                    {"fabric_util", b.chips.fabric_utilization_max},
                    {"used", b.chips.used}}
            .dump();
    });
    INFO(out.substr(0, 400));
    REQUIRE(out.rfind("error:", 0) != 0);
    return json::parse(out);
}

std::string error_of(const CollectiveJob& j, const std::vector<std::string>& overrides) {
    return testing::run_isolated([&] {
        try {
            const Config c = hw::resolve_cluster_config("trn2.48xlarge", {}, overrides);
            (void)runtime::run_collective_batches({{j}}, c);
        } catch (const UserError& e) {
            return std::string(e.what());
        }
        return std::string();
    });
}

const std::uint64_t k_packet = 64 << 10;

}  // namespace

TEST_CASE("the measured HBM rates of each chip are below peak, above 80% of it, and trnsim mem's stream rates",
          "[collective][hbm]") {
    for (const char* chip : {"trn1", "trn2", "trn3"}) {
        INFO(chip);
        const Config c = hw::resolve_chip_config(chip, {}, {});
        const int stacks = static_cast<int>(c.get_int("chip.memory.stacks"));
        const auto t0 = std::chrono::steady_clock::now();
        const hw::HbmRates r = hw::measure_hbm_rates(hw::HbmSpec::from_config(c, stacks), k_packet);
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        WARN(
            fmt::format("{}: peak {:.1f} GB/s, read {:.1f}, write {:.1f}, mixed {:.1f} GB/s, turnaround {:.2f} ns, "
                        "packet latency read {:.1f} ns (fixed {:.1f}), write {:.1f} ns (fixed {:.1f}); {} bursts "
                        "in {:.3f} s",
                        chip, r.peak_bytes_per_s * 1e-9, r.read_bytes_per_s * 1e-9, r.write_bytes_per_s * 1e-9,
                        r.mixed_bytes_per_s * 1e-9, r.turnaround_s * 1e9, r.packet_read_s * 1e9, r.read_latency_s * 1e9,
                        r.packet_write_s * 1e9, r.write_latency_s * 1e9, r.bursts_simulated, wall));
        for (const double rate : {r.read_bytes_per_s, r.write_bytes_per_s}) {
            CHECK(rate < r.peak_bytes_per_s);
            CHECK(rate > 0.8 * r.peak_bytes_per_s);
        }
        CHECK(r.mixed_bytes_per_s <= std::max(r.read_bytes_per_s, r.write_bytes_per_s));
        // Cheap enough to run at every elaboration (memoized per config): well under 0.2 s.
        CHECK(r.bursts_simulated < 200000);
        // One stack of trnsim mem's stream (the whole burst-level model: address map, every pseudo-channel,
        // 8192 requests in flight) against the measurement on one pseudo-channel scaled to one stack: within
        // 2% (the measurement's window is shorter and starts after the queues fill).
        CHECK(r.read_bytes_per_s / stacks * 1e-9 == Approx(mem_stream_gbps(chip, 1.0)).epsilon(0.02));
        CHECK(r.write_bytes_per_s / stacks * 1e-9 == Approx(mem_stream_gbps(chip, 0.0)).epsilon(0.02));
    }
}

TEST_CASE("the same memory config is measured once per process, and the same way every time", "[collective][hbm]") {
    const Config c = hw::resolve_chip_config("trn2", {}, {});
    const hw::HbmRates& a = hw::hbm_rates(c, k_packet);
    CHECK(&hw::hbm_rates(c, k_packet) == &a);
    const hw::HbmRates b = hw::measure_hbm_rates(hw::HbmSpec::from_config(c, 4), k_packet);
    CHECK(a.read_bytes_per_s == b.read_bytes_per_s);
    CHECK(a.turnaround_s == b.turnaround_s);
    const Config slow = hw::resolve_chip_config("trn2", {}, {"chip.memory.hbm.part=hbm2-2400"});
    CHECK(hw::hbm_rates(slow, k_packet).read_bytes_per_s < 0.5 * a.read_bytes_per_s);
}

TEST_CASE("a collective bound by the on-chip fabric takes the fabric's bytes / its bandwidth", "[collective][hbm]") {
    // send-recv: every chip reads N to send and writes the N it receives, both through its fabric.
    const std::uint64_t n = 64ull << 20;
    const double bf = 20e9;
    const json r = run(job(CollectiveOp::send_recv, n, "ring"),
                       fast({"cluster.memory_model=ideal", "chip.memory.bandwidth=5000TB/s",
                             "chip.memory.ideal.latency=0ns", "chip.fabric.bandwidth=20GB/s"}));
    CHECK(r["time_s"].get<double>() == Approx(2.0 * static_cast<double>(n) / bf).epsilon(0.01));
    CHECK(r["fabric_bytes"].get<std::uint64_t>() == 8 * 2 * n);
    CHECK(r["fabric_util"].get<double>() > 0.99);
    // Ring all-gather: p - 1 steps, each reading and writing N / p per chip.
    const int p = 8;
    const json ag = run(job(CollectiveOp::all_gather, n, "ring"),
                        fast({"cluster.memory_model=ideal", "chip.memory.bandwidth=5000TB/s",
                              "chip.memory.ideal.latency=0ns", "chip.fabric.bandwidth=20GB/s"}));
    CHECK(ag["time_s"].get<double>() == Approx(2.0 * (p - 1) / p * static_cast<double>(n) / bf).epsilon(0.01));
}

TEST_CASE("a collective bound by the memory takes the bytes at the measured HBM rates", "[collective][hbm]") {
    // A slow part (one hbm2-2400 stack, 307 GB/s peak) behind a fast fabric and links: send-recv reads N and
    // writes N per chip, a packet of each in turn, so every access after the first follows one of the
    // other direction: N / read + N / write + one turnaround per packet.
    const std::uint64_t n = 64ull << 20;
    const std::vector<std::string> slow = {"chip.memory.hbm.part=hbm2-2400", "chip.memory.stacks=1",
                                           "chip.fabric.bandwidth=5000TB/s", "chip.fabric.latency=0ns"};
    const Config c = hw::resolve_cluster_config("trn2.48xlarge", {}, fast(slow));
    const hw::HbmRates& rates = hw::hbm_rates(c, k_packet);
    const double packets = 2.0 * static_cast<double>(n) / k_packet;
    const double expect = static_cast<double>(n) / rates.read_bytes_per_s +
                          static_cast<double>(n) / rates.write_bytes_per_s + packets * rates.turnaround_s;
    const json r = run(job(CollectiveOp::send_recv, n, "ring"), fast(slow));
    CHECK(r["memory_model"] == "hbm");
    CHECK(r["time_s"].get<double>() == Approx(expect).epsilon(0.01));
    CHECK(r["memory_bytes"].get<std::uint64_t>() == 8 * 2 * n);
    CHECK(r["memory_util"].get<double>() > 0.99);
}

TEST_CASE("the memory's turnarounds follow the controller's write drains, not how finely reads and writes interleave",
          "[collective][hbm]") {
    // Rates with round numbers: 1 fs per byte each way, a drain of two 64 KiB packets, 1000 fs per pair of turns.
    hw::HbmRates rates;
    rates.read_bytes_per_s = rates.write_bytes_per_s = 1e15;
    rates.drain_bytes = 2.0 * k_packet;
    rates.drain_s = 1e-12;
    // Busy time of a sequence of packets ('r', 'w') all queued at once, fs; ' ': the memory idles before the
    // next one arrives.
    const auto busy = [&](const std::string& pattern) {
        const std::string out = testing::run_isolated([&] {
            hw::HbmTlMemory m("memory", rates);
            std::uint64_t t = 0, free = 0;
            for (const char c : pattern) {
                if (c == ' ') {
                    t = free + 1000000;
                    continue;
                }
                free = m.timed_access(c == 'w', k_packet, t).accept_fs;
            }
            return std::to_string(m.stats().busy_fs);
        });
        return std::stod(out);
    };
    const double own = 8.0 * k_packet;  // 8 packets at 1 fs per byte
    // Packet by packet or two at a time: a drain per two packets written, reads around each: 2 pairs of turns.
    CHECK(busy("rwrwrwrw") == own + 2000);
    CHECK(busy("rrwwrrww") == own + 2000);
    // Four at a time: two drains in a row, one pair of turns around them.
    CHECK(busy("rrrrwwww") == own + 1000);
    // No reads: none; an idle memory has drained its queues.
    CHECK(busy("wwwwwwww") == own);
    CHECK(busy("rrrr wwww") == own);
    // The rates the rule stands on (docs/adr/0008): the measured mixed stream, one packet each way in turn,
    // costs a pair of turns per drain of the chip's controller.
    const Config c = hw::resolve_cluster_config("trn2.48xlarge", {}, {});
    const hw::HbmRates& trn2 = hw::hbm_rates(c, k_packet);
    const double pair_s =
        static_cast<double>(k_packet) / trn2.read_bytes_per_s + static_cast<double>(k_packet) / trn2.write_bytes_per_s;
    const double per_drain = trn2.drain_bytes / k_packet;  // packet pairs per drain
    CHECK(2.0 * k_packet / trn2.mixed_bytes_per_s == Approx(pair_s + trn2.drain_s / per_drain).epsilon(1e-9));
}

TEST_CASE("cluster.memory_model=ideal serves collectives at chip.memory.bandwidth", "[collective][hbm]") {
    const std::uint64_t n = 64ull << 20;
    const json r =
        run(job(CollectiveOp::send_recv, n, "ring"),
            fast({"cluster.memory_model=ideal", "chip.memory.bandwidth=50GB/s", "chip.memory.ideal.latency=0ns",
                  "chip.fabric.bandwidth=5000TB/s", "chip.fabric.latency=0ns"}));
    CHECK(r["memory_model"] == "ideal");
    CHECK(r["time_s"].get<double>() == Approx(2.0 * static_cast<double>(n) / 50e9).epsilon(0.01));
}

TEST_CASE("bad memory-model and fabric values are config errors naming the key and what is allowed",
          "[collective][hbm]") {
    const auto j = job(CollectiveOp::all_reduce, 1 << 20, "ring");
    const std::string model = error_of(j, {"cluster.memory_model=dram"});
    CHECK_THAT(model, Catch::Contains("cluster.memory_model") && Catch::Contains("hbm") && Catch::Contains("ideal"));
    const std::string zero = error_of(j, {"chip.fabric.bandwidth=0GB/s"});
    CHECK_THAT(zero, Catch::Contains("chip.fabric.bandwidth"));
    const std::string unit = error_of(j, {"chip.fabric.bandwidth=100"});
    CHECK_THAT(unit, Catch::Contains("chip.fabric.bandwidth") && Catch::Contains("unit"));
    const std::string latency = error_of(j, {"chip.fabric.latency=-1ns"});
    CHECK_THAT(latency, Catch::Contains("chip.fabric.latency"));
}
