#pragma once
// One training step of a model on a cluster (`trnsim run`), at transaction level (docs/training.md):
//
// 1. The workload layer builds each pipeline stage's program: per micro-batch forward and backward op lists
//    and the ops once per step (workload/program.h).
// 2. Every compute op is timed on the NeuronCore model (runtime/kernel_cache.h): a GEMM or row-wise op by
//    its kernel, simulated once per distinct kernel and memoized; a memory-bound stream op by its bytes over
//    the logical core's DMA engines.
// 3. One simulation runs the step: a timeline per pipeline stage issues its ops in program order on its
//    core (compute ops one after another, each for its kernel time) and starts its communication on the
//    cluster model (links, switches, DMA rings, memories) through the CollectiveEngine as soon as the op's
//    dependencies are done, so computation and communication overlap exactly where the program's
//    dependencies allow; pipeline sends and receives are point-to-point transfers between the stages.
//    The tensor-parallel peers and data-parallel replicas of a stage do the same work (placement.h): the
//    stage's timeline stands for all of them, and each of its collectives runs for every group instance
//    of every replica on the links (so they contend), the timeline resuming when the last has finished.
//
// Micro-batches: when a step has more than s + 2 micro-batches (s = max(sample_microbatches, pp), once the
// pipeline has filled; the interleaved schedule: s, s + pp and s + 2 pp, s a multiple of pp past its
// warm-up), the step is simulated with s, s + 1 and s + 2 micro-batches (each in its own child process, in
// parallel); when the three step times lie on one line (docs/adr/0005: extended, they stay within 1e-6 of
// the step), the step time (and each part of the breakdown) for m micro-batches is extrapolated along it,
// otherwise m are simulated.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trnsim/core/config.h"
#include "trnsim/workload/memory.h"
#include "trnsim/workload/model.h"
#include "trnsim/workload/training.h"

namespace trnsim::runtime {

struct TrainingOptions {
    std::string model = "llama3-8b";  // preset or YAML file
    workload::TrainingSpec training;
    std::string placement = "tp,pp,dp";    // innermost first (workload::Placement)
    bool allow_oom = false;                // simulate a configuration that does not fit HBM, and flag it
    std::string cache_dir;                 // kernel timings shared across runs (empty: this run only)
    std::int64_t sample_microbatches = 1;  // the first sample (at least pp)
    std::string algorithm = "auto";        // collective algorithm for every collective
    bool trace = false;                    // record the timeline of the largest simulated micro-batch count
    bool memo = true;                      // replay repeated collective busy periods (docs/adr/0006)
};

// One interval of a stage's timeline: a compute op on its core, a collective or pipeline transfer in flight,
// or the core waiting for another stage.
struct TraceEvent {
    int stage = 0;
    int track = 0;  // 0: core (compute), 1: communication, 2: pipeline wait
    std::string name;
    std::uint64_t start_fs = 0, end_fs = 0;
};

// A point of a utilization counter track (0..1 from this time on): per stage, each engine of its cores
// (the running op's kernels' utilization of the tensor, vector, scalar and gpsimd engines and of the DMA
// engines); per link, and per chip's DMA rings, the share of each busy period of the collectives' traffic
// they were busy.
struct TraceCounter {
    std::uint32_t track = 0;  // in TrainingResult::trace_tracks: "stage 0 tensor", "link n0.c3.x+", "chip 5 DMA rings"
    std::uint64_t at_fs = 0;
    double value = 0;
};

struct TimeShare {
    std::string name;
    double seconds = 0;
};

struct StageBreakdown {
    int stage = 0;
    double busy_s = 0;                    // the core computing
    std::vector<TimeShare> compute;       // by op class
    std::vector<TimeShare> exposed_comm;  // the core idle waiting for a collective, by group
    double pipeline_wait_s = 0;           // idle waiting for another stage (pipeline bubble)
    double optimizer_s = 0;               // of busy_s: the once-per-step ops after the last micro-batch
    double kernel_lag_s = 0;              // of busy_s: kernels held up by collectives' DMA and memory turns
};

// Energy of one step (docs/training.md "Energy"), joules.
struct StepEnergy {
    double tensor_engine = 0;  // MACs x chip.energy.mac_<dtype>
    double sbuf = 0;           // SBUF/PSUM bytes x chip.energy.sbuf_byte
    double hbm = 0;            // the HBM model's command, I/O and background energy of the kernels; streams and
                               // collectives' memory traffic at the kernels' energy per byte
    double links = 0;          // bytes per hop x cluster.link.energy_per_bit (EFA: cluster.efa.energy_per_bit)
    double static_energy = 0;  // chips x chip.energy.static_power x step time
    double total() const { return tensor_engine + sbuf + hbm + links + static_energy; }
};

struct TrainingResult {
    std::string model;
    std::string cluster;
    std::string chip;
    std::string training;  // TrainingSpec::describe()
    std::string placement;
    int nodes = 1, chips = 0, ranks = 0, ranks_per_chip = 1, lnc = 1;
    double params = 0;
    std::int64_t microbatches = 0;        // per replica per step
    std::vector<std::int64_t> simulated;  // micro-batch counts actually simulated
    bool extrapolated = false;
    std::vector<double> sampled_step_s;  // the step times of `simulated`
    double step_time_s = 0;
    double tokens_per_s = 0;
    double sequences_per_s = 0;
    double model_flops = 0;     // per step (MFU numerator)
    double hardware_flops = 0;  // per step: the matrix products run, recompute included (HFU numerator)
    double peak_flops = 0;      // the cluster's tensor-engine peak at the GEMM dtype, FLOP/s
    double mfu = 0;
    double hfu = 0;
    std::vector<StageBreakdown> stages;  // of the last simulated micro-batch count
    StepEnergy energy;
    double energy_per_token_j = 0, energy_per_param_j = 0, energy_per_param_token_pj = 0;
    double link_bytes = 0, efa_bytes = 0;  // summed over hops, per step
    double collective_memory_bytes = 0;    // collectives' reads and writes of chip memory, all chips, per step
    std::vector<workload::MemoryFootprint> memory;
    workload::CapacityCheck capacity;
    std::vector<int> simulated_ranks;  // one representative per stage (symmetry classes)
    std::uint64_t distinct_kernels = 0, kernel_cache_hits = 0, kernel_cache_misses = 0;
    double kernel_wall_s = 0;
    std::uint64_t collectives = 0, transfers = 0;  // started, in the last simulation
    std::uint64_t busy_periods_replayed = 0;       // busy periods replayed from the memo (docs/adr/0006)
    std::uint64_t busy_periods_simulated = 0;      // busy periods simulated packet by packet
    std::uint64_t busy_periods_mirrored = 0;       // of them, with alike parts simulated once (docs/adr/0009)
    std::uint64_t events = 0;                      // the step simulations' model wake-ups, every sample
    std::vector<TraceEvent> trace;                 // with TrainingOptions::trace: the longest simulation
    std::vector<TraceCounter> trace_counters;      // and its utilization counters, in time order
    std::vector<std::string> trace_tracks;         // their tracks' names
    double wall_s = 0;
    std::map<std::string, ConfigValue> config;
};

// `config`: a resolved cluster config (hw::resolve_cluster_config). Throws UserError for bad input (model,
// parallelism not matching the cluster's ranks, memory over capacity without allow_oom).
TrainingResult run_training(const TrainingOptions& options, Config config);

}  // namespace trnsim::runtime
