#pragma once
// Ideal memory: a fixed bandwidth and a fixed latency -- the core's share of the chip's HBM bandwidth
// (chip.memory.bandwidth / cores) and chip.memory.ideal.latency. Requests are served in arrival order; a
// request of B bytes occupies the memory for B / bandwidth; its data arrive `latency` after that.
// No banks, rows or refresh: the HBM model ("hbm") adds those.

#include "trnsim/hw/i_memory.h"

namespace trnsim::hw {

struct IdealMemorySpec {
    Bandwidth bandwidth;  // for this memory's initiators
    Duration latency;

    static void declare(ParamRegistry& registry);
    static IdealMemorySpec from_config(const Config& config, const MemoryContext& context);
};

class IdealMemory : public IMemory, public ITimedAccess {
public:
    IdealMemory(const sc_core::sc_module_name& name, const IdealMemorySpec& spec);

    void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) override;
    AccessTiming timed_access(bool write, std::uint64_t bytes, std::uint64_t request_fs) override;
    ITimedAccess* direct_access() override { return this; }
    const MemoryStats& stats() const override { return m_stats; }
    double peak_bytes_per_s() const override { return m_spec.bandwidth.bytes_per_s; }
    bool idle(std::uint64_t now_fs) const override { return m_free_fs <= now_fs; }
    void add_stats(const MemoryStats& d) override;

private:
    IdealMemorySpec m_spec;
    MemoryStats m_stats;
    std::uint64_t m_free_fs = 0;
    std::uint64_t m_latency_fs = 0;
    std::uint64_t m_last_bytes = ~std::uint64_t{0};  // the last request's size and its time
    std::uint64_t m_last_duration = 0;
};

// Registers "ideal" with the memory-model family.
void register_ideal_memory();

}  // namespace trnsim::hw
