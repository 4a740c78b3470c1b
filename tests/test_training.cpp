// One training step on the cluster model (runtime/training_runner.h), on a small model and cluster.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "support/isolated.h"
#include "trnsim/core/error.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/runtime/kernel_runner.h"
#include "trnsim/runtime/training_runner.h"
#include "trnsim/workload/program.h"

using namespace trnsim;

namespace {

// A model file in the temporary directory: a Llama 3 8B variant with the given architecture lines.
std::string model_file(const std::string& name, const std::string& architecture) {
    const auto p =
        std::filesystem::temp_directory_path() / ("trnsim_" + name + "_" + std::to_string(::getpid()) + ".yaml");
    std::ofstream(p) << "base: llama3-8b\nname: " << name << "\n" << architecture;
    return p.string();
}

// A small decoder: 4 layers, h 512, GQA 8/4 heads.
std::string tiny_model() {
    static const std::string path = model_file(
        "tiny", "layers: 4\nhidden: 512\nheads: 8\nkv_heads: 4\nffn_hidden: 1536\nvocab: 8192\nmax_seq: 1024\n");
    return path;
}

// trn1 chips (2 ranks each, LNC 1) on a ring of 4: 8 ranks.
Config small_cluster() {
    return hw::resolve_cluster_config("trn1.32xlarge", {}, {"cluster.topology=ring:4"});
}

runtime::TrainingOptions options(int tp, int pp, int dp, std::int64_t gbs) {
    runtime::TrainingOptions o;
    o.model = tiny_model();
    o.training.seq = 512;
    o.training.mbs = 1;
    o.training.gbs = gbs;
    o.training.tp = tp;
    o.training.pp = pp;
    o.training.dp = dp;
    return o;
}

double total(const std::vector<runtime::TimeShare>& v) {
    double t = 0;
    for (const auto& s : v) t += s.seconds;
    return t;
}

}  // namespace

TEST_CASE("a step is at least its compute, and the core's busy time is the sum of its ops' kernel times",
          "[training]") {
    const auto r = runtime::run_training(options(2, 1, 4, 4), small_cluster());
    REQUIRE(r.stages.size() == 1);
    const auto& b = r.stages[0];
    CHECK(r.ranks == 8);
    CHECK(r.ranks_per_chip == 2);
    CHECK(r.microbatches == 1);
    CHECK(b.busy_s == Approx(total(b.compute)).epsilon(1e-12));
    CHECK(r.step_time_s >= b.busy_s);
    // The step is the core's busy time plus the time it waited for communication, nothing unaccounted.
    CHECK(r.step_time_s == Approx(b.busy_s + total(b.exposed_comm) + b.pipeline_wait_s).epsilon(1e-9));
    CHECK(r.mfu > 0);
    CHECK(r.mfu < 1);
    CHECK(r.tokens_per_s == Approx(4 * 512 / r.step_time_s));
}

TEST_CASE("the extrapolated step time equals simulating every micro-batch", "[training]") {
    auto o = options(2, 1, 4, 4 * 8);  // 8 micro-batches per replica
    o.sample_microbatches = 8;         // simulate all of them
    const auto full = runtime::run_training(o, small_cluster());
    REQUIRE_FALSE(full.extrapolated);
    o.sample_microbatches = 1;  // samples of 1, 2 and 3 micro-batches, extrapolated to 8
    const auto ext = runtime::run_training(o, small_cluster());
    REQUIRE(ext.extrapolated);
    CHECK(ext.simulated == std::vector<std::int64_t>{1, 2, 3});
    CHECK(ext.step_time_s == Approx(full.step_time_s).epsilon(1e-9));
    CHECK(ext.stages[0].busy_s == Approx(full.stages[0].busy_s).epsilon(1e-9));
}

TEST_CASE("the interleaved schedule is sampled past its warm-up, and extrapolated to the full simulation's step",
          "[training]") {
    // 2 stages of 2 chunks: the first stage warms up with (2 - 1) 2 + (2 - 1) 2 = 4 forward passes, which 3
    // micro-batches (6 chunk passes) exceed: the samples are 4, 6 and 8 micro-batches (groups of pp).
    auto o = options(1, 2, 4, 4 * 16);  // 16 micro-batches per replica
    o.training.schedule = workload::PipelineSchedule::interleaved;
    o.training.virtual_stages = 2;
    o.sample_microbatches = 16;  // simulate all of them
    const auto full = runtime::run_training(o, small_cluster());
    REQUIRE_FALSE(full.extrapolated);
    o.sample_microbatches = 1;
    const auto ext = runtime::run_training(o, small_cluster());
    REQUIRE(ext.extrapolated);
    CHECK(ext.simulated == std::vector<std::int64_t>{4, 6, 8});
    CHECK(ext.step_time_s == Approx(full.step_time_s).epsilon(1e-9));
    CHECK(ext.stages[0].busy_s == Approx(full.stages[0].busy_s).epsilon(1e-9));
}

TEST_CASE("a pipeline's stages wait for each other: 1F1B and GPipe leave the same bubble", "[training]") {
    auto o = options(1, 2, 4, 4 * 4);  // 4 micro-batches, 2 stages
    o.sample_microbatches = 4;
    const auto one = runtime::run_training(o, small_cluster());
    o.training.schedule = workload::PipelineSchedule::gpipe;
    const auto gpipe = runtime::run_training(o, small_cluster());
    REQUIRE(one.stages.size() == 2);
    // Stage 1 waits for stage 0's first forward, stage 0 for stage 1's first backward.
    CHECK(one.stages[1].pipeline_wait_s > 0);
    CHECK(one.stages[0].pipeline_wait_s > 0);
    // Same work per stage under either schedule (the kernels' own time: what the collectives overlapping them
    // take from them differs).
    CHECK(gpipe.stages[0].busy_s - gpipe.stages[0].kernel_lag_s ==
          Approx(one.stages[0].busy_s - one.stages[0].kernel_lag_s).epsilon(1e-12));
    CHECK(gpipe.step_time_s == Approx(one.step_time_s).epsilon(0.02));
    CHECK(gpipe.memory[0].activations > one.memory[0].activations);  // GPipe keeps every micro-batch
}

TEST_CASE("parallelism that does not match the cluster, or a model that does not fit, is a clear error", "[training]") {
    CHECK_THROWS_WITH(runtime::run_training(options(2, 1, 2, 4), small_cluster()),
                      Catch::Contains("--tp 2 x --pp 1 x --dp 2 = 4 ranks") && Catch::Contains("allowed"));
    auto big = options(1, 1, 8, 8);
    big.model = "llama3-70b";
    big.training.seq = 8192;
    CHECK_THROWS_WITH(runtime::run_training(big, small_cluster()), Catch::Contains("--allow-oom"));
    auto inter = options(2, 1, 4, 4);
    inter.training.schedule = workload::PipelineSchedule::interleaved;  // needs pp >= 2 and virtual stages
    CHECK_THROWS_AS(runtime::run_training(inter, small_cluster()), UserError);
}

TEST_CASE("the same step simulated twice gives the same result", "[training]") {
    const auto a = runtime::run_training(options(2, 2, 2, 2 * 4), small_cluster());
    const auto b = runtime::run_training(options(2, 2, 2, 2 * 4), small_cluster());
    CHECK(a.step_time_s == b.step_time_s);
    CHECK(a.collectives == b.collectives);
}

TEST_CASE("step energy: the tensor engine's share is the graph's MACs, static power runs for the whole step",
          "[training]") {
    const auto o = options(2, 1, 4, 8);
    const Config cluster = small_cluster();
    const auto r = runtime::run_training(o, cluster);
    const auto model = workload::load_model(o.model);
    const double macs = workload::step_flops(model, o.training).graph_gemm / 2;
    CHECK(r.energy.tensor_engine == Approx(macs * cluster.get_energy("chip.energy.mac_bf16").joules).epsilon(0.01));
    CHECK(r.energy.static_energy ==
          Approx(r.chips * cluster.get_power("chip.energy.static_power").watts * r.step_time_s).epsilon(1e-12));
    CHECK(r.energy.hbm > 0);
    CHECK(r.energy.sbuf > 0);
    CHECK(r.energy.links > 0);
    CHECK(r.link_bytes > 0);
    CHECK(r.collective_memory_bytes > 0);  // costed in energy.hbm at the kernels' energy per byte
    CHECK(r.energy_per_token_j == Approx(r.energy.total() / (8.0 * 512)));
    CHECK(r.energy_per_param_token_pj == Approx(r.energy.total() / (r.params * 8.0 * 512) * 1e12));
}

TEST_CASE(
    "step energy: the HBM's background and refresh go with its stacks and the step's time, not with the "
    "cores' kernels",
    "[training]") {
    // trn2: 8 physical cores share 4 stacks. With the access energies zero and one background power whether a
    // row is open or not, the HBM draws stacks x pseudo-channels x that power on every chip all step long.
    std::vector<std::string> sets = {"cluster.topology=ring:2", "chip.memory.hbm.energy.active_standby=10mW",
                                     "chip.memory.hbm.energy.precharge_standby=10mW"};
    for (const char* k : {"act", "rd", "wr", "io_per_bit", "ref_ab", "ref_pb"})
        sets.push_back(fmt::format("chip.memory.hbm.energy.{}=0pJ", k));
    const Config cluster = hw::resolve_cluster_config("trn2.48xlarge", {}, sets);
    const auto r = runtime::run_training(options(4, 1, 2, 4), cluster);
    REQUIRE(r.chips == 2);
    const double pseudo_channels =
        static_cast<double>(cluster.get_int("chip.memory.stacks") * cluster.get_int("chip.memory.hbm.channels") *
                            cluster.get_int("chip.memory.hbm.pseudo_channels"));
    CHECK(pseudo_channels == 128);
    CHECK(r.collective_memory_bytes > 0);  // at the kernels' access energy per byte: none here
    CHECK(r.energy.hbm == Approx(2 * pseudo_channels * 0.010 * r.step_time_s).epsilon(1e-9));
}

TEST_CASE("traffic between nodes counts once, as EFA bytes, not also on the NIC uplinks", "[training]") {
    // Two nodes of one trn1 chip: tensor parallelism within the chip, data parallelism over EFA, no NeuronLink.
    const Config cluster =
        hw::resolve_cluster_config("trn1.32xlarge", {}, {"cluster.topology=ring:1", "cluster.nodes=2"});
    const auto r = runtime::run_training(options(2, 1, 2, 4), cluster);
    CHECK(r.efa_bytes > 0);
    CHECK(r.link_bytes == 0);
    CHECK(r.energy.links ==
          Approx(r.efa_bytes * 8 * cluster.get_energy("cluster.efa.energy_per_bit").joules).epsilon(1e-12));
}

TEST_CASE("the interleaved schedule does the same work with a smaller pipeline bubble", "[training]") {
    auto o = options(1, 2, 4, 4 * 4);  // 2 stages, 4 micro-batches
    o.sample_microbatches = 4;
    const auto plain = runtime::run_training(o, small_cluster());
    o.training.schedule = workload::PipelineSchedule::interleaved;
    o.training.virtual_stages = 2;  // 4 layers: one per model chunk
    const auto inter = runtime::run_training(o, small_cluster());
    REQUIRE(inter.stages.size() == 2);
    for (int s = 0; s < 2; ++s) {
        INFO(s);
        CHECK(inter.stages[s].busy_s - inter.stages[s].kernel_lag_s ==
              Approx(plain.stages[s].busy_s - plain.stages[s].kernel_lag_s).epsilon(1e-9));
    }
    CHECK(inter.stages[0].pipeline_wait_s < plain.stages[0].pipeline_wait_s);
    CHECK(inter.step_time_s < plain.step_time_s);
}

TEST_CASE("replaying collectives from the memo gives the step that simulating every collective gives",
          "[training][memo]") {
    // Tensor- and data-parallel (the last backward overlaps the gradient reduce-scatter), pipelines, tensor
    // parallelism within a chip (2 ranks per trn1 chip) and across chips; and on four nodes of two chips,
    // where a record made on one node is replayed on others (stages and data-parallel replicas on other nodes).
    // With one stage, the replicas' alike tensor-parallel groups are simulated once (mirrored).
    const Config one_node = small_cluster();
    const Config four_nodes =
        hw::resolve_cluster_config("trn1.32xlarge", {}, {"cluster.topology=ring:2", "cluster.nodes=4"});
    // And the 4x4 torus of one trn1.32xlarge (nodes 0 below), four stages of two rows' halves, whose
    // records replay on each other under the torus's translations and reflections (docs/adr/0010).
    const Config torus = hw::resolve_cluster_config("trn1.32xlarge", {}, {});
    bool lagged = false;
    for (const auto& [tp, pp, dp, nodes] : std::vector<std::tuple<int, int, int, int>>{{2, 1, 4, 1},
                                                                                       {2, 2, 2, 1},
                                                                                       {4, 1, 2, 1},
                                                                                       {4, 2, 1, 1},
                                                                                       {2, 4, 1, 1},
                                                                                       {4, 2, 2, 4},
                                                                                       {4, 4, 1, 4},
                                                                                       {4, 4, 2, 0}}) {
        INFO("tp " << tp << " pp " << pp << " dp " << dp << " nodes " << nodes);
        const Config& cluster = nodes == 0 ? torus : nodes == 1 ? one_node : four_nodes;
        auto o = options(tp, pp, dp, dp * 6);
        o.sample_microbatches = 6;  // simulate all six
        o.memo = false;
        o.trace = true;  // the trace's link and DMA-ring counters come from the periods, replayed or not
        const auto full = runtime::run_training(o, cluster);
        o.memo = true;
        const auto memo = runtime::run_training(o, cluster);
        CHECK(memo.busy_periods_replayed > 0);
        CHECK(full.busy_periods_replayed == 0);
        // One stage, several replicas: their tensor-parallel groups are alike and apart (docs/adr/0009).
        if (pp == 1 && dp > 1) CHECK(memo.busy_periods_mirrored > 0);
        CHECK(full.busy_periods_mirrored == 0);
        CHECK(memo.step_time_s == full.step_time_s);
        CHECK(memo.link_bytes == full.link_bytes);
        CHECK(memo.energy.total() == full.energy.total());
        CHECK_FALSE(full.trace_counters.empty());
        REQUIRE(memo.trace_counters.size() == full.trace_counters.size());
        bool same = true;
        for (std::size_t i = 0; i < memo.trace_counters.size(); ++i) {
            const auto& a = memo.trace_counters[i];
            const auto& b = full.trace_counters[i];
            same = same && memo.trace_tracks.at(a.track) == full.trace_tracks.at(b.track) && a.at_fs == b.at_fs &&
                   a.value == b.value;
        }
        CHECK(same);
        REQUIRE(memo.stages.size() == full.stages.size());
        for (std::size_t s = 0; s < memo.stages.size(); ++s) {
            CHECK(memo.stages[s].busy_s == full.stages[s].busy_s);
            CHECK(memo.stages[s].pipeline_wait_s == full.stages[s].pipeline_wait_s);
            CHECK(total(memo.stages[s].exposed_comm) == total(full.stages[s].exposed_comm));
            CHECK(memo.stages[s].kernel_lag_s == full.stages[s].kernel_lag_s);
            lagged = lagged || full.stages[s].kernel_lag_s > 0;
        }
    }
    // Kernels held up by the collectives' DMA turns, read from the records where they are replayed.
    CHECK(lagged);
}

namespace {

// A deeper, narrow model with a small vocabulary: its pipeline stages are equal to within the embedding
// and head, which are tiny here.
std::string deep_model() {
    static const std::string path = model_file(
        "deep", "layers: 16\nhidden: 512\nheads: 8\nkv_heads: 4\nffn_hidden: 1536\nvocab: 128\nmax_seq: 1024\n");
    return path;
}

// Links, DMA, memory and on-chip fabric so fast that communication is free next to compute.
Config free_comm_cluster(const std::string& topology) {
    return hw::resolve_cluster_config(
        "trn1.32xlarge", {},
        {"cluster.topology=" + topology, "cluster.link.bandwidth=1000TB/s", "cluster.link.latency=0ns",
         "chip.core.dma.transfer_latency=0ns", "chip.core.dma.descriptor_cost=0ns",
         "chip.core.dma.engine_bandwidth=100TB/s", "cluster.memory_model=ideal", "chip.memory.bandwidth=10000TB/s",
         "chip.memory.ideal.latency=0ns", "chip.fabric.bandwidth=10000TB/s", "chip.fabric.latency=0ns"});
}

}  // namespace

TEST_CASE("with free communication, the 1F1B bubble is (p-1)/(m+p-1) of the pipelined time", "[training]") {
    // 4 stages of 4 layers, one rank each (trn1: 2 ranks per chip, 2 chips), m = 8 micro-batches.
    auto o = options(1, 4, 1, 8);
    o.model = deep_model();
    o.sample_microbatches = 8;  // simulate all of them
    const auto r = runtime::run_training(o, free_comm_cluster("ring:2"));
    REQUIRE(r.stages.size() == 4);
    const double p = 4, m = 8;
    for (const auto& s : r.stages) {
        INFO("stage " << s.stage);
        // A stage idles waiting for its neighbours' activations and gradients (pipeline wait) and, once its
        // last backward is done, for the other stages to reach the step's global gradient-norm all-reduce
        // (exposed communication): together, the bubble of the pipelined part of the step.
        const double idle = s.pipeline_wait_s + total(s.exposed_comm);
        CHECK(idle / (idle + s.busy_s - s.optimizer_s) == Approx((p - 1) / (m + p - 1)).epsilon(0.03));
    }
}

TEST_CASE("doubling the link bandwidth never slows a step", "[training]") {
    for (const auto& [tp, pp, dp] : std::vector<std::tuple<int, int, int>>{{4, 1, 2}, {2, 2, 2}, {8, 1, 1}}) {
        INFO("tp " << tp << " pp " << pp << " dp " << dp);
        const auto o = options(tp, pp, dp, dp * 4);
        const auto slow = runtime::run_training(
            o, hw::resolve_cluster_config("trn1.32xlarge", {},
                                          {"cluster.topology=ring:4", "cluster.link.bandwidth=20GB/s"}));
        const auto fast = runtime::run_training(
            o, hw::resolve_cluster_config("trn1.32xlarge", {},
                                          {"cluster.topology=ring:4", "cluster.link.bandwidth=40GB/s"}));
        CHECK(fast.step_time_s <= slow.step_time_s);
        CHECK(fast.link_bytes == slow.link_bytes);  // the same traffic, faster
    }
}

TEST_CASE("one rank on one core: the step is the sum of its kernels", "[training]") {
    const Config one = hw::resolve_cluster_config("trn1.32xlarge", {}, {"cluster.topology=ring:1", "chip.cores=1"});
    const auto r = runtime::run_training(options(1, 1, 1, 2), one);
    REQUIRE(r.ranks == 1);
    REQUIRE(r.stages.size() == 1);
    const auto& s = r.stages[0];
    CHECK(r.collectives == 0);
    CHECK(total(s.exposed_comm) == 0);
    CHECK(s.pipeline_wait_s == 0);
    CHECK(s.busy_s == Approx(total(s.compute)).epsilon(1e-12));
    CHECK(r.step_time_s == Approx(s.busy_s).epsilon(1e-12));
}

namespace {

double class_seconds(const runtime::StageBreakdown& b, const std::string& name) {
    for (const auto& c : b.compute)
        if (c.name == name) return c.seconds;
    return 0;
}

// One flash kernel of the tiny model's heads (d = 64) on a core of the cluster's chip: its time, tensor-engine
// MACs and FLOPs (the scores the causal mask keeps). `queries` of the `keys`, the last ones (causal).
struct FlashFigures {
    double time_s = 0, macs = 0, flops = 0;
};
FlashFigures flash_kernel(const std::string& op, std::int64_t queries, std::int64_t keys, const Config& cluster) {
    const std::string out = testing::run_isolated([&] {
        runtime::KernelOptions o;
        o.request.op = op;
        o.request.m = queries;
        o.request.n = keys;
        o.request.k = 64;
        o.request.causal = true;
        o.request.q_offset = keys - queries;
        const auto r = runtime::run_kernel(o, cluster);
        return fmt::format("{:.17g} {:.17g} {:.17g}", r.time_s, static_cast<double>(r.tensor_macs), r.flops);
    });
    REQUIRE(out.rfind("error:", 0) != 0);
    std::istringstream in(out);
    FlashFigures f;
    in >> f.time_s >> f.macs >> f.flops;
    return f;
}

}  // namespace

TEST_CASE("flash attention: the same model FLOPs in less time, its time the sum of its kernels, its energy their MACs",
          "[training][flash]") {
    const Config one = hw::resolve_cluster_config("trn1.32xlarge", {}, {"cluster.topology=ring:1", "chip.cores=1"});
    auto unfused_o = options(1, 1, 1, 2);
    auto flash_o = unfused_o;
    flash_o.training.attention = workload::Attention::flash;
    const auto u = runtime::run_training(unfused_o, one);
    const auto f = runtime::run_training(flash_o, one);
    REQUIRE(f.stages.size() == 1);
    const auto& fs = f.stages[0];
    CHECK(f.model_flops == u.model_flops);
    CHECK(f.step_time_s < u.step_time_s);
    CHECK(f.step_time_s == Approx(fs.busy_s).epsilon(1e-12));
    // The projections and the MLP are the same kernels either way.
    CHECK(class_seconds(fs, "gemm") == class_seconds(u.stages[0], "gemm"));
    // Attention is the two flash kernels, once per head (8), layer (4) and micro-batch (2).
    const auto fwd = flash_kernel("flash_fwd", 512, 512, one);
    const auto bwd = flash_kernel("flash_bwd", 512, 512, one);
    const double per_step = 8.0 * 4 * 2;
    CHECK(class_seconds(fs, "attention") == Approx(per_step * (fwd.time_s + bwd.time_s)).epsilon(1e-9));
    // Tensor-engine energy: the unfused run's, less its attention GEMMs (6 s^2 d MACs per head: QK^T and AV,
    // then four products backward), plus the flash kernels' MACs (the causal blocks only).
    const double e_mac = one.get_energy("chip.energy.mac_bf16").joules;
    const double unfused_attention_macs = per_step * 6.0 * 512 * 512 * 64;
    CHECK(f.energy.tensor_engine ==
          Approx(u.energy.tensor_engine + (per_step * (fwd.macs + bwd.macs) - unfused_attention_macs) * e_mac)
              .epsilon(1e-9));
    // The scores never reach memory: less activation memory per chip.
    CHECK(f.memory[0].activations < u.memory[0].activations);
}

TEST_CASE(
    "flash attention with fewer heads than a logical core's physical cores: the queries are split zigzag, and "
    "the core with the first and last chunks sets the time",
    "[training][flash]") {
    // trn2: LNC 2, 4 logical cores per chip; TP 8 over two chips gives each rank one of the 8 heads.
    const Config two = hw::resolve_cluster_config("trn2.48xlarge", {}, {"cluster.topology=ring:2"});
    auto o = options(8, 1, 1, 2);
    o.training.attention = workload::Attention::flash;
    const auto r = runtime::run_training(o, two);
    REQUIRE(r.lnc == 2);
    REQUIRE(r.stages.size() == 1);
    // 512 queries in 4 chunks of 128: core 0 takes queries 0..127 (keys 0..127) and 384..511 (keys 0..511),
    // core 1 queries 128..383 (keys 0..383). Per layer (4) and micro-batch (2), forward and backward.
    auto both = [&](std::int64_t queries, std::int64_t keys) {
        const FlashFigures f = flash_kernel("flash_fwd", queries, keys, two);
        const FlashFigures g = flash_kernel("flash_bwd", queries, keys, two);
        return FlashFigures{f.time_s + g.time_s, f.macs + g.macs, f.flops + g.flops};
    };
    const FlashFigures first = both(128, 128), last = both(128, 512);
    CHECK(class_seconds(r.stages[0], "attention") == Approx(4.0 * 2 * (first.time_s + last.time_s)).epsilon(1e-9));
    // Both cores keep the same number of scores (query i sees i + 1 keys): 8256 + 57408 = 65664.
    CHECK(first.flops + last.flops == both(256, 384).flops);
    CHECK(first.flops == 8256.0 * (4 * 64 + 4 + 10 * 64 + 8));
}

TEST_CASE("flash heads not dividing among the physical cores: the busier core sets the time, the heads the energy",
          "[training][flash]") {
    // trn2, TP 8 over two chips: a head per rank per sequence. Micro-batches of 3 sequences put 2 heads on
    // one physical core and 1 on the other; of 2, one on each. The same 6 sequences per step either way.
    const Config two = hw::resolve_cluster_config("trn2.48xlarge", {}, {"cluster.topology=ring:2"});
    auto run = [&](std::int64_t mbs) {
        auto o = options(8, 1, 1, 6);
        o.training.mbs = mbs;
        o.training.attention = workload::Attention::flash;
        return runtime::run_training(o, two);
    };
    const auto three = run(3), two_each = run(2);
    REQUIRE(three.lnc == 2);
    // Per layer (4) and micro-batch, forward and backward: two heads' kernels one after another, against one.
    const double head =
        flash_kernel("flash_fwd", 512, 512, two).time_s + flash_kernel("flash_bwd", 512, 512, two).time_s;
    CHECK(class_seconds(three.stages[0], "attention") == Approx(4.0 * 2 * 2 * head).epsilon(1e-9));
    CHECK(class_seconds(two_each.stages[0], "attention") == Approx(4.0 * 3 * 1 * head).epsilon(1e-9));
    // The same MACs per step (the GEMMs' too: the same rows in all, split evenly between the two cores).
    CHECK(three.energy.tensor_engine == Approx(two_each.energy.tensor_engine).epsilon(1e-12));
}

TEST_CASE("a flash backward whose query side does not fit SBUF is timed as query pieces that fit",
          "[training][flash]") {
    // 32768 queries at d = 64 need 286 KiB per SBUF partition (trn1: 192 KiB): two pieces of 16384 queries,
    // the first against keys 0..16383, the second against all 32768.
    static const std::string longer = model_file(
        "tiny_long", "layers: 4\nhidden: 512\nheads: 8\nkv_heads: 4\nffn_hidden: 1536\nvocab: 8192\nmax_seq: 32768\n");
    const Config one = hw::resolve_cluster_config("trn1.32xlarge", {}, {"cluster.topology=ring:1", "chip.cores=1"});
    auto o = options(1, 1, 1, 2);
    o.model = longer;
    o.training.seq = 32768;
    o.training.attention = workload::Attention::flash;
    const auto r = runtime::run_training(o, one);
    const double fwd = flash_kernel("flash_fwd", 32768, 32768, one).time_s;
    const double bwd =
        flash_kernel("flash_bwd", 16384, 16384, one).time_s + flash_kernel("flash_bwd", 16384, 32768, one).time_s;
    CHECK(class_seconds(r.stages[0], "attention") == Approx(8.0 * 4 * 2 * (fwd + bwd)).epsilon(1e-9));
}
