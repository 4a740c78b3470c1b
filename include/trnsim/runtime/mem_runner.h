#pragma once
// `trnsim mem`: synthetic traffic against the memory model of a chip or an HBM part. A generator keeps up
// to `outstanding` requests in flight (issued at simulated time, each accepted when its pseudo-channel
// queue has room) and records every request's latency from its arrival at the controller to its data.

#include <cstdint>
#include <map>
#include <string>

#include "trnsim/core/config.h"

namespace trnsim::runtime {

struct MemOptions {
    std::string pattern = "stream";  // stream | random | strided
    std::uint64_t stride = 0;        // strided: bytes between consecutive requests
    std::uint64_t request_bytes = 64;
    std::uint64_t requests = 100000;
    double read_ratio = 1.0;
    std::uint64_t outstanding = 8192;  // enough to cover bandwidth x latency of several stacks
    std::uint32_t seed = 1;
    // HBM: tell the memory that the generator is its single sender (HbmMemory::set_single_sender), which lets
    // it simulate a wait for queue space at once. The results are the same either way (a test compares them).
    bool single_sender = true;
};

// Latencies from a request's arrival at the controller to its data, ns.
struct LatencyStats {
    double mean = 0, p50 = 0, p99 = 0, max = 0;
    std::uint64_t count = 0;
};

struct MemResult {
    std::string part;
    std::string memory_model;
    int stacks = 0;
    std::string pattern;
    std::uint64_t requests = 0;
    std::uint64_t request_bytes = 0;
    double read_ratio = 0;
    std::uint64_t outstanding = 0;
    double time_s = 0;
    double bandwidth_gbps = 0;
    double peak_gbps = 0;
    LatencyStats latency;                   // every request
    LatencyStats read_latency;              // reads alone
    std::map<std::string, double> summary;  // row_hit_rate, refresh_share, energy_pj_per_bit, energy_j, ...
    double wall_s = 0;
    std::map<std::string, ConfigValue> config;
};

// Throws UserError for bad options (zero requests, a request size not a multiple of the access
// granularity, an unknown pattern).
MemResult run_mem(const MemOptions& options, const Config& config);

}  // namespace trnsim::runtime
