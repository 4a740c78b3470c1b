#pragma once
// Runs one kernel on one simulated NeuronCore: lower the operator, build the core and its memory,
// simulate, collect the statistics, and (optionally) check the values against a double-precision
// reference. One call per process (SystemC cannot re-elaborate; see core/sim_context.h).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trnsim/core/config.h"
#include "trnsim/hw/neuron_core.h"
#include "trnsim/lowering/kernel.h"

namespace trnsim::runtime {

struct KernelOptions {
    lowering::KernelRequest request;
    bool functional = false;
    bool trace = false;      // record the instruction timeline
    std::uint32_t seed = 1;  // input values for --functional
};

struct KernelResult {
    std::string op;
    std::vector<std::pair<std::string, std::int64_t>> shape;  // (m, k, n) or (rows, cols)
    std::map<std::string, std::int64_t> plan;
    std::string dtype;
    std::string chip;
    std::int64_t cycles = 0;  // tensor-engine clock cycles of the whole kernel
    double time_s = 0;
    double flops = 0;
    double achieved_tflops = 0;
    double peak_tflops = 0;
    std::map<std::string, double> utilization;  // tensor, vector, scalar, gpsimd, dma
    std::map<std::string, std::uint64_t> instructions;
    std::int64_t tensor_engine_cycles = 0;  // first tensor-engine instruction to last PSUM write
    std::uint64_t tensor_macs = 0;
    std::uint64_t hbm_read_bytes = 0;
    std::uint64_t hbm_write_bytes = 0;
    std::uint64_t dma_transfers = 0;
    std::uint64_t sbuf_peak_bytes = 0;
    std::uint64_t program_read_bytes = 0;  // what the program's DMA instructions ask for
    std::uint64_t program_write_bytes = 0;
    double memory_bandwidth_gbps = 0;  // achieved HBM bandwidth of this core
    std::string memory_model;
    double memory_peak_gbps = 0;                   // what the modelled memory can deliver
    std::map<std::string, double> memory_summary;  // model-specific (HBM: energy, row hits, refresh)
    bool functional = false;
    double max_rel_error = 0;  // max |y - ref| / max |ref|
    double wall_s = 0;
    std::uint64_t events = 0;
    std::uint64_t peak_rss_bytes = 0;  // of the whole process, after the simulation
    std::map<std::string, ConfigValue> config;
    std::vector<hw::TraceRecord> trace;  // when KernelOptions::trace
};

KernelResult run_kernel(const KernelOptions& options, const Config& config);

}  // namespace trnsim::runtime
