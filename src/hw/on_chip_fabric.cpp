#include "trnsim/hw/on_chip_fabric.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

#include "trnsim/hw/i_memory.h"

namespace trnsim::hw {

void FabricSpec::declare(ParamRegistry& r) {
    r.declare({"chip.fabric.bandwidth",
               ParamType::bandwidth,
               "on-chip fabric between the chip's memory and its DMA engines / link and NIC ports: bytes per second "
               "shared by all of the chip's collective transfers, reads and writes",
               std::nullopt,
               "",
               {},
               k_min_bandwidth,
               1e16});
    r.declare({"chip.fabric.latency",
               ParamType::duration,
               "on-chip fabric: latency a memory access gains crossing it (DMA engine or port to the HBM controller "
               "and back)",
               "100ns",
               "assumption: no public figure; a large die's network-on-chip, tens of cycles at 1-2 GHz plus clock-"
               "domain crossings (with the measured HBM latency, about the 200 ns the ideal memory assumed in all)",
               {},
               0,
               1e-3});
}

FabricSpec FabricSpec::from_config(const Config& c) {
    return {c.get_bandwidth("chip.fabric.bandwidth"), c.get_duration("chip.fabric.latency")};
}

OnChipFabric::OnChipFabric(const sc_core::sc_module_name& name, const FabricSpec& spec)
    : sc_core::sc_module(name),
      dma_port("dma_port"),
      memory_port("memory_port"),
      m_spec(spec),
      m_fs_per_byte(1e15 / spec.bandwidth.bytes_per_s),
      m_latency_fs(static_cast<std::uint64_t>(std::llround(spec.latency.seconds * 1e15))) {
    dma_port.register_b_transport(this, &OnChipFabric::b_transport);
    m_relay = [this](std::uint64_t t) {
        m_memory_done = true;
        m_memory_done_fs = t;
    };
}

void OnChipFabric::occupy(std::uint64_t bytes, std::uint64_t request) {
    if (bytes != m_last_bytes) {
        m_last_bytes = bytes;
        m_last_duration = static_cast<std::uint64_t>(std::llround(static_cast<double>(bytes) * m_fs_per_byte));
    }
    const std::uint64_t start = std::max(request, m_free_fs);
    m_free_fs = start + m_last_duration;
    m_stats.bytes += bytes;
    ++m_stats.transfers;
    m_stats.busy_fs += m_last_duration;
}

AccessTiming OnChipFabric::timed_access(bool write, std::uint64_t bytes, std::uint64_t request) {
    occupy(bytes, request);
    return complete(m_direct_memory->timed_access(write, bytes, request));
}

void OnChipFabric::b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    occupy(trans.get_data_length(), now + delay.value());

    auto* timing = trans.get_extension<MemoryTiming>();
    if (timing == nullptr) {
        throw std::logic_error("on-chip fabric: a request without a MemoryTiming extension");
    }
    // The memory reports to the fabric; the fabric reports to the initiator.
    std::swap(timing->on_done, m_relay);
    m_memory_done = false;
    memory_port->b_transport(trans, delay);
    std::swap(timing->on_done, m_relay);
    if (!m_memory_done) {
        throw std::logic_error(
            "on-chip fabric: the memory model did not report completion within b_transport; collectives need a "
            "model that does (cluster.memory_model, docs/adr/0008)");
    }
    const AccessTiming t = complete({m_memory_done_fs, now + timing->accept_delay.value()});
    timing->accept_delay = sc_core::sc_time::from_value(t.accept_fs - now);
    delay = sc_core::sc_time::from_value(t.done_fs - now);
    if (timing->on_done) timing->on_done(t.done_fs);
}

void OnChipFabric::add_stats(const FabricStats& d) {
    m_stats.bytes += d.bytes;
    m_stats.transfers += d.transfers;
    m_stats.busy_fs += d.busy_fs;
}

}  // namespace trnsim::hw
