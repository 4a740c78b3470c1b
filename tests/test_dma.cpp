// DMA engines against closed forms, on the ideal memory.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/isolated.h"
#include "trnsim/core/sim_context.h"
#include "trnsim/hw/dma.h"
#include "trnsim/hw/ideal_memory.h"

using namespace trnsim;
using namespace trnsim::hw;

namespace {

struct Setup {
    double engine_bw = 20e9;      // B/s
    double descriptor_s = 10e-9;  // per chunk
    double transfer_latency_s = 1e-6;
    double memory_bw = 400e9;
    double memory_latency_s = 100e-9;
};

// Submits `transfers` at time 0 and returns each completion time in ns, plus stats.
nlohmann::json run(const Setup& s, const std::vector<DmaTransfer>& transfers) {
    return nlohmann::json::parse(testing::run_isolated([&] {
        init_systemc();
        IdealMemory memory("memory", IdealMemorySpec{Bandwidth{s.memory_bw}, Duration{s.memory_latency_s}});
        DmaSpec spec;
        spec.engines = 16;
        spec.queues = 4;
        spec.engine_bandwidth = Bandwidth{s.engine_bw};
        spec.descriptor_cost = Duration{s.descriptor_s};
        spec.transfer_latency = Duration{s.transfer_latency_s};
        DmaSubsystem dma("dma", spec, 128);
        dma.memory_port.bind(memory.socket);
        std::vector<double> done(transfers.size(), -1);
        sc_core::sc_spawn([&] {
            for (std::size_t i = 0; i < transfers.size(); ++i) {
                dma.submit(transfers[i], [&done, i](std::uint64_t fs) { done[i] = static_cast<double>(fs) * 1e-6; });
            }
        });
        sc_core::sc_start();
        return nlohmann::json{{"done_ns", done},
                              {"read_bytes", memory.stats().read_bytes},
                              {"write_bytes", memory.stats().write_bytes},
                              {"descriptors", dma.stats().descriptors}}
            .dump();
    }));
}

DmaTransfer load(int partitions, std::uint64_t bytes_per_partition, int queue = 0) {
    DmaTransfer t;
    t.queue = queue;
    t.partitions = partitions;
    t.bytes_per_partition = bytes_per_partition;
    return t;
}

}  // namespace

TEST_CASE("a transfer is split over 16 engines, 8 partitions each, and limited by the slower of engine and memory",
          "[dma]") {
    Setup s;
    // Engine bound: 16 engines x 20 GB/s = 320 GB/s < 400 GB/s memory.
    const auto j = run(s, {load(128, 4096)});
    const double part_bytes = 8 * 4096;
    const double engine_ns = 8 * 10 + part_bytes / 20.0;  // 8 chunks x 10 ns + bytes / (20 B/ns)
    CHECK(j["descriptors"] == 16);
    CHECK(j["read_bytes"] == 128 * 4096);
    CHECK(j["done_ns"][0].get<double>() == Approx(1000 + engine_ns).margin(1e-3));

    // Memory bound: 100 GB/s memory serves the 16 parts one after another, then its latency.
    s.memory_bw = 100e9;
    const auto m = run(s, {load(128, 4096)});
    CHECK(m["done_ns"][0].get<double>() == Approx(1000 + 16 * part_bytes / 100.0 + 100).margin(1e-3));
}

TEST_CASE("small partitions are overhead-bound: the descriptor cost dominates", "[dma]") {
    Setup s;
    const auto small = run(s, {load(128, 64)});
    const double per_part = 8 * 10 + 8 * 64 / 20.0;
    // The last part's data arrive after the memory served all 16 parts and its latency elapsed.
    const double memory_ns = 16 * 8 * 64 / 400.0 + 100;
    CHECK(small["done_ns"][0].get<double>() == Approx(1000 + std::max(per_part, memory_ns)).margin(1e-3));
    // Efficiency = bytes / (engine time x bandwidth): 64 B/partition is under half of the engine's rate.
    CHECK((8 * 64 / 20.0) / per_part < 0.5);
}

TEST_CASE("transfers on one queue run in order on each engine, and the fixed latency overlaps", "[dma]") {
    Setup s;
    s.memory_latency_s = 0;
    const auto j = run(s, {load(128, 4096), load(128, 4096), load(128, 4096)});
    const double engine_ns = 8 * 10 + 8 * 4096 / 20.0;
    for (int i = 0; i < 3; ++i) {
        INFO(i);
        CHECK(j["done_ns"][i].get<double>() == Approx(1000 + (i + 1) * engine_ns).margin(1e-3));
    }
}

TEST_CASE("a transfer touching few partitions uses few engines", "[dma]") {
    Setup s;
    const auto j = run(s, {load(8, 4096)});
    CHECK(j["descriptors"] == 1);
    CHECK(j["done_ns"][0].get<double>() == Approx(1000 + 8 * 10 + 8 * 4096 / 20.0).margin(1e-3));
}
