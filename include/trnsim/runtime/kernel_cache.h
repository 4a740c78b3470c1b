#pragma once
// Kernel timings for the training-step scheduler, memoized by content: the operator, its shape and dtype,
// every resolved `chip.*` parameter a kernel simulation reads (all but `chip.energy.*` and `chip.lnc`, which
// only the step uses), and the simulator's model revision (DESIGN.md section 4). Each miss is simulated
// in a forked child of its own (one SystemC elaboration per process, ADR 0001), as many at a time as there
// are cores, exactly as `trnsim kernel` would; hits come from memory or, with a cache directory, from one
// JSON file per key that other processes (sweep workers) share.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trnsim/core/config.h"
#include "trnsim/lowering/kernel.h"

namespace trnsim::runtime {

// What a scheduler needs from one kernel simulation.
struct KernelTiming {
    double time_s = 0;
    double flops = 0;
    std::uint64_t tensor_macs = 0;
    std::uint64_t hbm_read_bytes = 0, hbm_write_bytes = 0;
    // The HBM's energy (0 for the ideal memory): of the kernel's accesses (commands and I/O), and the
    // background and refresh power of one stack, its mean over the kernel (it goes with time, not accesses).
    double memory_access_j = 0;
    double memory_standby_w = 0;
    std::uint64_t sbuf_peak_bytes = 0;
    std::map<std::string, double> utilization;  // tensor, vector, scalar, gpsimd, dma
};

// Bump when a change to the NeuronCore, lowering or memory models changes kernel timings: cached results
// of an older revision are then simulated again.
extern const char* const k_kernel_model_revision;

class KernelCache {
public:
    // `directory` empty: memory only. Otherwise created if missing; unwritable -> UserError naming it.
    explicit KernelCache(std::string directory = "");

    // The content key of one kernel under `config` (32 hex digits).
    static std::string key(const lowering::KernelRequest& request, const Config& config);
    // The same in two parts, for many requests under one config: the text of its chip parameters, once, then
    // each request's key.
    static std::string chip_text(const Config& config);
    static std::string key(const lowering::KernelRequest& request, const std::string& chip_text);

    // Timings of every request, in order. Simulates the missing ones (deduplicated), each in a child process;
    // lowering errors come back as UserError naming the kernel.
    std::vector<KernelTiming> time(const std::vector<lowering::KernelRequest>& requests, const Config& config);

    // Other records kept in the same directory (the training runner's collective memo records): the text
    // stored under `name` (a file name), "" when there is none or no directory; and storing one, written
    // whole and renamed into place.
    std::string load_text(const std::string& name) const;
    void store_text(const std::string& name, const std::string& text) const;
    // Least recently used first: marks the record `name` used now (its modification time), and removes the
    // records named `prefix`...`suffix`, oldest first (then by name), until those left take at most
    // `max_bytes`, never `keep`; and temporaries older than k_stale_temporary (left by a process that died
    // writing). Best effort: what cannot be read or removed (another process's doing) is skipped.
    static constexpr std::chrono::hours k_stale_temporary{24};
    void touch(const std::string& name) const;
    void trim(const std::string& prefix, const std::string& suffix, std::uint64_t max_bytes,
              const std::string& keep) const;

    std::uint64_t hits() const { return m_hits; }
    std::uint64_t misses() const { return m_misses; }
    double simulate_wall_s() const { return m_wall_s; }  // spent in child simulations

private:
    bool load(const std::string& key, KernelTiming& out) const;
    void store(const std::string& key, const KernelTiming& t) const;

    std::string m_directory;
    std::map<std::string, KernelTiming> m_memory;
    std::uint64_t m_hits = 0, m_misses = 0;
    double m_wall_s = 0;
};

}  // namespace trnsim::runtime
