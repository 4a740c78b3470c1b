#include "trnsim/hw/ideal_memory.h"

#include <algorithm>
#include <cmath>

namespace trnsim::hw {

void IdealMemorySpec::declare(ParamRegistry& r) {
    r.declare({"chip.memory.ideal.latency",
               ParamType::duration,
               "ideal memory: fixed latency from request to data, added after the transfer",
               "200ns",
               "assumption (HBM row miss plus on-chip fabric, order of magnitude)",
               {},
               0,
               1});
}

IdealMemorySpec IdealMemorySpec::from_config(const Config& c, const MemoryContext& ctx) {
    IdealMemorySpec s;
    const double chip = c.get_bandwidth("chip.memory.bandwidth").bytes_per_s;
    s.bandwidth = Bandwidth{ctx.whole_chip ? chip : chip / ctx.cores_sharing};
    s.latency = c.get_duration("chip.memory.ideal.latency");
    return s;
}

IdealMemory::IdealMemory(const sc_core::sc_module_name& name, const IdealMemorySpec& spec)
    : IMemory(name),
      m_spec(spec),
      m_latency_fs(static_cast<std::uint64_t>(std::llround(spec.latency.seconds * 1e15))) {}

AccessTiming IdealMemory::timed_access(bool write, std::uint64_t bytes, std::uint64_t request) {
    if (bytes != m_last_bytes) {
        m_last_bytes = bytes;
        m_last_duration =
            static_cast<std::uint64_t>(std::llround(static_cast<double>(bytes) * 1e15 / m_spec.bandwidth.bytes_per_s));
    }
    const std::uint64_t start = std::max(request, m_free_fs);
    m_free_fs = start + m_last_duration;
    m_stats.busy_fs += m_last_duration;
    ++m_stats.requests;
    if (write)
        m_stats.write_bytes += bytes;
    else
        m_stats.read_bytes += bytes;
    return {m_free_fs + m_latency_fs, m_free_fs};
}

void IdealMemory::b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
    transport_timed(*this, trans, delay);
}

void IdealMemory::add_stats(const MemoryStats& d) {
    m_stats += d;
}

void register_ideal_memory() {
    register_memory_model("ideal", [](const sc_core::sc_module_name& n, const Config& c, const MemoryContext& ctx) {
        return std::make_unique<IdealMemory>(n, IdealMemorySpec::from_config(c, ctx));
    });
}

}  // namespace trnsim::hw
