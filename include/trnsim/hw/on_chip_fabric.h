#pragma once
// The chip's on-chip fabric (network-on-chip) between its memory and the DMA engines that move data to and
// from its link and NIC ports: a TLM interconnect bound between a chip endpoint (initiator) and the chip's
// memory (target). Every transfer of b bytes occupies it for b / chip.fabric.bandwidth, in arrival order
// (one FIFO shared by all of the chip's collective traffic, reads and writes); it streams concurrently with
// the memory (cut-through: the slower of the two sets the rate) and adds chip.fabric.latency to the access.
// No public figure exists for Trainium's fabric: the presets size it so that it does not limit the
// documented HBM and NeuronLink rates (docs/adr/0008). Abstracted away: the fabric's topology (mesh, rings,
// crossbar), per-port limits, the NeuronCores' own HBM traffic (kernels are not on it).

#include <algorithm>
#include <cstdint>

#include <tlm_utils/simple_initiator_socket.h>
#include <tlm_utils/simple_target_socket.h>
#include <systemc>
#include <tlm>

#include "trnsim/core/config.h"
#include "trnsim/core/units.h"
#include "trnsim/hw/i_memory.h"

namespace trnsim::hw {

struct FabricSpec {
    Bandwidth bandwidth;
    Duration latency;

    static void declare(ParamRegistry& registry);
    static FabricSpec from_config(const Config& config);
};

struct FabricStats {
    std::uint64_t bytes = 0;
    std::uint64_t transfers = 0;
    std::uint64_t busy_fs = 0;
};

class OnChipFabric : public sc_core::sc_module, public ITimedAccess {
public:
    tlm_utils::simple_target_socket<OnChipFabric> dma_port;        // from the chip's DMA (endpoint)
    tlm_utils::simple_initiator_socket<OnChipFabric> memory_port;  // to the chip's memory

    OnChipFabric(const sc_core::sc_module_name& name, const FabricSpec& spec);

    // Forwards to the memory, which must complete within b_transport (collectives need it, docs/adr/0008);
    // the access completes at max(memory done, fabric transfer end) + latency, and the initiator may send
    // its next request once both the memory and the fabric accept it.
    void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay);
    // The direct path (i_memory.h): given the memory's (the target bound to memory_port), the fabric offers
    // one too, equal to b_transport with a zero delay.
    void set_direct_memory(ITimedAccess* memory) { m_direct_memory = memory; }
    ITimedAccess* direct_access() { return m_direct_memory != nullptr ? this : nullptr; }
    AccessTiming timed_access(bool write, std::uint64_t bytes, std::uint64_t request_fs) override;
    bool idle(std::uint64_t now_fs) const { return m_free_fs <= now_fs; }
    const FabricStats& stats() const { return m_stats; }
    void add_stats(const FabricStats& d);
    const FabricSpec& spec() const { return m_spec; }

private:
    // Occupies the fabric for a transfer of `bytes` requested at `request_fs`.
    void occupy(std::uint64_t bytes, std::uint64_t request_fs);
    // The access's timing given the memory's.
    AccessTiming complete(const AccessTiming& memory) const {
        return {std::max(memory.done_fs, m_free_fs) + m_latency_fs, std::max(memory.accept_fs, m_free_fs)};
    }

    FabricSpec m_spec;
    double m_fs_per_byte;
    std::uint64_t m_latency_fs;
    std::uint64_t m_free_fs = 0;
    std::uint64_t m_last_bytes = ~std::uint64_t{0};  // the last transfer's size and its time
    std::uint64_t m_last_duration = 0;
    ITimedAccess* m_direct_memory = nullptr;
    bool m_memory_done = false;
    std::uint64_t m_memory_done_fs = 0;
    std::function<void(std::uint64_t)> m_relay;  // installed as the memory's on_done during a forward
    FabricStats m_stats;
};

}  // namespace trnsim::hw
