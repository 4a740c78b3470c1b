// Collectives on the link models against the alpha-beta closed forms of reference/collectives.md,
// contention, conservation of bytes, and `auto`'s choices over a size sweep.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "support/isolated.h"
#include "trnsim/core/error.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/report/collective_report.h"
#include "trnsim/runtime/collective_runner.h"

using namespace trnsim;
using nlohmann::json;
using runtime::CollectiveJob;
using runtime::CollectiveOp;

namespace {

// Memory (the ideal model), on-chip fabric and DMA much faster than the links, so only the
// links and the fixed costs show: alpha = the DMA transfer latency (chip.core.dma.transfer_latency, 1.3 us) +
// the route's hop latencies.
std::vector<std::string> fast_chip(std::vector<std::string> extra) {
    std::vector<std::string> o = {"chip.cc_cores=1",  // one channel per ring: the closed forms below
                                  "chip.core.dma.engine_bandwidth=500TB/s",
                                  "chip.core.dma.descriptor_cost=0ns",
                                  "cluster.memory_model=ideal",
                                  "chip.memory.bandwidth=5000TB/s",
                                  "chip.memory.ideal.latency=0ns",
                                  "chip.fabric.bandwidth=5000TB/s",
                                  "chip.fabric.latency=0ns"};
    o.insert(o.end(), extra.begin(), extra.end());
    return o;
}

const double k_dma = 1.3e-6;

json batch_json(const runtime::BatchResult& b) {
    json j;
    j["time_s"] = b.time_s;
    j["link_bytes"] = b.link_bytes;
    j["delivered"] = b.bytes_delivered;
    j["reduced"] = b.bytes_reduced;
    j["used"] = b.links.used;
    j["util_max"] = b.links.utilization_max;
    j["jobs"] = json::array();
    for (const auto& r : b.jobs) {
        j["jobs"].push_back({{"time_s", r.time_s},
                             {"algorithm", r.algorithm},
                             {"steps", r.steps},
                             {"transfer_bytes", r.transfer_bytes},
                             {"busbw", r.busbw_gbps},
                             {"algbw", r.algbw_gbps}});
    }
    return j;
}

// Runs batches in one simulation (in a child process); returns one JSON object per batch.
json run(const std::vector<std::vector<CollectiveJob>>& batches, const std::vector<std::string>& overrides,
         const std::string& cluster = "trn2.48xlarge") {
    const std::string out = testing::run_isolated([&] {
        const Config c = hw::resolve_cluster_config(cluster, {}, overrides);
        const auto r = runtime::run_collective_batches(batches, c);
        json j = json::array();
        for (const auto& b : r.batches) j.push_back(batch_json(b));
        return j.dump();
    });
    INFO(out.substr(0, 400));
    REQUIRE(out.rfind("error:", 0) != 0);
    return json::parse(out);
}

// The error message of running one job, or "" when it runs.
std::string error_of(const CollectiveJob& job, const std::vector<std::string>& overrides,
                     const std::string& cluster = "trn2.48xlarge") {
    return testing::run_isolated([&] {
        try {
            const Config c = hw::resolve_cluster_config(cluster, {}, overrides);
            (void)runtime::run_collective_batches({{job}}, c);
        } catch (const UserError& e) {
            return std::string(e.what());
        }
        return std::string();
    });
}

CollectiveJob job(CollectiveOp op, std::uint64_t bytes, const std::string& algorithm, int ranks = 0) {
    CollectiveJob j;
    j.op = op;
    j.bytes = bytes;
    j.algorithm = algorithm;
    j.ranks = ranks;
    return j;
}

double time_of(const json& batches, std::size_t b = 0, std::size_t k = 0) {
    return batches[b]["jobs"][k]["time_s"].get<double>();
}

const double k_B = 100.0 * (1ull << 30);  // 100 GiB/s
const double k_lat = 500e-9;

}  // namespace

TEST_CASE("ring all-reduce on a ring of p chips takes 2(p-1) alpha + 2(p-1)/p N/B", "[collective]") {
    for (int p : {4, 8}) {
        for (std::uint64_t n : {64ull << 10, 64ull << 20}) {
            INFO("p = " << p << ", N = " << n);
            const json r = run({{job(CollectiveOp::all_reduce, n, "ring")}},
                               fast_chip({fmt::format("cluster.topology=ring:{}", p), "cluster.link.bandwidth=100GiB/s",
                                          "cluster.link.latency=500ns"}));
            const double alpha = k_dma + k_lat;
            const double expect = 2 * (p - 1) * alpha + 2.0 * (p - 1) / p * static_cast<double>(n) / k_B;
            CHECK(time_of(r) == Approx(expect).epsilon(0.01));
            CHECK(r[0]["jobs"][0]["steps"].get<int>() == 2 * (p - 1));
        }
    }
}

TEST_CASE("ring-bidir halves the bandwidth term: 2(p-1) alpha + (p-1)/p N/B", "[collective]") {
    const int p = 8;
    const std::uint64_t n = 64ull << 20;
    const json r =
        run({{job(CollectiveOp::all_reduce, n, "ring-bidir")}},
            fast_chip({"cluster.topology=ring:8", "cluster.link.bandwidth=100GiB/s", "cluster.link.latency=500ns"}));
    const double expect = 2 * (p - 1) * (k_dma + k_lat) + 1.0 * (p - 1) / p * static_cast<double>(n) / k_B;
    CHECK(time_of(r) == Approx(expect).epsilon(0.01));
}

TEST_CASE("a rank's CC-Cores run a ring as independent channels: the same bytes, the fixed costs overlapped",
          "[collective]") {
    // The schedule: c channels, each a ring over its part of the buffer (ring-bidir: half of them each way),
    // every send after exactly the one transfer it forwards or reduces: the same channel's, one step earlier,
    // from the rank behind it in that channel's direction. Transfers are emitted step by step, channel by
    // channel, rank by rank.
    const int p = 8, c = 4;
    runtime::RankLayout l;
    l.ranks = p;
    l.channels = c;
    const std::uint64_t odd = (64ull << 20) + 5;  // not a multiple of the chunks
    for (const std::string algorithm : {"ring", "ring-bidir"}) {
        for (const auto op : {CollectiveOp::reduce_scatter, CollectiveOp::all_gather, CollectiveOp::all_reduce}) {
            runtime::CollectiveRequest q;
            q.op = op;
            q.bytes = odd;
            const runtime::Schedule s = runtime::collective_algorithm(algorithm).build(q, l);
            const int phases = op == CollectiveOp::all_reduce ? 2 : 1;
            INFO(algorithm << " " << runtime::op_name(op));
            REQUIRE(s.transfers.size() == static_cast<std::size_t>(phases * (p - 1) * c * p));
            std::uint64_t sent = 0;
            std::vector<std::uint64_t> per_channel(c, 0);
            for (std::size_t k = 0; k < s.transfers.size(); ++k) {
                const auto& t = s.transfers[k];
                const int step = static_cast<int>(k) / (c * p), ch = static_cast<int>(k) / p % c,
                          i = static_cast<int>(k) % p;
                const int dir = algorithm == "ring-bidir" && ch >= c / 2 ? -1 : 1;
                CHECK(t.src == i);
                CHECK(t.dst == (i + dir + p) % p);
                sent += t.bytes;
                per_channel[static_cast<std::size_t>(ch)] += t.bytes;
                if (step == 0) {
                    CHECK(t.deps.empty());
                } else {
                    REQUIRE(t.deps.size() == 1);
                    CHECK(t.deps[0] == (step - 1) * c * p + ch * p + (i - dir + p) % p);
                }
            }
            // Every step moves each channel's whole part once (p chunks, one per rank): (p - 1) parts per phase.
            CHECK(sent == static_cast<std::uint64_t>(phases * (p - 1)) * odd);
            for (int ch = 0; ch < c; ++ch) {
                const std::uint64_t part = odd / c + (static_cast<std::uint64_t>(ch) < odd % c ? 1 : 0);
                CHECK(per_channel[static_cast<std::size_t>(ch)] == static_cast<std::uint64_t>(phases * (p - 1)) * part);
            }
        }
    }

    // On the links: the same bytes as one channel; no slower, since a channel's per-step fixed cost (alpha)
    // overlaps the other channels' data; never faster than the bandwidth term.
    const std::uint64_t n = 64ull << 20;
    const auto with = [&](int cc) {
        std::vector<std::string> o =
            fast_chip({"cluster.topology=ring:8", "cluster.link.bandwidth=100GiB/s", "cluster.link.latency=500ns"});
        o.push_back(fmt::format("chip.cc_cores={}", cc));
        return run({{job(CollectiveOp::all_reduce, n, "ring")}}, o);
    };
    const json one = with(1), four = with(4);
    CHECK(four[0]["link_bytes"] == one[0]["link_bytes"]);
    const double bandwidth_term = 2.0 * (p - 1) / p * static_cast<double>(n) / k_B;
    CHECK(time_of(one) == Approx(2 * (p - 1) * (k_dma + k_lat) + bandwidth_term).epsilon(0.01));
    CHECK(time_of(four) < time_of(one));
    CHECK(time_of(four) > bandwidth_term);
}

TEST_CASE("rdh all-reduce on the 4x4 torus (the 4-cube) takes 2 log2(p) alpha + 2(p-1)/p N/B", "[collective]") {
    for (std::uint64_t n : {1ull << 20, 64ull << 20}) {
        INFO("N = " << n);
        const json r = run({{job(CollectiveOp::all_reduce, n, "rdh")}},
                           fast_chip({"cluster.link.bandwidth=100GiB/s", "cluster.link.latency=500ns"}));
        const double expect = 2 * 4 * (k_dma + k_lat) + 2.0 * 15 / 16 * static_cast<double>(n) / k_B;
        CHECK(time_of(r) == Approx(expect).epsilon(0.01));
        CHECK(r[0]["jobs"][0]["steps"].get<int>() == 8);
    }
}

TEST_CASE("rdh with two ranks per chip on the 4x4 torus exchanges on the chip first, then as the 4-cube",
          "[collective]") {
    // The ranks of a chip take the highest hypercube bit: halving's first exchange (N/2) stays on the chip
    // (alpha = the DMA latency only, the memory being fast), then both ranks of a chip send their halves to the
    // same neighbour: 2 (N/4 + N/8 + N/16 + N/32) = 15/16 N over each step's link, as with one rank per chip.
    const std::uint64_t n = 64ull << 20;
    const json r =
        run({{job(CollectiveOp::all_reduce, n, "rdh", 32)}},
            fast_chip({"cluster.ranks_per_chip=2", "cluster.link.bandwidth=100GiB/s", "cluster.link.latency=500ns"}));
    const double bandwidth = 2.0 * 15 / 16 * static_cast<double>(n) / k_B;
    const double closed = 2 * k_dma + 2 * 4 * (k_dma + k_lat) + bandwidth;
    // Transfers wait only for the data they forward, not for a whole step, so steps on different links overlap
    // a little.
    CHECK(time_of(r) >= 0.99 * bandwidth);
    CHECK(time_of(r) <= closed * 1.0001);
    CHECK(r[0]["jobs"][0]["steps"].get<int>() == 10);
    // The busiest link carries the first torus exchange of both ranks, halving and doubling: 2 (N/4 + N/4)
    // (with the chip's ranks in the lowest bits it would be 2 (N/2 + N/2)).
    CHECK(r[0]["util_max"].get<double>() * time_of(r) * k_B == Approx(static_cast<double>(n)).epsilon(0.001));
}

TEST_CASE("rdh on a ring of 8 shares links (partners 4 and 2 hops away) and is slower than its closed form",
          "[collective]") {
    const std::uint64_t n = 64ull << 20;
    const json r =
        run({{job(CollectiveOp::all_reduce, n, "rdh")}},
            fast_chip({"cluster.topology=ring:8", "cluster.link.bandwidth=100GiB/s", "cluster.link.latency=500ns"}));
    const double closed = 2 * 3 * (k_dma + k_lat) + 2.0 * 7 / 8 * static_cast<double>(n) / k_B;
    CHECK(time_of(r) > 1.2 * closed);
}

TEST_CASE("mesh all-reduce on fully connected chips takes 2 alpha + 2 (N/p) / B", "[collective]") {
    const int p = 8;
    for (std::uint64_t n : {64ull << 10, 64ull << 20}) {
        INFO("N = " << n);
        const json r = run(
            {{job(CollectiveOp::all_reduce, n, "mesh")}},
            fast_chip({"cluster.topology=full:8", "cluster.link.bandwidth=100GiB/s", "cluster.link.latency=500ns"}));
        const double expect = 2 * (k_dma + k_lat) + 2.0 * static_cast<double>(n) / p / k_B;
        CHECK(time_of(r) == Approx(expect).epsilon(0.01));
    }
}

TEST_CASE("a step with several arrivals at a rank ends in one join, which each of its next transfers waits for",
          "[collective]") {
    // Mesh all-reduce over p ranks: p (p - 1) reduce-scatter transfers, then a join per rank of the p - 1
    // it received, then p (p - 1) all-gather transfers each depending on its sender's join alone, then a
    // join per rank of the all-gather's arrivals: 3 p (p - 1) dependencies, where every all-gather transfer
    // listing its sender's arrivals would make p (p - 1)^2 (16.6 M for p = 256).
    const int p = 8;
    runtime::RankLayout l;
    l.ranks = p;
    runtime::CollectiveRequest q;
    q.op = CollectiveOp::all_reduce;
    q.bytes = 1 << 20;
    const runtime::Schedule s = runtime::collective_algorithm("mesh").build(q, l);
    CHECK(s.messages() == static_cast<std::size_t>(2 * p * (p - 1)));
    REQUIRE(s.transfers.size() == static_cast<std::size_t>(2 * p * (p - 1) + 2 * p));
    std::size_t deps = 0;
    for (const auto& t : s.transfers) deps += t.deps.size();
    CHECK(deps == static_cast<std::size_t>(3 * p * (p - 1)));
    std::map<int, int> join_of;  // rank -> its reduce-scatter join
    for (std::size_t i = 0; i < s.transfers.size(); ++i) {
        const auto& t = s.transfers[i];
        if (!t.join) {
            CHECK(t.bytes > 0);
            if (t.deps.empty()) continue;  // the reduce-scatter
            REQUIRE(t.deps.size() == 1);
            CHECK(t.deps[0] == join_of.at(t.src));
            continue;
        }
        CHECK(t.src == t.dst);
        CHECK(t.bytes == 0);
        REQUIRE(t.deps.size() == static_cast<std::size_t>(p - 1));
        for (int d : t.deps) CHECK(s.transfers[static_cast<std::size_t>(d)].dst == t.src);
        if (!join_of.count(t.src)) join_of[t.src] = static_cast<int>(i);
    }
    CHECK(join_of.size() == static_cast<std::size_t>(p));
}

TEST_CASE("mesh all-reduce through one switch: each hop is two links, each port carries (p-1)/p N per phase",
          "[collective]") {
    const int p = 8;
    const std::uint64_t n = 64ull << 20;
    const json r = run({{job(CollectiveOp::all_reduce, n, "mesh")}},
                       fast_chip({"cluster.topology=switch:8", "cluster.switch.l1.port_bandwidth=100GiB/s",
                                  "cluster.switch.l1.latency=200ns", "cluster.link.latency=500ns"}));
    const double expect = 2 * (k_dma + k_lat + 200e-9) + 2.0 * (p - 1) / p * static_cast<double>(n) / k_B;
    CHECK(time_of(r) == Approx(expect).epsilon(0.01));
}

TEST_CASE("torus2d all-reduce on an a x b torus matches the hierarchical 2D closed form", "[collective]") {
    for (auto [a, b] : {std::pair{4, 4}, std::pair{4, 2}}) {
        INFO(a << "x" << b);
        const std::uint64_t n = 64ull << 20;
        const json r = run({{job(CollectiveOp::all_reduce, n, "torus2d")}},
                           fast_chip({fmt::format("cluster.topology=torus2d:{}x{}", a, b),
                                      "cluster.link.bandwidth=100GiB/s", "cluster.link.latency=500ns"}));
        const double alpha = k_dma + k_lat, N = static_cast<double>(n);
        const double expect =
            2 * (a - 1) * alpha + 2.0 * (a - 1) / a * N / k_B + 2 * (b - 1) * alpha + 2.0 * (b - 1) / b * (N / a) / k_B;
        CHECK(time_of(r) == Approx(expect).epsilon(0.01));
    }
}

TEST_CASE("hierarchical all-reduce over 2 nodes: ring inside each node, ring over EFA between them", "[collective]") {
    const std::uint64_t n = 64ull << 20;
    const json r =
        run({{job(CollectiveOp::all_reduce, n, "hierarchical")}},
            fast_chip({"cluster.topology=ring:4", "cluster.nodes=2", "cluster.link.bandwidth=100GiB/s",
                       "cluster.link.latency=500ns", "cluster.efa.bandwidth=25GB/s", "cluster.efa.latency=15us"}));
    const double a = 4, b = 2, N = static_cast<double>(n);
    const double expect = 2 * (a - 1) * (k_dma + k_lat) + 2 * (a - 1) / a * N / k_B + 2 * (b - 1) * (k_dma + 15e-6) +
                          2 * (b - 1) / b * (N / a) / 25e9;
    CHECK(time_of(r) == Approx(expect).epsilon(0.01));
}

TEST_CASE("auto takes the hierarchical algorithm for every rank of several nodes at any size, by size within a node",
          "[collective]") {
    // "Multi-rank-per-node uses a Hierarchical framework" [CC-INTER]: a 4-byte all-reduce over 1024 ranks as a
    // one-step mesh would be 10^6 transfers.
    const json r = run({{job(CollectiveOp::all_reduce, 4, "auto")},
                        {job(CollectiveOp::all_reduce, 64ull << 20, "auto")},
                        {job(CollectiveOp::all_reduce, 4, "auto", 16)}},
                       {"cluster.nodes=2"});
    CHECK(r[0]["jobs"][0]["algorithm"] == "hierarchical");
    CHECK(r[1]["jobs"][0]["algorithm"] == "hierarchical");
    CHECK(r[2]["jobs"][0]["algorithm"] == "mesh");  // the first 16 ranks, all on the first node
}

TEST_CASE("the ring's time follows the closed form with the reduction exposed when the DMA reduction is slow",
          "[collective]") {
    // The receiving chip's DMA rings add each packet into the local data at chip.core.dma.reduce_rate of their
    // copy rate [NKI-ARCH3]. One ring per chip (trn1, chip.cores = 1) of 16 engines x 500 TB/s = 8000 TB/s;
    // at a rate of 1e-6, 8 GB/s: a 64 KiB packet takes 8.192 us to reduce (8 ns to send), the link
    // (100 GiB/s) 0.6104 us. Each step's 2 MiB chunk = 32 packets arrive at the link's pace and queue at the
    // ring: the step ends 32 reductions after the first packet instead of 32 link times after it.
    const std::uint64_t n = 8ull << 20;
    const auto with = [&](const std::string& rate) {
        return run({{job(CollectiveOp::reduce_scatter, n, "ring")}},
                   fast_chip({"cluster.topology=ring:4", "cluster.link.bandwidth=100GiB/s", "chip.cores=1",
                              "chip.core.dma.reduce_rate=" + rate}),
                   "trn1.32xlarge");
    };
    const json fast = with("1"), slow = with("1e-6");
    const double reduce = 65536 / 8e9, link = 65536 / (100.0 * (1ull << 30));
    CHECK(time_of(slow) == Approx(time_of(fast) + 3 * (32 * reduce - 31 * link)).epsilon(0.002));
    // 3 steps, each rank reducing a 2 MiB chunk.
    CHECK(slow[0]["reduced"] == 3 * 4 * (2 << 20));
    CHECK(fast[0]["reduced"] == 3 * 4 * (2 << 20));
}

TEST_CASE(
    "a channel's sends and reductions share its CC-Core's DMA ring, never idle, and channels spread over the rings",
    "[collective]") {
    // Two chips, one rank each, a reduce-scatter of 8 MiB: each chip sends 4 MiB (64 packets) and reduces the
    // 4 MiB it receives, split over k channels. DMA rings of 16 engines x 1 GB/s, reducing at the copy rate:
    // 4.096 us per packet either way, slower than the link (0.61 us). Channel i sends and reduces on the
    // rank's ring i mod c (c cores), which serves its sends and its reductions round-robin, never idle: with
    // k channels over c rings, alpha + 128 / min(k, c) packet times (+ ~1 us: the last reduction). A channel
    // does not use another ring, however many the rank has.
    // (Any order that keeps the rings busy gives this time; the round-robin order itself is not observed.)
    const std::uint64_t n = 8ull << 20;
    const double packet = 65536 / 16e9;
    for (int cores : {1, 2, 4, 8}) {
        for (int channels : {1, cores, 2 * cores}) {
            if (channels > 4) continue;  // 8 packets a channel: the last reduction would be 3% of the time
            const json r = run(
                {{job(CollectiveOp::reduce_scatter, n, "ring")}},
                fast_chip({"cluster.topology=ring:2", "cluster.link.bandwidth=100GiB/s", "cluster.link.latency=500ns",
                           fmt::format("chip.cores={}", cores), fmt::format("chip.cc_cores={}", channels),
                           "chip.core.dma.engine_bandwidth=1GB/s", "chip.core.dma.reduce_rate=1"}),
                "trn1.32xlarge");
            INFO("cores " << cores << " channels " << channels);
            CHECK(time_of(r) == Approx(k_dma + 128.0 / std::min(channels, cores) * packet).epsilon(0.005));
            CHECK(r[0]["reduced"] == 2 * (4 << 20));
        }
    }
}

TEST_CASE("transfers without a channel (the ring algorithm's all-to-all) take the rank's rings in turn",
          "[collective]") {
    // Four chips, one rank each, two all-to-alls of 8 MiB per rank at once over `ring` (no channels: shifted
    // exchanges of 2 MiB blocks, one per rank and step in each): with DMA rings of 16 engines x 1 GB/s the
    // rings bound them, so with two rings (two cores) a rank's two messages of a step move side by side and
    // take about half the time they take on one.
    const auto time = [](int cores) {
        const auto a = job(CollectiveOp::all_to_all, 8ull << 20, "ring");
        return time_of(run({{a, a}},
                           fast_chip({"cluster.topology=ring:4", "cluster.link.bandwidth=100GiB/s",
                                      fmt::format("chip.cores={}", cores), "chip.core.dma.engine_bandwidth=1GB/s"}),
                           "trn1.32xlarge"),
                       0, 1);
    };
    const double one = time(1), two = time(2);
    CHECK(two < 0.6 * one);
    CHECK(two > 0.45 * one);
}

namespace {

// The collective-stream tests' jobs: two send-recvs of 8 MiB per rank (each rank sends to the next), on
// stream 0 and on stream 1; and their cluster: four chips of one core, one rank each, whose one DMA ring
// (16 engines x 1 GB/s) bounds both, the links (100 GiB/s) and the memory (ideal) not.
const std::uint64_t k_stream_bytes = 8ull << 20;
std::pair<CollectiveJob, CollectiveJob> stream_jobs() {
    auto a = job(CollectiveOp::send_recv, k_stream_bytes, "ring");
    auto b = a;
    b.stream = 1;
    return {a, b};
}
std::vector<std::string> ring_bound(const std::vector<std::string>& extra) {
    std::vector<std::string> o = {"cluster.topology=ring:4", "cluster.link.bandwidth=100GiB/s", "chip.cores=1",
                                  "chip.core.dma.engine_bandwidth=1GB/s", "cluster.memory_model=ideal"};
    o.insert(o.end(), extra.begin(), extra.end());
    return fast_chip(o);
}

}  // namespace

TEST_CASE("a DMA ring shares its turns between collective streams in proportion to their packet sizes",
          "[collective]") {
    // Four chips of one core, one rank each, two send-recvs of 8 MiB per rank at once (each rank sends to
    // the next): every chip's one DMA ring (16 engines x 1 GB/s) bounds both, the links (100 GiB/s) and
    // the memory do not. The engines switch queues at packet boundaries [CC-OVERLAP]: with the
    // data-parallel stream's packets 1/16 of the other's, the stream-0 transfer gets 16 of every 17 bytes
    // the ring moves while both run and ends after 17/16 of its time alone; the stream-1 transfer gets the
    // rest and ends when the ring has moved both. With equal packets they share the ring half and half.
    const std::uint64_t n = k_stream_bytes;
    const auto [a, b] = stream_jobs();
    const auto with = ring_bound;
    const json r = run({{a}, {a, b}}, with({"cluster.cc.packet=64KiB", "cluster.cc.dp_packet=4KiB"}), "trn1.32xlarge");
    const double alone = time_of(r, 0);
    const double fixed = k_dma;  // before the first packet moves
    const double move = alone - fixed;
    CHECK(move == Approx(n / 16e9).epsilon(0.02));
    CHECK(time_of(r, 1, 0) - fixed == Approx(move * 17 / 16).epsilon(0.01));
    CHECK(time_of(r, 1, 1) - fixed == Approx(2 * move).epsilon(0.01));
    const json e = run({{a, b}}, with({"cluster.cc.packet=64KiB", "cluster.cc.dp_packet=64KiB"}), "trn1.32xlarge");
    CHECK(time_of(e, 0, 0) - fixed == Approx(2 * move).epsilon(0.01));
    CHECK(time_of(e, 0, 1) - fixed == Approx(2 * move).epsilon(0.01));
    // A turn moves one simulated packet at most, so a stream's packet may not exceed one.
    const std::string error = error_of(a, {"cluster.link.packet=16KiB"});
    CHECK_THAT(error, Catch::Contains("cluster.cc.packet") && Catch::Contains("cluster.link.packet"));
    CHECK_THAT(error_of(a, {"cluster.cc.dp_packet=128KiB"}), Catch::Contains("cluster.cc.dp_packet"));
}

TEST_CASE("with strict-priority DMA arbitration a ring serves the tensor-parallel stream before the data-parallel one",
          "[collective]") {
    // As above, with Trn3's arbitration [CC-OVERLAP]: while the stream-0 transfer has packets to move, the
    // ring moves none of stream 1's, whichever started first in the batch and whatever the packet sizes. So
    // the stream-0 transfer ends as it would alone (but for the one stream-1 packet the ring may have begun
    // before it: none here, both start together) and the stream-1 transfer when the ring has moved both.
    const std::uint64_t n = k_stream_bytes;
    const auto [a, b] = stream_jobs();
    const auto opts = [](const std::string& arbitration, const std::string& dp_packet) {
        return ring_bound({"chip.core.dma.arbitration=" + arbitration, "cluster.cc.dp_packet=" + dp_packet});
    };
    const json r = run({{a}, {a, b}, {b, a}}, opts("strict-priority", "64KiB"), "trn1.32xlarge");
    const double fixed = k_dma;
    const double move = time_of(r, 0) - fixed;
    CHECK(move == Approx(n / 16e9).epsilon(0.02));
    for (int batch : {1, 2}) {
        const int tp = batch == 1 ? 0 : 1;
        INFO("batch " << batch);
        CHECK(time_of(r, batch, tp) - fixed == Approx(move).epsilon(0.002));
        CHECK(time_of(r, batch, 1 - tp) - fixed == Approx(2 * move).epsilon(0.01));
    }
    // The data-parallel stream's smaller packets change nothing under strict priority; under round-robin
    // they give it 1/17 of the ring (the test above).
    const json small = run({{a, b}}, opts("strict-priority", "4KiB"), "trn1.32xlarge");
    CHECK(time_of(small, 0, 0) == time_of(r, 1, 0));
    CHECK(time_of(small, 0, 1) == time_of(r, 1, 1));
    // Round-robin, the default before Trn3, shares the ring half and half.
    const json rr = run({{a, b}}, opts("round-robin", "64KiB"), "trn1.32xlarge");
    CHECK(time_of(rr, 0, 0) - fixed == Approx(2 * move).epsilon(0.01));
    CHECK_THAT(error_of(a, {"chip.core.dma.arbitration=fifo"}),
               Catch::Contains("chip.core.dma.arbitration") && Catch::Contains("strict-priority"));
}

TEST_CASE("two all-reduces on the same ring take longer than either alone and their link bytes add up",
          "[collective]") {
    const std::uint64_t n = 32ull << 20;
    const auto a = job(CollectiveOp::all_reduce, n, "ring");
    const auto b = job(CollectiveOp::all_reduce, n / 2, "ring");
    const json r =
        run({{a}, {b}, {a, b}},
            fast_chip({"cluster.topology=ring:8", "cluster.link.bandwidth=100GiB/s", "cluster.link.latency=500ns"}));
    const double ta = time_of(r, 0), tb = time_of(r, 1);
    const double ta2 = time_of(r, 2, 0), tb2 = time_of(r, 2, 1);
    CHECK(ta2 > ta * 1.2);
    CHECK(tb2 > tb * 1.2);
    // Sharing is fair: while both run, each gets half of every link, so b (half the bytes) ends after twice
    // its bandwidth term, and a after both bandwidth terms (alpha terms overlap).
    const double alpha_term = 14 * (k_dma + k_lat);
    const double beta_a = ta - alpha_term, beta_b = tb - alpha_term;
    CHECK(tb2 == Approx(alpha_term + 2 * beta_b).epsilon(0.03));
    CHECK(ta2 == Approx(alpha_term + beta_a + beta_b).epsilon(0.03));
    const auto& la = r[0]["link_bytes"];
    const auto& lb = r[1]["link_bytes"];
    const auto& lab = r[2]["link_bytes"];
    REQUIRE(la.size() == lab.size());
    for (std::size_t i = 0; i < la.size(); ++i)
        CHECK(lab[i].get<std::uint64_t>() == la[i].get<std::uint64_t>() + lb[i].get<std::uint64_t>());
}

TEST_CASE("all-gather then reduce-scatter conserve bytes", "[collective]") {
    const int p = 8;
    const std::uint64_t n = 8ull << 20;
    for (const char* algo : {"ring", "mesh", "rdh"}) {
        INFO(algo);
        const json r = run({{job(CollectiveOp::all_gather, n, algo)}, {job(CollectiveOp::reduce_scatter, n, algo)}},
                           fast_chip({"cluster.topology=ring:8", "cluster.link.bandwidth=100GiB/s"}));
        for (int b = 0; b < 2; ++b) {
            // Each rank receives the (p - 1) chunks of N / p it lacks.
            CHECK(r[b]["delivered"].get<std::uint64_t>() == (p - 1) * n);
            CHECK(r[b]["jobs"][0]["transfer_bytes"].get<std::uint64_t>() == (p - 1) * n);
        }
        CHECK(r[0]["reduced"].get<std::uint64_t>() == 0);
        CHECK(r[1]["reduced"].get<std::uint64_t>() == (p - 1) * n);
    }
    // Bytes on links = bytes sent x hops: mesh all-gather on a ring of 8, chunk i -> j crosses the ring
    // distance between them.
    const json m = run({{job(CollectiveOp::all_gather, n, "mesh")}},
                       fast_chip({"cluster.topology=ring:8", "cluster.link.bandwidth=100GiB/s"}));
    std::uint64_t hops = 0;
    for (int i = 0; i < p; ++i)
        for (int j = 0; j < p; ++j) hops += static_cast<std::uint64_t>(std::min((j - i + p) % p, (i - j + p) % p));
    std::uint64_t on_links = 0;
    for (const auto& b : m[0]["link_bytes"]) on_links += b.get<std::uint64_t>();
    CHECK(on_links == hops * (n / p));
}

TEST_CASE(
    "a trn2.48xlarge all-reduce sweep is flat while latency-bound, then linear, with auto switching "
    "algorithms at its thresholds",
    "[collective]") {
    std::vector<std::vector<CollectiveJob>> batches;
    const auto sizes = runtime::sweep_sizes(1ull << 10, 1ull << 30);
    REQUIRE(sizes.size() == 21);
    for (auto s : sizes) batches.push_back({job(CollectiveOp::all_reduce, s, "auto")});
    const json r = run(batches, {});
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        INFO(sizes[i]);
        const std::string algo = r[i]["jobs"][0]["algorithm"];
        // cluster.collective.auto.mesh_max = 1 MB, rdh_max = 56 MB [CC-INTRA].
        if (sizes[i] < 1000000)
            CHECK(algo == "mesh");
        else if (sizes[i] <= 56000000)
            CHECK(algo == "rdh");
        else
            CHECK(algo == "ring-bidir");
    }
    // Latency-bound: 1 KiB to 16 KiB within 2%.
    CHECK(time_of(r, 4) == Approx(time_of(r, 0)).epsilon(0.02));
    // Bandwidth-bound: doubling the size doubles the time, and the bus bandwidth approaches 2 x 256 GB/s
    // (ring-bidir uses both directions of each link).
    CHECK(time_of(r, 20) == Approx(2 * time_of(r, 19)).epsilon(0.03));
    CHECK(r[20]["jobs"][0]["busbw"].get<double>() > 0.9 * 512);
    CHECK(r[20]["jobs"][0]["busbw"].get<double>() < 512);
    // Moving the thresholds moves the switch.
    const json t = run(
        {{job(CollectiveOp::all_reduce, 256ull << 10, "auto")}, {job(CollectiveOp::all_reduce, 8ull << 20, "auto")}},
        {"cluster.collective.auto.mesh_max=128KiB", "cluster.collective.auto.rdh_max=4MiB"});
    CHECK(t[0]["jobs"][0]["algorithm"] == "rdh");
    CHECK(t[1]["jobs"][0]["algorithm"] == "ring-bidir");
}

TEST_CASE("every op runs on every algorithm that implements it and moves the bytes it should", "[collective]") {
    const int p = 16;
    const std::uint64_t n = 1ull << 20;
    struct Case {
        CollectiveOp op;
        const char* algo;
        std::uint64_t delivered;
    };
    const std::vector<Case> cases = {
        {CollectiveOp::all_to_all, "mesh", (p - 1) * n},   {CollectiveOp::all_to_all, "ring", (p - 1) * n},
        {CollectiveOp::broadcast, "mesh", (p - 1) * n},    {CollectiveOp::broadcast, "rdh", (p - 1) * n},
        {CollectiveOp::broadcast, "ring", (p - 1) * n},    {CollectiveOp::send_recv, "auto", p * n},
        {CollectiveOp::all_reduce, "torus2d", 0},          {CollectiveOp::reduce_scatter, "torus2d", (p - 1) * n},
        {CollectiveOp::all_gather, "torus2d", (p - 1) * n}};
    for (const auto& c : cases) {
        INFO(runtime::op_name(c.op) << " " << c.algo);
        const json r = run({{job(c.op, n, c.algo)}}, {});
        CHECK(time_of(r) > 0);
        if (c.delivered > 0) CHECK(r[0]["delivered"].get<std::uint64_t>() == c.delivered);
    }
}

TEST_CASE("bad collective requests are rejected naming the option and what is allowed", "[collective]") {
    CHECK_THAT(error_of(job(CollectiveOp::all_reduce, 1 << 20, "rdh", 6), {}),
               Catch::Contains("--algorithm rdh needs a power-of-two rank count") && Catch::Contains("6"));
    CHECK_THAT(error_of(job(CollectiveOp::all_reduce, 1 << 20, "ring", 17), {}),
               Catch::Contains("--ranks 17: allowed 2..16"));
    CHECK_THAT(error_of(job(CollectiveOp::all_reduce, 1 << 20, "torus2d"), {"cluster.topology=ring:16"}),
               Catch::Contains("--algorithm torus2d needs every rank of one 2D or 3D torus"));
    CHECK_THAT(
        error_of(job(CollectiveOp::all_reduce, 1 << 20, "butterfly"), {}),
        Catch::Contains("--algorithm butterfly: unknown algorithm; allowed: auto, hierarchical, mesh, rdh, ring, "
                        "ring-bidir, torus2d"));
    CHECK_THAT(error_of(job(CollectiveOp::all_to_all, 1 << 20, "rdh"), {}),
               Catch::Contains("--algorithm rdh does not implement all-to-all"));
    CHECK_THAT(error_of(job(CollectiveOp::all_reduce, 0, "ring"), {}), Catch::Contains("--bytes 0"));
    CHECK_THAT(error_of(job(CollectiveOp::all_reduce, 1 << 20, "ring"), {"cluster.topology=hypercube:16"}),
               Catch::Contains("cluster.topology = 'hypercube:16': unknown topology 'hypercube'; allowed: ring:N"));
    CHECK_THAT(error_of(job(CollectiveOp::all_reduce, 1 << 20, "ring"), {"cluster.topology=torus2d:4"}),
               Catch::Contains("torus2d takes 2 sizes"));
    CHECK_THAT(error_of(job(CollectiveOp::all_reduce, 1 << 20, "ring"), {}, "trn9.huge"),
               Catch::Contains("--cluster 'trn9.huge': unknown cluster preset; allowed: trn1.32xlarge"));
}

TEST_CASE("the same collective simulated twice gives the same JSON apart from the wall time", "[collective]") {
    auto once = [] {
        return testing::run_isolated([] {
            const Config c = hw::resolve_cluster_config("trn2.48xlarge", {}, {});
            json j = report::to_json(
                runtime::run_collective_batches({{job(CollectiveOp::all_reduce, 8ull << 20, "auto")}}, c));
            j.erase("sim");
            return j.dump();
        });
    };
    const std::string a = once();
    CHECK(a.find("trnsim.collective/1") != std::string::npos);
    CHECK(a == once());
}

TEST_CASE("a point of a sweep gives the same result as the same collective run alone", "[collective]") {
    const json sweep =
        run({{job(CollectiveOp::all_reduce, 1ull << 20, "auto")}, {job(CollectiveOp::all_reduce, 64ull << 20, "auto")}},
            {});
    const json alone = run({{job(CollectiveOp::all_reduce, 64ull << 20, "auto")}}, {});
    CHECK(time_of(sweep, 1) == time_of(alone, 0));
    CHECK(sweep[1]["link_bytes"] == alone[0]["link_bytes"]);
}
