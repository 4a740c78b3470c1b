// The collective engine's memo (docs/adr/0006): a busy period that starts again in the same state is
// replayed with the times and counters the simulation would give, and anything the record does not know
// stops the replay instead of being answered wrongly. Alike groups kept apart (docs/adr/0009) are simulated
// once with the same results, and whatever breaks their symmetry is a conflict.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <set>

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

// Runs `body` in a child process on trn2.48xlarge with the config `sets`, with one collective engine, its memo
// on (records named in `skip` aside) or off: `body` starts the traffic, runs the simulation and returns what
// it read. Stops the test case when the child failed.
json on_engine(bool memo, const std::vector<std::string>& sets,
               const std::function<json(hw::Cluster&, runtime::CollectiveEngine&)>& body,
               const std::set<std::string>& skip = {}) {
    const std::string out = testing::run_isolated([&] {
        init_systemc();
        const Config config = hw::resolve_cluster_config("trn2.48xlarge", {}, sets);
        hw::Cluster cluster("cluster", hw::ClusterSpec::from_config(config), config);
        runtime::CollectiveEngine engine(cluster);
        if (memo) engine.enable_memo(skip);
        return body(cluster, engine).dump();
    });
    INFO(out.substr(0, 400));
    REQUIRE(out.rfind("error:", 0) != 0);
    return json::parse(out);
}

enum class Extra { none, send_midway };

// Runs a 4 MiB ring all-reduce over 8 chips `times` times, one after the other with 10 us between, on one
// engine; with `extra`, the last time a point-to-point send starts halfway through it. Returns each
// run's duration (fs), the summed link bytes and busy time, the engine's memo counts and its conflict flag.
// With `load`, the chips' kernels take that share of their DMA engines' and memory's time from the start, for
// `load_us` (0: all along), telling the engine when they end unless `untold`; with `each`, from the start of
// every run for `load_us`, the engine's kernel lag of every chip read where it ends ("lags", per run).
json run_repeated(bool memo, int times, Extra extra, hw::KernelLoad load = {}, double load_us = 0, bool untold = false,
                  bool each = false) {
    // One collective stream per rank (one ring channel), so that every packet's DMA time is on the ring's
    // critical path and the DMA load shows.
    return on_engine(
        memo, {"cluster.topology=ring:8", "chip.cc_cores=1"},
        [&](hw::Cluster& cluster, runtime::CollectiveEngine& engine) {
            const runtime::RankLayout layout = engine.layout(engine.first_ranks(8));
            runtime::CollectiveRequest q;
            q.op = runtime::CollectiveOp::all_reduce;
            q.bytes = 4u << 20;
            const runtime::Schedule schedule = runtime::collective_algorithm("ring").build(q, layout);
            // A send from rank 0 to rank 4: one transfer of 1 MiB.
            const runtime::RankLayout pair = engine.layout({0, 4});
            runtime::Schedule send;
            send.transfers.push_back({0, 1, 1u << 20, false, {}});
            json durations = json::array();
            std::uint64_t lag_dma = 0, lag_memory = 0;  // the engine's kernel lags when the load ends, summed
            std::vector<int> chips;
            for (int c = 0; c < cluster.chips(); ++c) chips.push_back(c);
            json lags = json::array();
            if (!load.idle() && !each) {
                sc_core::sc_spawn([&] {
                    const auto until = static_cast<std::uint64_t>(load_us * 1e9);
                    engine.set_kernel_load(chips, load,
                                           load_us <= 0 || untold ? runtime::CollectiveEngine::k_never : until);
                    if (load_us <= 0) return;
                    sc_core::wait(sc_core::sc_time(load_us, sc_core::SC_US));
                    engine.set_kernel_load(chips, {});
                    for (const int c : chips) {
                        lag_dma += engine.kernel_lag(c).dma_fs;
                        lag_memory += engine.kernel_lag(c).memory_fs;
                    }
                });
            }
            sc_core::sc_spawn([&] {
                for (int k = 0; k < times; ++k) {
                    sc_core::sc_event done;
                    bool finished = false;
                    const std::uint64_t t0 = sc_core::sc_time_stamp().value();
                    if (each) engine.set_kernel_load(chips, load, t0 + static_cast<std::uint64_t>(load_us * 1e9));
                    engine.start(schedule, layout, [&](std::uint64_t) {
                        finished = true;
                        done.notify(sc_core::SC_ZERO_TIME);
                    });
                    if (each) {
                        sc_core::wait(sc_core::sc_time(load_us, sc_core::SC_US));
                        engine.set_kernel_load(chips, {});
                        json run = json::array();
                        for (const int c : chips)
                            run.push_back({engine.kernel_lag(c).dma_fs, engine.kernel_lag(c).memory_fs});
                        lags.push_back(run);
                    }
                    if (extra == Extra::send_midway && k == times - 1) {
                        sc_core::wait(sc_core::sc_time(20, sc_core::SC_US));
                        engine.start(send, pair, nullptr);
                    }
                    if (!finished) sc_core::wait(done);
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
            std::uint64_t received = 0, memory_bytes = 0, memory_busy = 0, fabric_bytes = 0, fabric_busy = 0,
                          dma_busy = 0, dma_lag = 0, memory_lag = 0;
            for (int c = 0; c < cluster.chips(); ++c) {
                const hw::ChipStats s = cluster.chip_stats(c);
                received += s.endpoint.bytes_received;
                memory_bytes += s.memory.read_bytes + s.memory.write_bytes;
                memory_busy += s.memory.busy_fs;
                fabric_bytes += s.fabric.bytes;
                fabric_busy += s.fabric.busy_fs;
                dma_busy += s.endpoint.dma_busy_fs;
                dma_lag += s.endpoint.kernel_lag_fs;
                memory_lag += s.memory.kernel_lag_fs;
            }
            return json{{"durations", durations},
                        {"memory_bytes", memory_bytes},
                        {"memory_busy", memory_busy},
                        {"fabric_bytes", fabric_bytes},
                        {"fabric_busy", fabric_busy},
                        {"link_bytes", bytes},
                        {"link_busy", busy},
                        {"received", received},
                        {"dma_busy", dma_busy},
                        {"dma_lag", dma_lag},
                        {"lags", lags},
                        {"memory_lag", memory_lag},
                        {"lag_at_load_end", {lag_dma, lag_memory}},
                        {"recorded", engine.memo_stats().recorded},
                        {"replayed", engine.memo_stats().replayed},
                        {"conflict", engine.memo_conflict()}};
        });
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
    const double half = run_repeated(false, 1, Extra::none, {0.5, 0})["durations"][0].get<double>();
    CHECK(half > alone * 1.05);
    CHECK(half < alone * 2);
    // Kernels that would keep the engines busy all the time still leave every other turn (round-robin):
    // the same as half.
    const double full = run_repeated(false, 1, Extra::none, {1.0, 0})["durations"][0].get<double>();
    CHECK(full == half);
    // A load for the first 50 us only: slower than alone, faster than loaded throughout.
    const double partial = run_repeated(false, 1, Extra::none, {0.75, 0}, 50)["durations"][0].get<double>();
    CHECK(partial > alone);
    CHECK(partial < half);
    // The memo records the load changes with the traffic: on and off agree.
    const json off = run_repeated(false, 3, Extra::none, {0.5, 0}, 300);
    const json on = run_repeated(true, 3, Extra::none, {0.5, 0}, 300);
    CHECK(on["durations"] == off["durations"]);
    CHECK(on["link_busy"] == off["link_busy"]);
    CHECK(on["memory_busy"] == off["memory_busy"]);
    CHECK(on["fabric_busy"] == off["fabric_busy"]);
}

TEST_CASE("kernels' memory load slows the collectives' memory accesses that share the chip memory",
          "[collective][hbm]") {
    const json alone = run_repeated(false, 1, Extra::none);
    // Kernels taking half the memory's time: every collective access occupies it twice as long (read/write
    // turnarounds aside, which more back-to-back accesses may add), so the memory is busier and the
    // collective no faster; its bytes do not change.
    const json half = run_repeated(false, 1, Extra::none, {0, 0.5});
    const auto busy = [](const json& j) { return j["memory_busy"].get<double>(); };
    CHECK(busy(half) > 1.5 * busy(alone));
    CHECK(half["memory_bytes"] == alone["memory_bytes"]);
    CHECK(half["durations"][0].get<double>() >= alone["durations"][0].get<double>());
    // The collectives keep every other turn: kernels that would take all of it leave what half leave (and
    // fall behind, where half do not: the next test case).
    json all = run_repeated(false, 1, Extra::none, {0, 1.0});
    CHECK(all["memory_lag"].get<double>() > 0);
    CHECK(half["memory_lag"] == 0);
    all["memory_lag"] = 0;
    CHECK(all == half);
    // Both loads together slow it more than either.
    const json both = run_repeated(false, 1, Extra::none, {0.5, 0.5});
    const json dma = run_repeated(false, 1, Extra::none, {0.5, 0});
    CHECK(both["durations"][0].get<double>() > dma["durations"][0].get<double>());
    CHECK(busy(both) > busy(dma));
    // The memo records the load changes with the traffic: on and off agree.
    const json off = run_repeated(false, 3, Extra::none, {0.25, 0.75}, 300);
    const json on = run_repeated(true, 3, Extra::none, {0.25, 0.75}, 300);
    CHECK(on["durations"] == off["durations"]);
    CHECK(on["memory_busy"] == off["memory_busy"]);
    CHECK(on["link_busy"] == off["link_busy"]);
}

TEST_CASE("kernels wanting more than the collectives leave them fall behind by what they lose, memo on or off",
          "[collective][dma][hbm]") {
    // Round-robin: a collective packet or request of own time b under kernels wanting u > 1/2 of the engines
    // (the memory) takes 2b, in which the kernels get b and wanted 2ub: they fall behind by (2u - 1) b / u.
    // Loads of 1/2, 3/4 and all of it give the collective the same turns (every other), so the same packets
    // and accesses: the kernels lose nothing at 1/2, and at 3/4 two thirds of what they lose at 1.
    const json half = run_repeated(false, 1, Extra::none, {0.5, 0.5});
    const json most = run_repeated(false, 1, Extra::none, {0.75, 0.75});
    const json all = run_repeated(false, 1, Extra::none, {1.0, 1.0});
    CHECK(half["durations"] == all["durations"]);
    CHECK(most["durations"] == all["durations"]);
    const auto lag = [](const json& j, const char* what) { return j[what].get<double>(); };
    for (const char* what : {"dma_lag", "memory_lag"}) {
        INFO(what);
        CHECK(lag(half, what) == 0);
        CHECK(lag(all, what) > 0);
        CHECK(lag(most, what) == Approx(lag(all, what) * 2 / 3).epsilon(1e-6));  // per-packet rounding
    }
    // At 1 the kernels lose all of every packet's and access's own time: half of its stretched occupancy,
    // which the rings and the memory count (the rings also while the memory holds a read back, the memory
    // with the read/write turnarounds of its drains, which nobody loses to the kernels).
    for (const auto& [what, busy] : {std::pair{"dma_lag", "dma_busy"}, std::pair{"memory_lag", "memory_busy"}}) {
        INFO(what);
        CHECK(lag(all, what) <= lag(all, busy) / 2 * (1 + 1e-6));  // each packet's lag and time rounded
        CHECK(lag(all, what) > lag(all, busy) / 2 * 0.9);
    }
    // Read where the load ends: the engine's lag (all of it, the load outlasting the collective) is the
    // chips' counters; and the same where the memo replays the second and third collective.
    const json lasting = run_repeated(false, 1, Extra::none, {0.75, 0.75}, 300);
    CHECK(lasting["lag_at_load_end"] == json::array({lag(most, "dma_lag"), lag(most, "memory_lag")}));
    const json off = run_repeated(false, 3, Extra::none, {0.75, 0.75}, 300);
    const json on = run_repeated(true, 3, Extra::none, {0.75, 0.75}, 300);
    CHECK(on["replayed"].get<int>() > 0);
    CHECK(on["lag_at_load_end"] == off["lag_at_load_end"]);
    CHECK(on["dma_lag"] == off["dma_lag"]);
    CHECK(on["memory_lag"] == off["memory_lag"]);
    CHECK(on["durations"] == off["durations"]);
    // The load from the start of every collective for 50 us: the load change inside each is an event of its
    // busy period, and where the second and third are replayed the lag read there, chip by chip, is the
    // record's.
    const json off_each = run_repeated(false, 3, Extra::none, {0.75, 0.75}, 50, false, true);
    const json on_each = run_repeated(true, 3, Extra::none, {0.75, 0.75}, 50, false, true);
    CHECK(on_each["replayed"] == 2);
    CHECK(on_each["lags"] == off_each["lags"]);
    CHECK(on_each["durations"] == off_each["durations"]);
    CHECK(on_each["dma_lag"] == off_each["dma_lag"]);
    CHECK(off_each["lags"][2][5][0].get<double>() > off_each["lags"][1][5][0].get<double>());  // it grows
}

namespace {

// Three rounds 300 us apart on the ring of 8 chips (one rank each): a 1 MiB send from chip 0 to chip 1, and
// 5 us later one from chip 1 to chip 2, which joins the first's busy period and claims chip 2, whose kernels
// take `loads[k]` of its memory's time in round k (from before the round to its end). Returns each round's
// duration (fs), chip 2's memory lag read where its load ends, the memo counts and the conflict.
json run_join(bool memo, const std::vector<double>& loads) {
    return on_engine(memo, {"cluster.topology=ring:8", "chip.cc_cores=1"},
                     [&](hw::Cluster& cluster, runtime::CollectiveEngine& engine) {
                         const runtime::RankLayout first = engine.layout({0, 1}), second = engine.layout({1, 2});
                         runtime::Schedule send;
                         send.transfers.push_back({0, 1, 1u << 20, false, {}});
                         json durations = json::array(), lags = json::array();
                         sc_core::sc_spawn([&] {
                             for (const double load : loads) {
                                 engine.set_kernel_load({2}, {0, load});
                                 sc_core::wait(sc_core::sc_time(10, sc_core::SC_US));
                                 const std::uint64_t t0 = sc_core::sc_time_stamp().value();
                                 int left = 2;
                                 sc_core::sc_event done;
                                 const auto finish = [&](std::uint64_t) {
                                     if (--left == 0) done.notify(sc_core::SC_ZERO_TIME);
                                 };
                                 engine.start(send, first, finish);
                                 sc_core::wait(sc_core::sc_time(5, sc_core::SC_US));
                                 engine.start(send, second, finish);
                                 sc_core::wait(done);
                                 durations.push_back(sc_core::sc_time_stamp().value() - t0);
                                 engine.set_kernel_load({2}, {});
                                 lags.push_back(engine.kernel_lag(2).memory_fs);
                                 sc_core::wait(sc_core::sc_time(300, sc_core::SC_US));
                             }
                         });
                         run_simulation();
                         return json{{"durations", durations},
                                     {"lags", lags},
                                     {"replayed", engine.memo_stats().replayed},
                                     {"conflict", engine.memo_conflict()}};
                     });
}

}  // namespace

TEST_CASE("traffic joining a replay starts on the chips it claims with the kernel load the record had",
          "[collective][memo]") {
    // The same load on chip 2 each round: the second and third rounds replay the first.
    const json off = run_join(false, {0.9, 0.9, 0.9});
    const json on = run_join(true, {0.9, 0.9, 0.9});
    CHECK(on["replayed"] == 2);
    CHECK_FALSE(on["conflict"].get<bool>());
    CHECK(on["durations"] == off["durations"]);
    CHECK(on["lags"] == off["lags"]);
    CHECK(off["lags"][0].get<double>() > 0);
    // A lighter load in the third round slows the second send less and costs the kernels less: the record
    // does not hold for it, and the replay stops as a conflict instead of answering with the record's.
    const json lighter_off = run_join(false, {0.9, 0.9, 0.6});
    CHECK(lighter_off["lags"][2].get<double>() - lighter_off["lags"][1].get<double>() <
          lighter_off["lags"][1].get<double>() - lighter_off["lags"][0].get<double>());
    const json lighter_on = run_join(true, {0.9, 0.9, 0.6});
    CHECK(lighter_on["conflict"].get<bool>());
}

TEST_CASE("a record is not replayed where a running kernel would end off the record", "[collective][memo]") {
    // The kernels' load lasts into the third run: the first run's record (the load all along) has no load
    // change, the third run would meet one halfway. Told when the kernels end, the engine simulates the third
    // run instead of replaying it; untold, the replay meets the change and stops as a conflict.
    const json timed = run_repeated(false, 3, Extra::none, {0.5, 0.5}, 1000);
    const auto& d = timed["durations"];
    const double load_us = (d[0].get<double>() + d[1].get<double>() + d[2].get<double>() / 2) * 1e-9 + 20;
    const json off = run_repeated(false, 3, Extra::none, {0.5, 0.5}, load_us);
    const json on = run_repeated(true, 3, Extra::none, {0.5, 0.5}, load_us);
    CHECK_FALSE(on["conflict"].get<bool>());
    CHECK(on["replayed"] == 1);  // the second run
    CHECK(on["durations"] == off["durations"]);
    CHECK(on["memory_busy"] == off["memory_busy"]);
    CHECK(on["link_busy"] == off["link_busy"]);
    CHECK(off["durations"][2].get<double>() < d[2].get<double>());  // the load ended during the third run
    const json untold = run_repeated(true, 3, Extra::none, {0.5, 0.5}, load_us, true);
    CHECK(untold["conflict"].get<bool>());
}

namespace {

enum class Break { none, across, load, symmetric_load };

// The ranks of each row of trn2.48xlarge's 4x4 torus, and an 8 MiB all-reduce of `algorithm` over each.
std::vector<runtime::RankLayout> row_layouts(const runtime::CollectiveEngine& engine) {
    std::vector<runtime::RankLayout> layouts;
    const int per = engine.ranks() / 4;
    for (int g = 0; g < 4; ++g) {
        std::vector<int> group;
        for (int r = 0; r < per; ++r) group.push_back(per * g + r);
        layouts.push_back(engine.layout(group));
    }
    return layouts;
}

std::vector<runtime::Schedule> row_all_reduces(const std::vector<runtime::RankLayout>& layouts,
                                               const std::string& algorithm) {
    runtime::CollectiveRequest q;
    q.op = runtime::CollectiveOp::all_reduce;
    q.bytes = 8u << 20;
    std::vector<runtime::Schedule> schedules;
    for (const auto& l : layouts) schedules.push_back(runtime::collective_algorithm(algorithm).build(q, l));
    return schedules;
}

// Every link's and every chip's counters.
json link_counters(hw::Cluster& cluster) {
    json links = json::array();
    for (const auto& l : cluster.topology().links())
        links.push_back({l.link->stats().bytes, l.link->stats().packets, l.link->stats().busy_fs});
    return links;
}

json chip_counters(hw::Cluster& cluster) {
    json chips = json::array();
    for (int c = 0; c < cluster.chips(); ++c) {
        const hw::ChipStats s = cluster.chip_stats(c);
        chips.push_back({s.endpoint.bytes_sent, s.endpoint.bytes_received, s.endpoint.bytes_reduced,
                         s.endpoint.packets_sent, s.endpoint.dma_busy_fs, s.memory.read_bytes, s.memory.write_bytes,
                         s.memory.busy_fs, s.fabric.bytes, s.fabric.busy_fs, s.endpoint.kernel_lag_fs,
                         s.memory.kernel_lag_fs});
    }
    return chips;
}

// Four 8 MiB all-reduces of `algorithm`, one per row of trn2.48xlarge's 4x4 torus (the ranks of 4 chips
// each; the ring order runs odd rows backwards, so those groups are mirror images of the first, not
// translations), started as one batch the caller calls `apart`. A ring maps every row onto the first; the
// recursive doubling-halving sends between chips two apart, whose routes (ties go the + way round) map an
// odd row onto the other odd row only. With `brk`, 30 us in, a transfer between the first and
// second rows (across: the parts no longer stay apart) or a DMA load on the first row only (load); or
// (symmetric_load) every chip's kernels loaded from the start until 30 us, the engine's kernel lag of every
// chip read there ("lags"). Returns each item's completion time (fs), every link's and every chip's
// counters, the memo counts and the conflict.
json run_rows(bool memo, Break brk = Break::none, const std::string& algorithm = "ring",
              const std::set<std::string>& skip = {}) {
    return on_engine(
        memo, {},
        [&](hw::Cluster& cluster, runtime::CollectiveEngine& engine) {
            const std::vector<runtime::RankLayout> layouts = row_layouts(engine);
            const std::vector<runtime::Schedule> schedules = row_all_reduces(layouts, algorithm);
            const int per = engine.ranks() / 4;
            const runtime::RankLayout pair = engine.layout({0, per});
            runtime::Schedule send;
            send.transfers.push_back({0, 1, 1u << 20, false, {}});
            json done = json::array({0, 0, 0, 0});
            json lags = json::array();
            std::vector<int> all;
            for (int c = 0; c < cluster.chips(); ++c) all.push_back(c);
            sc_core::sc_spawn([&] {
                if (brk == Break::symmetric_load) engine.set_kernel_load(all, {0.75, 0.75}, 30'000'000'000);
                std::vector<runtime::CollectiveEngine::BatchItem> batch;
                for (std::size_t g = 0; g < 4; ++g)
                    batch.push_back({&schedules[g], &layouts[g], [&, g](std::uint64_t fs) { done[g] = fs; }});
                engine.start_batch(std::move(batch), "rows", 0, true);
                sc_core::wait(sc_core::sc_time(30, sc_core::SC_US));
                if (brk == Break::across) engine.start(send, pair, nullptr);
                if (brk == Break::load) engine.set_kernel_load({0, 1, 2, 3}, {0.5, 0});
                if (brk == Break::symmetric_load) {
                    engine.set_kernel_load(all, {});
                    for (const int c : all)
                        lags.push_back({engine.kernel_lag(c).dma_fs, engine.kernel_lag(c).memory_fs});
                }
            });
            run_simulation();
            const json links = link_counters(cluster), chips = chip_counters(cluster);
            return json{{"done", done},
                        {"links", links},
                        {"chips", chips},
                        {"lags", lags},
                        {"mirrored", engine.memo_stats().mirrored},
                        {"followers", engine.memo_stats().followers},
                        {"conflict", engine.memo_conflict()},
                        {"conflict_key", engine.memo_conflict_key()}};
        },
        skip);
}

}  // namespace

TEST_CASE("alike groups kept apart are simulated once, with the times and counters of simulating all",
          "[collective][memo]") {
    const json off = run_rows(false);
    const json on = run_rows(true);
    CHECK(off["mirrored"] == 0);
    CHECK(on["mirrored"] == 1);
    CHECK(on["followers"] == 3);  // one row simulated
    CHECK_FALSE(on["conflict"].get<bool>());
    CHECK(on["done"] == off["done"]);
    CHECK(on["links"] == off["links"]);
    CHECK(on["chips"] == off["chips"]);
    // Every row moved bytes (the counters of the rows not simulated are the first row's, mapped).
    for (int c = 0; c < 16; ++c) CHECK(on["chips"][c][0].get<std::uint64_t>() > 0);
    // Two leaders (rows 0 and 1), each with a follower: the same times and counters.
    const json rdh_off = run_rows(false, Break::none, "rdh");
    const json rdh_on = run_rows(true, Break::none, "rdh");
    CHECK(rdh_on["mirrored"] == 1);
    CHECK(rdh_on["followers"] == 2);
    // A run told to mirror nothing (after too many mirror conflicts) simulates every row.
    const json none = run_rows(true, Break::none, "ring", {runtime::CollectiveEngine::k_no_mirror});
    CHECK(none["mirrored"] == 0);
    CHECK(none["done"] == off["done"]);
    CHECK(rdh_on["done"] == rdh_off["done"]);
    CHECK(rdh_on["links"] == rdh_off["links"]);
    CHECK(rdh_on["chips"] == rdh_off["chips"]);
    // Kernels on every chip until 30 us: the rows not simulated fall behind as their leader does, read where
    // the load ends (the chips' counters, kernel lags included, are compared above for the unloaded case).
    const json loaded_off = run_rows(false, Break::symmetric_load);
    const json loaded_on = run_rows(true, Break::symmetric_load);
    CHECK(loaded_on["mirrored"] == 1);
    CHECK_FALSE(loaded_on["conflict"].get<bool>());
    CHECK(loaded_on["lags"] == loaded_off["lags"]);
    CHECK(loaded_on["chips"] == loaded_off["chips"]);
    CHECK(loaded_on["done"] == loaded_off["done"]);
    for (int c = 0; c < 16; ++c) CHECK(loaded_off["lags"][c][0].get<std::uint64_t>() > 0);
}

TEST_CASE("traffic or a load change that breaks the symmetry of mirrored groups is a conflict", "[collective][memo]") {
    const json across = run_rows(true, Break::across);
    CHECK(across["conflict"].get<bool>());
    CHECK(across["conflict_key"].get<std::string>().rfind("mirror|", 0) == 0);
    const json load = run_rows(true, Break::load);
    CHECK(load["conflict"].get<bool>());
    CHECK(load["conflict_key"].get<std::string>().rfind("mirror|", 0) == 0);
    // Simulated in full, both finish.
    CHECK_FALSE(run_rows(false, Break::across)["conflict"].get<bool>());
}

namespace {

// The four rows' 8 MiB all-reduces of `algorithm` one after the other (each starts 10 us after the one
// before has finished), so each is a busy period of its own. Returns each one's duration (fs), every link's
// and chip's counters and the memo counts.
json run_rows_in_turn(bool memo, const std::string& algorithm) {
    return on_engine(memo, {}, [&](hw::Cluster& cluster, runtime::CollectiveEngine& engine) {
        const std::vector<runtime::RankLayout> layouts = row_layouts(engine);
        const std::vector<runtime::Schedule> schedules = row_all_reduces(layouts, algorithm);
        json durations = json::array();
        sc_core::sc_spawn([&] {
            for (std::size_t g = 0; g < 4; ++g) {
                sc_core::sc_event done;
                const std::uint64_t t0 = sc_core::sc_time_stamp().value();
                engine.start(schedules[g], layouts[g], [&](std::uint64_t) { done.notify(sc_core::SC_ZERO_TIME); });
                sc_core::wait(done);
                durations.push_back(sc_core::sc_time_stamp().value() - t0);
                sc_core::wait(sc_core::sc_time(10, sc_core::SC_US));
            }
        });
        run_simulation();
        const json links = link_counters(cluster), chips = chip_counters(cluster);
        return json{{"durations", durations},
                    {"links", links},
                    {"chips", chips},
                    {"recorded", engine.memo_stats().recorded},
                    {"replayed", engine.memo_stats().replayed},
                    {"conflict", engine.memo_conflict()}};
    });
}

}  // namespace

TEST_CASE("a record replays on the image of its traffic under a translation or reflection of the torus",
          "[collective][memo]") {
    // Ring: every row's traffic, hops included, is the first row's under a map of the torus (odd rows run
    // backwards: a reflection), so rows 1-3 replay row 0's record, with the times and counters of simulating.
    const json off = run_rows_in_turn(false, "ring");
    const json on = run_rows_in_turn(true, "ring");
    CHECK(on["recorded"] == 1);
    CHECK(on["replayed"] == 3);
    CHECK_FALSE(on["conflict"].get<bool>());
    CHECK(on["durations"] == off["durations"]);
    CHECK(on["links"] == off["links"]);
    CHECK(on["chips"] == off["chips"]);
    // Recursive doubling-halving sends between chips two apart, which go the + way round in every row: the
    // reflection maps the first row's hops onto - links, not the odd rows' actual routes, so the odd rows
    // have a record of their own (a translation maps row 1 onto row 3), and nothing replays wrongly.
    const json rdh_off = run_rows_in_turn(false, "rdh");
    const json rdh_on = run_rows_in_turn(true, "rdh");
    CHECK(rdh_on["recorded"] == 2);
    CHECK(rdh_on["replayed"] == 2);
    CHECK(rdh_on["durations"] == rdh_off["durations"]);
    CHECK(rdh_on["links"] == rdh_off["links"]);
    CHECK(rdh_on["chips"] == rdh_off["chips"]);
}

TEST_CASE("a torus's node maps are its translations and reflections, and keep every link's spec", "[collective]") {
    const std::string out = testing::run_isolated([] {
        init_systemc();
        const Config config = hw::resolve_cluster_config("trn2-ultraserver", {}, {});
        hw::Cluster cluster("cluster", hw::ClusterSpec::from_config(config), config);
        const hw::Topology& topo = cluster.topology();
        const auto& maps = topo.node_maps();
        json checks = json::object();
        checks["maps"] = maps.size();
        bool identity_first = true, bijective = true, specs = true, reflected_z = false;
        for (std::size_t c = 0; c < maps[0].chip.size(); ++c)
            identity_first = identity_first && maps[0].chip[c] == int(c);
        std::map<std::string, std::size_t> role_of;
        for (std::size_t i = 0; i < topo.links().size(); ++i)
            if (topo.link_node(i) == 0) role_of[topo.links()[i].name] = topo.link_role(i);
        for (const auto& m : maps) {
            std::set<int> chips(m.chip.begin(), m.chip.end());
            std::set<std::size_t> roles(m.role.begin(), m.role.end());
            bijective = bijective && chips.size() == m.chip.size() && roles.size() == m.role.size();
            for (std::size_t r = 0; r < m.role.size(); ++r) {
                const auto& a = topo.links()[topo.link_at(0, r)].link->spec();
                const auto& b = topo.links()[topo.link_at(0, m.role[r])].link->spec();
                specs = specs && a.bandwidth.bytes_per_s == b.bandwidth.bytes_per_s;
            }
            // The map z -> -z (no shift): chip 16 (z = 1) goes to chip 48 (z = 3), its z+ link to that chip's z-.
            if (m.chip[16] == 48 && m.chip[0] == 0 && m.chip[1] == 1 && m.chip[4] == 4)
                reflected_z = m.role[role_of.at("n0.c16.z+")] == role_of.at("n0.c48.z-");
        }
        checks["identity_first"] = identity_first;
        checks["bijective"] = bijective;
        checks["specs"] = specs;
        checks["reflected_z"] = reflected_z;
        // A switched node has only the identity.
        const Config sw = hw::resolve_cluster_config("trn3-ultraserver-64", {}, {});
        hw::Cluster switched("switched", hw::ClusterSpec::from_config(sw), sw);
        checks["switched_maps"] = switched.topology().node_maps().size();
        return checks.dump();
    });
    INFO(out);
    REQUIRE(out.rfind("error:", 0) != 0);
    const json j = json::parse(out);
    CHECK(j["maps"] == 64 * 8);  // 64 translations x 8 sets of reflected dimensions
    CHECK(j["identity_first"].get<bool>());
    CHECK(j["bijective"].get<bool>());
    CHECK(j["specs"].get<bool>());
    CHECK(j["reflected_z"].get<bool>());
    CHECK(j["switched_maps"] == 1);
}
