#pragma once
// `trnsim collective`: builds the cluster (chips' memories and endpoints, links, switches) once, then runs
// collectives on it -- batch after batch in one simulation (one elaboration per process, ADR 0001): the
// jobs of a batch start together and contend for links, DMA rings and memories; the next batch starts when
// the previous one has finished. A size sweep is a list of one-job batches.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trnsim/core/config.h"
#include "trnsim/core/numeric.h"
#include "trnsim/runtime/collective.h"

namespace trnsim::runtime {

struct CollectiveJob {
    CollectiveOp op = CollectiveOp::all_reduce;
    std::uint64_t bytes = 0;
    std::string algorithm = "auto";
    int ranks = 0;  // 0: every rank of the cluster
    DType dtype = DType::fp32;
    int root = 0;
    int stream = 0;  // the collective stream (Schedule::stream): 1 for data-parallel traffic's smaller DMA packets
};

struct LinkUse {
    std::string name;
    std::uint64_t bytes = 0;
    double utilization = 0;  // busy time / batch time
};

struct LinkSummary {
    int links = 0;
    int used = 0;  // links that carried at least one byte
    std::uint64_t bytes = 0;
    double utilization_max = 0;
    double utilization_mean_used = 0;
    std::vector<LinkUse> busiest;  // up to 4, by bytes, then name
};

// One chip's memory and on-chip fabric over a batch (chips that moved no byte are left out).
struct ChipUse {
    int chip = 0;
    std::uint64_t memory_bytes = 0;  // read + written
    double memory_busy_s = 0;
    double memory_utilization = 0;  // busy time / batch time
    std::uint64_t fabric_bytes = 0;
    double fabric_busy_s = 0;
    double fabric_utilization = 0;
};

struct ChipSummary {
    int used = 0;  // chips whose memory moved at least one byte
    std::uint64_t memory_bytes = 0;
    double memory_utilization_max = 0;
    double memory_utilization_mean_used = 0;
    std::uint64_t fabric_bytes = 0;
    double fabric_utilization_max = 0;
    double fabric_utilization_mean_used = 0;
    std::vector<ChipUse> per_chip;  // chip order
};

struct JobResult {
    CollectiveJob job;
    std::string algorithm;  // the one that ran (auto resolved)
    int ranks = 0;
    int steps = 0;
    std::uint64_t transfers = 0;
    std::uint64_t transfer_bytes = 0;  // sum over the schedule's transfers
    double time_s = 0;                 // from the batch start to its last transfer's arrival
    double algbw_gbps = 0;             // bytes / time, 1e9 B/s
    double busbw_gbps = 0;             // algbw x busbw_factor
};

struct BatchResult {
    std::vector<JobResult> jobs;
    double time_s = 0;
    LinkSummary links;
    ChipSummary chips;                      // memories and fabrics
    std::vector<std::uint64_t> link_bytes;  // per link, in topology order
    std::uint64_t bytes_delivered = 0;      // received by endpoints
    std::uint64_t bytes_reduced = 0;
};

struct ClusterInfo {
    std::string name;
    std::string chip;
    std::string topology;
    int nodes = 1;
    int chips = 0;
    int ranks_per_chip = 1;
    std::string memory_model;
    std::map<std::string, double> memory;  // the memory model's summary (hbm: the measured rates)
    std::uint64_t packet_bytes = 0;
    std::vector<std::string> link_names;
};

struct CollectiveRun {
    ClusterInfo cluster;
    std::vector<BatchResult> batches;
    double wall_s = 0;
    std::map<std::string, ConfigValue> config;
};

// Validates every job first (UserError: unknown algorithm, ranks not fitting, rdh on a non-power-of-two,
// zero bytes, ...), then simulates. One call per process.
CollectiveRun run_collective_batches(const std::vector<std::vector<CollectiveJob>>& batches, const Config& config);

// Powers of two from `lo` to `hi` (both included when they are powers of two times lo).
std::vector<std::uint64_t> sweep_sizes(std::uint64_t lo, std::uint64_t hi);

}  // namespace trnsim::runtime
