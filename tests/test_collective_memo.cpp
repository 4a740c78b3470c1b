// The collective engine's memo (docs/adr/0006): a busy period that starts again in the same state is
// replayed with the times and counters the simulation would give, and anything the record does not know
// stops the replay instead of being answered wrongly.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <systemc>

#include "support/isolated.h"
#include "trnsim/core/sim_context.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/hw/topology.h"
#include "trnsim/runtime/collective.h"
#include "trnsim/runtime/collective_engine.h"

using namespace trnsim;
using nlohmann::json;

namespace {

enum class Extra { none, send_midway };

// Runs a 4 MiB ring all-reduce over 8 chips `times` times, one after the other with 10 us between, on one
// engine; with `extra`, the last time a point-to-point send starts halfway through it. Returns each
// run's duration (fs), the summed link bytes and busy time, the engine's memo counts and its conflict flag.
// With `load`, the chips' kernels take that share of their DMA engines from the start, for `load_us` (0: all
// along).
json run_repeated(bool memo, int times, Extra extra, double load = 0, double load_us = 0) {
    const std::string out = testing::run_isolated([=] {
        init_systemc();
        const Config config = hw::resolve_cluster_config("trn2.48xlarge", {}, {"cluster.topology=ring:8"});
        hw::Cluster cluster("cluster", hw::ClusterSpec::from_config(config), config);
        runtime::CollectiveEngine engine(cluster);
        if (memo) engine.enable_memo();
        const runtime::RankLayout layout = engine.layout(engine.first_ranks(8));
        runtime::CollectiveRequest q;
        q.op = runtime::CollectiveOp::all_reduce;
        q.bytes = 4u << 20;
        q.dtype = DType::bf16;
        const runtime::Schedule schedule = runtime::collective_algorithm("ring").build(q, layout);
        // A send from rank 0 to rank 4: one transfer of 1 MiB.
        const runtime::RankLayout pair = engine.layout({0, 4});
        runtime::Schedule send;
        send.transfers.push_back({0, 1, 1u << 20, false, {}});
        json durations = json::array();
        std::vector<int> chips;
        for (int c = 0; c < cluster.chips(); ++c) chips.push_back(c);
        if (load > 0) {
            sc_core::sc_spawn([&] {
                engine.set_dma_load(chips, load);
                if (load_us <= 0) return;
                sc_core::wait(sc_core::sc_time(load_us, sc_core::SC_US));
                engine.set_dma_load(chips, 0);
            });
        }
        sc_core::sc_spawn([&] {
            for (int k = 0; k < times; ++k) {
                sc_core::sc_event done;
                const std::uint64_t t0 = sc_core::sc_time_stamp().value();
                engine.start(schedule, layout, DType::bf16, [&](std::uint64_t) { done.notify(sc_core::SC_ZERO_TIME); });
                if (extra == Extra::send_midway && k == times - 1) {
                    sc_core::wait(sc_core::sc_time(20, sc_core::SC_US));
                    engine.start(send, pair, DType::bf16, nullptr);
                }
                sc_core::wait(done);
                durations.push_back(sc_core::sc_time_stamp().value() - t0);
                sc_core::wait(sc_core::sc_time(10, sc_core::SC_US));
            }
        });
        run_simulation();
        std::uint64_t bytes = 0, busy = 0;
        for (const auto& l : cluster.topology().links()) {
            bytes += l.link->stats().bytes;
            busy += l.link->stats().busy_fs;
        }
        std::uint64_t received = 0, memory_bytes = 0, memory_busy = 0, fabric_bytes = 0, fabric_busy = 0;
        for (int c = 0; c < cluster.chips(); ++c) {
            const hw::ChipStats s = cluster.chip_stats(c);
            received += s.endpoint.bytes_received;
            memory_bytes += s.memory.read_bytes + s.memory.write_bytes;
            memory_busy += s.memory.busy_fs;
            fabric_bytes += s.fabric.bytes;
            fabric_busy += s.fabric.busy_fs;
        }
        return json{{"durations", durations},
                    {"memory_bytes", memory_bytes},
                    {"memory_busy", memory_busy},
                    {"fabric_bytes", fabric_bytes},
                    {"fabric_busy", fabric_busy},
                    {"link_bytes", bytes},
                    {"link_busy", busy},
                    {"received", received},
                    {"recorded", engine.memo_stats().recorded},
                    {"replayed", engine.memo_stats().replayed},
                    {"conflict", engine.memo_conflict()}}
            .dump();
    });
    INFO(out);
    REQUIRE(out.rfind("error:", 0) != 0);
    return json::parse(out);
}

}  // namespace

TEST_CASE("a collective that starts again on the idle network is replayed with the simulated times and counters",
          "[collective][memo]") {
    const json off = run_repeated(false, 3, Extra::none);
    const json on = run_repeated(true, 3, Extra::none);
    CHECK(off["replayed"] == 0);
    CHECK(on["recorded"] == 1);
    CHECK(on["replayed"] == 2);
    CHECK_FALSE(on["conflict"].get<bool>());
    CHECK(on["durations"] == off["durations"]);
    CHECK(on["link_bytes"] == off["link_bytes"]);
    CHECK(on["link_busy"] == off["link_busy"]);
    CHECK(on["received"] == off["received"]);
    // The chips' memories and fabrics (cluster.memory_model hbm, the default) are replayed too.
    CHECK(on["memory_bytes"] == off["memory_bytes"]);
    CHECK(on["memory_busy"] == off["memory_busy"]);
    CHECK(on["fabric_bytes"] == off["fabric_bytes"]);
    CHECK(on["fabric_busy"] == off["fabric_busy"]);
    CHECK(off["memory_busy"].get<std::uint64_t>() > 0);
    // Each run moved the same bytes: the replayed ones added what the simulated one did.
    const auto& d = on["durations"];
    CHECK(d[0] == d[1]);
    CHECK(on["received"].get<std::uint64_t>() % 3 == 0);
}

TEST_CASE("traffic the record does not know stops a replay as a conflict", "[collective][memo]") {
    const json on = run_repeated(true, 2, Extra::send_midway);
    CHECK(on["recorded"] == 1);
    CHECK(on["replayed"] == 1);
    CHECK(on["conflict"].get<bool>());
    // Simulated in full (no memo), the send slows the second all-reduce down.
    const json off = run_repeated(false, 2, Extra::send_midway);
    CHECK_FALSE(off["conflict"].get<bool>());
    CHECK(off["durations"][1].get<std::uint64_t>() > off["durations"][0].get<std::uint64_t>());
}

TEST_CASE("kernels' DMA load slows the collectives that share the engines", "[collective][dma]") {
    const double alone = run_repeated(false, 1, Extra::none)["durations"][0].get<double>();
    // Half the engines' time taken: every packet's DMA time doubles, so the collective is slower, but by
    // less than 2x (links and latencies do not slow down).
    const double half = run_repeated(false, 1, Extra::none, 0.5)["durations"][0].get<double>();
    CHECK(half > alone * 1.05);
    CHECK(half < alone * 2);
    // Kernels that would keep the engines busy all the time still leave every other turn (round-robin):
    // the same as half.
    const double full = run_repeated(false, 1, Extra::none, 1.0)["durations"][0].get<double>();
    CHECK(full == half);
    // A load for the first 50 us only: slower than alone, faster than loaded throughout.
    const double partial = run_repeated(false, 1, Extra::none, 0.75, 50)["durations"][0].get<double>();
    CHECK(partial > alone);
    CHECK(partial < half);
    // The memo records the load changes with the traffic: on and off agree.
    const json off = run_repeated(false, 3, Extra::none, 0.5, 300);
    const json on = run_repeated(true, 3, Extra::none, 0.5, 300);
    CHECK(on["durations"] == off["durations"]);
    CHECK(on["link_busy"] == off["link_busy"]);
    CHECK(on["memory_busy"] == off["memory_busy"]);
    CHECK(on["fabric_busy"] == off["fabric_busy"]);
}
